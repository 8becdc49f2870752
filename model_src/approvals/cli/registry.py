"""``approvals registry ...``: publish, list, show, pull, promote, rollback, history, resolve.

The release pipeline publishes a version together with its image (``--image``, by digest), its
gate report and its workflow run; ``resolve --field image`` hands the image to the deploy, and
``rollback --dry-run`` names what a rollback would deploy before the alias moves.

Exit codes (:class:`approvals.cli.exits.ExitCode`, shared with the other commands): 0 done;
2 a mistake the user can fix (bad name, unknown version, conflict, missing bucket, access
denied); 1 stored data that failed verification (a corrupted object) or a registry that could
not be reached or kept changing (worth a look or a retry). Every error is one line on stderr.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from approvals.cli.exits import ExitCode
from approvals.cli.registry_output import plan_json, plan_lines, provenance_lines, record_lines
from approvals.registry.errors import (
    ConcurrentUpdateError,
    IntegrityError,
    RegistryError,
    UnavailableError,
)
from approvals.registry.names import ALIASES

app = typer.Typer(
    help="S3 model registry: immutable versions, per-environment aliases, audit history.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Bucket = Annotated[
    str | None, typer.Option("--bucket", envvar="APPROVALS_REGISTRY_BUCKET", help="S3 bucket")
]
Prefix = Annotated[
    str, typer.Option("--prefix", envvar="APPROVALS_REGISTRY_PREFIX", help="key prefix")
]
Env = Annotated[str, typer.Option("--env", help="environment (dev, staging, prod, ...)")]
Alias = Annotated[str, typer.Option("--alias", help=f"one of {', '.join(ALIASES)}")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]
Actor = Annotated[
    str | None, typer.Option("--actor", envvar="GITHUB_ACTOR", help="who makes the change")
]
Reason = Annotated[str | None, typer.Option("--reason", help="why (kept in the audit log)")]
Image = Annotated[
    str | None,
    typer.Option("--image", help="REPOSITORY:TAG@sha256:<digest> of the image built from it"),
]
GateReport = Annotated[
    Path | None,
    typer.Option(
        "--gate-report", help="gate report JSON (approvals gate --report), kept as a blob"
    ),
]
RunUrl = Annotated[
    str | None,
    typer.Option(
        "--workflow-run-url", help="the publishing run (default: from GITHUB_* variables)"
    ),
]
FIELDS = ("version", "git_sha", "image")


def _registry(bucket: str | None, prefix: str) -> Any:
    from approvals.registry.core import ModelRegistry
    from approvals.registry.settings import RegistrySettings

    if not bucket:
        _fail_user("no registry bucket: pass --bucket or set APPROVALS_REGISTRY_BUCKET")
    return ModelRegistry.from_settings(RegistrySettings(bucket=str(bucket), prefix=prefix))


def _fail_user(message: str) -> None:
    from approvals.errors import UserError

    raise UserError(message)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn registry and AWS errors into one line and the documented exit code."""
    from botocore.exceptions import BotoCoreError

    try:
        yield
    except IntegrityError as exc:
        typer.echo(f"error: stored data failed verification: {_one_line(exc)}", err=True)
        raise typer.Exit(ExitCode.UNEXPECTED) from exc
    except (ConcurrentUpdateError, UnavailableError, BotoCoreError) as exc:
        typer.echo(f"error: registry unavailable: {_one_line(exc)}", err=True)
        raise typer.Exit(ExitCode.UNEXPECTED) from exc
    except RegistryError as exc:
        _fail_user(str(exc))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _emit(data: dict[str, Any], as_json: bool, text: str) -> None:
    typer.echo(json.dumps(data, sort_keys=True, indent=1) if as_json else text)


@app.command()
def publish(
    package: Annotated[Path, typer.Argument(help="model package directory")],
    version: Annotated[str | None, typer.Option(help="defaults to manifest model_version")] = None,
    git_sha: Annotated[str | None, typer.Option(envvar="GITHUB_SHA", help="commit")] = None,
    image: Image = None,
    gate_report: GateReport = None,
    workflow_run_url: RunUrl = None,
    bucket: Bucket = None,
    prefix: Prefix = "registry/",
    actor: Actor = None,
    as_json: AsJson = False,
) -> None:
    """Publish a model package as an immutable version, with its image, gate report and run."""
    from approvals.registry.provenance import workflow_run

    if image is None and os.environ.get("GITHUB_ACTIONS") == "true":
        # A record is written once: a version published by CI without its image never gets one.
        _fail_user("in GitHub Actions, publish needs --image: a version cannot gain one later")
    with _errors():
        run = workflow_run(workflow_run_url, os.environ)
        result = _registry(bucket, prefix).publish(
            package,
            version=version,
            git_sha=git_sha,
            published_by=actor,
            image=image,
            gate_report=gate_report,
            workflow_run=run,
        )
    record = result.record
    verb = "published" if result.created else "already published"
    data = {**record.model_dump(mode="json"), "created": result.created}
    text = [f"{verb} {record.version} {record.content_hash}", *provenance_lines(record)]
    _emit(data, as_json, "\n".join(text))


