"""The pulumi stand-in: stack outputs from the dry run's stacks, ``up`` recorded with its config.

It refuses what the real CLI would: a project folder without ``Pulumi.yaml``, an unknown stack,
``up`` without ``--yes`` (non-interactive), no backend (neither ``pulumi login`` in this job nor
``PULUMI_BACKEND_URL``). ``up`` stores the stack's config (``state/pulumi/<stack>.json``), which
the cluster stand-in reads to know which image the stack runs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from dev.dry_run import stack_config
from dev.dry_run.shim_args import Parsed, ShimError, parse, read_json, write_json

VALUED = {
    "--cwd", "-C", "--stack", "-s", "--message", "-m", "--config", "-c", "--color",
    "--policy-pack", "--target", "-t", "--parallel", "-p", "--cloud-url", "--secrets-provider",
}  # fmt: skip
FLAGS = {
    "--yes", "-y", "--non-interactive", "--json", "-j", "--show-secrets", "--config-path",
    "--skip-preview", "-f", "--diff", "--refresh", "-r", "--suppress-outputs",
    "--suppress-progress", "--expect-no-changes", "--local", "--secret", "--path",
}  # fmt: skip
SECRET_OUTPUTS = ("kubeconfig",)


def _project(args: Parsed) -> Path:
    folder = Path(args.one("--cwd", "-C", default=".") or ".")
    if not (folder / "Pulumi.yaml").is_file():
        raise ShimError(f"no Pulumi.yaml project file found in {folder.resolve()}")
    return folder


def _stack(state: Path, args: Parsed) -> str:
    name = args.one("--stack", "-s") or read_json(state / "pulumi" / "selected.json", "")
    if not name:
        raise ShimError("no stack selected; pass --stack or run pulumi stack select")
    if not (state / "stacks" / f"{name}.json").is_file():
        raise ShimError(f"no stack named {name!r} found")
    return str(name)


def _logged_in(job: Path) -> None:
    if not os.environ.get("PULUMI_BACKEND_URL") and not (job / "pulumi-login").exists():
        raise ShimError("no backend: pulumi login first, or set PULUMI_BACKEND_URL")


def deployed(state: Path, stack: str) -> dict[str, str]:
    """The config the stack's ``pulumi up`` runs have set (``--config`` values, merged)."""
    return dict(read_json(state / "pulumi" / f"{stack}.json", {}).get("config", {}))


def setting(config: dict[str, str], name: str) -> str:
    """The value of the last key whose final part is ``name`` (``approvals:a.b.NAME``)."""
    found = [v for k, v in config.items() if k.replace(":", ".").rsplit(".", 1)[-1] == name]
    return found[-1] if found else ""


def outputs(state: Path, stack: str) -> dict[str, Any]:
    """A stack's outputs, as provisioned."""
    return dict(read_json(state / "stacks" / f"{stack}.json", {}))


def stack_output(state: Path, args: Parsed) -> None:
    """``pulumi stack output [NAME] [--json] [--show-secrets]``."""
    stack, names = _stack(state, args), args.positional[2:]
    shown = {
        key: value if args.has("--show-secrets") or key not in SECRET_OUTPUTS else "[secret]"
        for key, value in outputs(state, stack).items()
    }
    if not names:
        print(json.dumps(shown, indent=2) if args.has("--json", "-j") else _table(shown))
        return
    if names[0] not in shown:
        raise ShimError(f"current stack does not have output property {names[0]!r}")
    value = shown[names[0]]
    as_json = args.has("--json", "-j") or not isinstance(value, str)
    print(json.dumps(value, indent=2) if as_json else value)


def _table(values: dict[str, Any]) -> str:
    return "\n".join(
        f"    {k:<20} {v if isinstance(v, str) else json.dumps(v)}" for k, v in values.items()
    )


def overrides(args: Parsed) -> dict[str, str]:
    """The ``--config KEY=VALUE`` values (a key without namespace is the project's).

    Raises:
        ShimError: one without ``=``.
    """
    config = {}
    for pair in args.all("--config", "-c"):
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise ShimError(f"--config {pair!r}: expected KEY=VALUE")
        config[key if ":" in key else f"approvals:{key}"] = value
    return config


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"ns:a": {"b": 1}}`` -> ``{"ns:a.b": "1"}`` (values as text)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat |= _flat(value, name)
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value)
    return flat


def up(state: Path, args: Parsed, command: str = "up") -> None:
    """``pulumi up`` (or ``preview``): checked like the CLI and the program's settings; ``up``
    saves the ``--config`` values in the stack file, as pulumi does, and records what the
    stack now runs (``state/pulumi/<stack>.json``, read by the cluster stand-in)."""
    project, stack = _project(args), _stack(state, args)
    if command == "up" and not args.has("--yes", "-y", "--skip-preview"):
        raise ShimError(
            "--yes or --skip-preview must be passed in to proceed when running in "
            "non-interactive mode"
        )
    for pack in args.all("--policy-pack"):
        if not (project / pack / "PulumiPolicy.yaml").is_file():
            raise ShimError(f"policy pack {project / pack} has no PulumiPolicy.yaml")
    given, as_paths = overrides(args), args.has("--config-path")
    print(f"dry-run: {stack_config.check(project, stack, given, as_paths)}")
    if command != "up":
        return
    document = stack_config.stack_document(project, stack)
    stack_config.apply(document, given, as_paths)
    stack_config.save(project, stack, document)
    path = state / "pulumi" / f"{stack}.json"
    current = read_json(path, {"config": {}, "updates": []})
    current["config"] = _flat(document.get("config") or {})
    update = {"project": project.name, "message": args.one("--message", "-m"), "config": given}
    current["updates"].append({**update, "time": time.time()})
    write_json(path, current)
    print(f"dry-run: stack {stack} of {project.name} would now run with {given}")


def main(state: Path, job: Path, argv: list[str]) -> int:
    """Run one pulumi command of a job's steps; its exit code."""
    from dev.dry_run.record import record

    record(state, ["pulumi", *argv])
    args = parse(argv, VALUED, FLAGS, "pulumi")
    command = args.positional[:2]
    if command[:1] == ["login"]:
        backend = args.positional[1] if len(args.positional) > 1 else ""
        (job / "pulumi-login").write_text(backend)
        print(f"Logged in to {backend or 'the backend'} (dry run)")
    elif command[:1] in (["version"], ["whoami"]):
        print("v3-dry-run" if command == ["version"] else "dry-run")
    elif command == ["stack", "output"]:
        _logged_in(job)
        _project(args)
        stack_output(state, args)
    elif command == ["stack", "select"] and len(args.positional) == 3:
        _logged_in(job)
        write_json(
            state / "pulumi" / "selected.json",
            _stack(state, Parsed(positional=[], options={"--stack": [args.positional[2]]})),
        )
    elif command[:1] == ["up"]:
        _logged_in(job)
        up(state, args)
    elif command[:1] == ["preview"]:
        _logged_in(job)
        up(state, args, "preview")
    elif command[:1] == ["refresh"]:
        _logged_in(job)
        _project(args)
        print(f"dry-run: pulumi refresh of stack {_stack(state, args)} computes nothing")
    else:
        raise ShimError(f"pulumi {' '.join(argv)} is not simulated (dev/dry_run/pulumi_shim.py)", 2)
    return 0
