"""``make release-dry-run``: the release workflow's own steps, run here, against moto.

Reads ``.github/workflows/release.yml`` and the reusable ``deploy.yml`` it calls and runs
their steps in order (job ``model``, then dev, staging and prod in ``needs`` order), each job
in a fresh copy of the working tree, with the ``${{ }}`` expressions, ``if:`` conditions and
``GITHUB_ENV``/``GITHUB_OUTPUT`` files as GitHub has them (:mod:`dev.dry_run`). Registry
steps run for real against moto's S3 (one bucket per environment), pushes land in moto's
ECR; docker, pulumi and kubectl are stand-ins that record what they would run. At the end it
prints the model version and image each environment would run, and the recorded commands;
it exits 1 when a step failed (naming the job and step), 2 when it could not start.

Usage::

    python -m dev.release_dry_run [--data simulated|s3] [--var NAME=VALUE ...] [--verbose]
        [--keep] [--workflows DIR] [--repo CHECKOUT] [--s3-endpoint URL] [--scratch DIR]
        [--summary-json FILE]

``--data s3`` puts one simulation, cut in time, on moto's S3 and points ``TRAINING_DATA_URI``
and ``HOLDOUT_DATA_URI`` at it; by default they are empty and ``fetch-data.sh`` simulates.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from dev.dry_run.actions import Host
from dev.dry_run.cluster import stop_all
from dev.dry_run.data import seed_training_data
from dev.dry_run.evaluate import Strict
from dev.dry_run.pipeline import run_workflow
from dev.dry_run.report import Summary, show, summarize
from dev.dry_run.run import Run
from dev.dry_run.sandbox import ROOT, MotoServer, provision, snapshot
from dev.dry_run.settings import (
    DEFAULT_SETTINGS,
    DryRunSettings,
    SettingsError,
    load_settings,
    parse_overrides,
)
from dev.dry_run.shim_args import write_json
from dev.dry_run.workflow import WorkflowError, load
from dev.processes import StackError

RELEASE = "release.yml"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dev.release_dry_run", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--repo", type=Path, default=ROOT, help="checkout to release (default: this)"
    )
    parser.add_argument("--workflows", type=Path, help="workflows folder (default: the snapshot's)")
    parser.add_argument(
        "--settings", type=Path, default=DEFAULT_SETTINGS, help="dry-run settings YAML"
    )
    parser.add_argument("--var", action="append", default=[], help="override a repository variable")
    parser.add_argument(
        "--data", choices=("simulated", "s3"), default="simulated",
        help="simulated: fetch-data.sh simulates (TRAINING_DATA_URI empty); s3: one "
        "simulation cut in time into train/ and holdout/ on moto's S3",
    )  # fmt: skip
    parser.add_argument("--s3-endpoint", help="use this moto server instead of starting one")
    parser.add_argument("--summary-json", type=Path, help="also write the summary here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument(
        "--scratch", type=Path, help="make the scratch folder in here (default: TMPDIR)"
    )
    parser.add_argument("--verbose", action="store_true", help="show every step's output")
    return parser.parse_args(argv)


def _uv() -> Path:
    for candidate in (os.environ.get("UV"), shutil.which("uv"), str(ROOT / ".tools/bin/uv")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise StackError("uv not found (UV, PATH or .tools/bin/uv): run make install")


def _sha(repo: Path) -> str:
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH, as everywhere in dev/
        cwd=repo, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout.strip() or "0" * 40


@contextlib.contextmanager
def _moto(endpoint: str | None, log: Path) -> Iterator[str]:
    if endpoint:
        yield endpoint
        return
    with MotoServer(log) as server:
        yield server.endpoint


def dry_run(args: argparse.Namespace, root: Path) -> Summary:
    """Run the release in the scratch folder ``root``; its summary."""
    began = time.monotonic()
    settings = load_settings(args.settings, parse_overrides(args.var))
    source, state = root / "source", root / "state"
    state.mkdir()
    repo = args.repo.resolve()
    print(f"snapshot of {repo}: {snapshot(repo, source)} files into {source}", flush=True)
    workflows = args.workflows or source / ".github" / "workflows"
    release = load(workflows / RELEASE)
    run_id = str(time.time_ns() // 1_000_000)
    with _moto(args.s3_endpoint, root / "moto.log") as endpoint:
        stacks = provision(settings, endpoint, run_id, state)
        if args.data == "s3":
            settings = _with_s3_data(settings, endpoint, run_id)
        uv = _uv()
        sandbox = {"endpoint": endpoint, "region": settings.region, "uv": str(uv)}
        write_json(state / "sandbox.json", {**sandbox, "account": settings.account})
        host = Host(source, root / "artifacts", state, endpoint, settings.account, uv)
        run = Run(host, settings, root, workflows, run_id, _sha(repo), verbose=args.verbose)
        print(f"release dry run {run_id}: moto at {endpoint}, scratch {root}", flush=True)
        try:
            run_workflow(
                run, release, Strict({}, " (a push has no inputs)"), Strict(settings.secrets)
            )
        finally:
            stop_all(state)
        return summarize(run, stacks, time.monotonic() - began)


def _with_s3_data(settings: DryRunSettings, endpoint: str, run_id: str) -> DryRunSettings:
    """Seed train/ and holdout/ on moto; the settings with the variables naming them."""
    bucket, payments = f"approvals-dry-run-{run_id}-data", int(settings.vars["SIMULATED_PAYMENTS"])
    print(f"--data s3: {payments} simulated payments, cut in time, into s3://{bucket}", flush=True)
    data = seed_training_data(endpoint, settings.region, bucket, payments)
    return settings.model_copy(update={"vars": {**settings.vars, **data}})


def main(argv: list[str] | None = None) -> None:
    """Command line: run the dry run, print its summary, exit 0, 1 (a step failed) or 2."""
    args = _arguments(argv)
    root = Path(tempfile.mkdtemp(prefix="release-dry-run-", dir=args.scratch))
    try:
        summary = dry_run(args, root)
    except (SettingsError, WorkflowError, StackError) as exc:
        print(f"release dry run: {exc}", file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)
        sys.exit(2)
    show(summary, sys.stdout)
    if args.summary_json:
        summary.write(args.summary_json)
    if args.keep or not summary.ok:
        for workspace in [] if args.keep else (root / "jobs").glob("*/workspace"):
            shutil.rmtree(workspace, ignore_errors=True)
        print(f"logs and state kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    sys.exit(0 if summary.ok else 1)


if __name__ == "__main__":
    main()