@app.command("list")
def list_versions(
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 20,
    bucket: Bucket = None,
    prefix: Prefix = "registry/",
    as_json: AsJson = False,
) -> None:
    """List published versions, newest first."""
    with _errors():
        records = _registry(bucket, prefix).list_versions(limit)
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in records], indent=1))
        return
    for record in records:
        sha = (record.git_sha or "-")[:12]
        typer.echo(f"{record.version}\t{record.published_at}\t{sha}\t{record.content_hash[:19]}")


@app.command()
def show(
    version: Annotated[str, typer.Argument(help="a published version")],
    bucket: Bucket = None,
    prefix: Prefix = "registry/",
    as_json: AsJson = False,
) -> None:
    """Print a version's record: content hash, git SHA, image, gate verdict, workflow run."""
    with _errors():
        record = _registry(bucket, prefix).show(version)
    _emit(record.model_dump(mode="json"), as_json, "\n".join(record_lines(record)))


@app.command()
def pull(
    dest: Annotated[Path, typer.Option("--dest", help="directory to (re)place")],
    version: Annotated[str | None, typer.Argument(help="version (or use --env)")] = None,
    env: Annotated[str | None, typer.Option("--env", help="pull what the alias points at")] = None,
    alias: Alias = "champion",
    bucket: Bucket = None,
    prefix: Prefix = "registry/",
) -> None:
    """Download a version, verify every file's hash, and replace --dest atomically."""
    if (version is None) == (env is None):
        _fail_user("pass either a VERSION or --env (with --alias), not both or neither")
    with _errors():
        registry = _registry(bucket, prefix)
        name = version if env is None else registry.resolve(env, alias).version
        record = registry.pull(name, dest)
    typer.echo(f"pulled {record.version} {record.content_hash} into {dest}")


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="a published version")],
    env: Env,
    alias: Alias = "champion",
    bucket: Bucket = None,
    prefix: Prefix = "registry/",
    actor: Actor = None,
    reason: Reason = None,
    as_json: AsJson = False,
) -> None:
    """Point an environment's alias at a published version (logged in the alias history)."""
    with _errors():
        state = _registry(bucket, prefix).promote(env, alias, version, actor=actor, reason=reason)
    text = f"{env}/{alias} -> {state.version} (change #{state.seq})"
    _emit(state.model_dump(mode="json"), as_json, text)


@app.command()
def rollback(
    env: Env,
    alias: Alias = "champion",
    to: Annotated[str | None, typer.Option("--to", help="version (default: previous)")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the target and its record, write nothing")
    ] = False,
    bucket: Bucket = None,
    prefix: Prefix = "registry/",
    actor: Actor = None,
    reason: Reason = None,
    as_json: AsJson = False,
) -> None:
    """Point an environment's alias back at its previous version (or --to a given one)."""
    with _errors():
        registry = _registry(bucket, prefix)
        if dry_run:
            plan = registry.plan_rollback(env, alias, to=to)
            _emit(plan_json(plan), as_json, "\n".join(plan_lines(plan)))
            return
        state = registry.rollback(env, alias, to=to, actor=actor, reason=reason)
    text = f"{env}/{alias} -> {state.version} (change #{state.seq}, rollback)"
    _emit(state.model_dump(mode="json"), as_json, text)


@app.command()
def history(
    env: Env,
    alias: Alias = "champion",
    bucket: Bucket = None,
    prefix: Prefix = "registry/",
    as_json: AsJson = False,
) -> None:
    """Print the audit log of an alias, oldest first."""
    with _errors():
        entries = _registry(bucket, prefix).history(env, alias)
    if as_json:
        typer.echo(json.dumps([e.model_dump(mode="json") for e in entries], indent=1))
        return
    for e in entries:
        who = e.actor or "-"
        typer.echo(f"#{e.seq}\t{e.updated_at}\t{e.action}\t{e.version}\t{who}\t{e.reason or ''}")


@app.command()
def resolve(
    env: Env,
    alias: Alias = "champion",
    allow_missing: Annotated[
        bool, typer.Option(help="print nothing if unset (or, for image, if none is recorded)")
    ] = False,
    field: Annotated[str, typer.Option(help=" or ".join(FIELDS))] = "version",
    bucket: Bucket = None,
    prefix: Prefix = "registry/",
) -> None:
    """Print the version, git SHA or image an alias points at; for scripts and the pipeline."""
    if field not in FIELDS:
        _fail_user(f"bad --field {field!r}: expected {', '.join(FIELDS)}")
    with _errors():
        registry = _registry(bucket, prefix)
        state = registry.current(env, alias)
        record = None if state is None or field != "image" else registry.show(state.version)
    if state is None:
        if not allow_missing:
            _fail_user(f"{alias} is not set in environment {env!r}")
        return
    if record is None:
        typer.echo(getattr(state, field) or "")
        return
    if record.image is None and not allow_missing:
        _fail_user(f"{env}/{alias} is {record.version}, published without an image (no --image)")
    typer.echo("" if record.image is None else record.image.reference)
