"""Stand-ins for ``docker``, ``pulumi`` and ``kubectl``, first on each job's PATH.

Each is a two-line script that runs ``python -I -m dev.dry_run.shims TOOL STATE JOB ARGS...``
with the dry run's interpreter (``-I``: the step's ``PYTHONPATH`` or working directory never
changes which code answers). Every call is recorded (:mod:`dev.dry_run.record`) and answered
from the dry run's state: a per-job image store for docker (each runner has its own daemon),
moto's ECR for pushes, stack outputs and deployed config for pulumi, local processes for the
cluster behind kubectl. A command a shim does not know fails loudly.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dev.dry_run.shim_args import ShimError

if TYPE_CHECKING:
    from dev.dry_run.actions import Host

TOOLS = ("docker", "pulumi", "kubectl")


def install_shims(job_dir: Path, host: Host) -> Path:
    """Write the shim scripts of one job into ``job_dir/bin``; that folder."""
    folder = job_dir / "bin"
    folder.mkdir(exist_ok=True)
    for tool in TOOLS:
        args = [
            sys.executable,
            "-I",
            "-m",
            "dev.dry_run.shims",
            tool,
            str(host.state),
            str(job_dir),
        ]
        script = folder / tool
        script.write_text(
            f'#!/bin/sh\n# dry-run stand-in: dev/dry_run/shims.py\nexec {shlex.join(args)} "$@"\n'
        )
        script.chmod(0o755)
    return folder


def _handler(tool: str) -> Callable[[Path, Path, list[str]], int]:
    if tool == "docker":
        from dev.dry_run.docker_shim import main as docker

        return docker
    if tool == "pulumi":
        from dev.dry_run.pulumi_shim import main as pulumi

        return pulumi
    from dev.dry_run.kubectl_shim import main as kubectl

    return kubectl


def main(argv: list[str]) -> int:
    """``TOOL STATE JOB ARGS...``: run one shim; its exit code."""
    tool, state, job, args = argv[0], Path(argv[1]), Path(argv[2]), argv[3:]
    try:
        return _handler(tool)(state, job, args)
    except ShimError as exc:
        print(f"{tool} (dry-run shim): {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
