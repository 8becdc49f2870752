"""The kubectl stand-in: the cluster of the kubeconfig's context, run locally (:mod:`cluster`).

``rollout status`` waits until the image the stack's last ``pulumi up`` named (pulled from
moto's ECR) serves; ``port-forward svc/NAME LOCAL:PORT`` forwards a local port to it, until
killed, as kubectl does. Without a kubeconfig it fails like kubectl with no cluster.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from dev.dry_run.record import record
from dev.dry_run.shim_args import Parsed, ShimError, parse

VALUED = {"-n", "--namespace", "--timeout", "--kubeconfig", "--context", "-o", "--output"}
FLAGS = {"-w", "--watch", "--address"}
CONTEXT_PREFIX = "dry-run-"


def environment(args: Parsed) -> str:
    """The environment of the kubeconfig's (or ``--context``'s) context.

    Raises:
        ShimError: no kubeconfig, or a context the dry run did not make.
    """
    path = args.one("--kubeconfig") or os.environ.get("KUBECONFIG", "")
    if not path or not Path(path).is_file():
        raise ShimError("The connection to the server localhost:8080 was refused (no kubeconfig)")
    config = yaml.safe_load(Path(path).read_text()) or {}
    context = args.one("--context") or config.get("current-context", "")
    if not str(context).startswith(CONTEXT_PREFIX):
        raise ShimError(f"context {context!r} is not one of the dry run's clusters")
    return str(context).removeprefix(CONTEXT_PREFIX)


def main(state: Path, job: Path, argv: list[str]) -> int:
    """Run one kubectl command of a job's steps; its exit code."""
    from dev.dry_run import cluster

    record(state, ["kubectl", *argv])
    args = parse(argv, VALUED, FLAGS, "kubectl")
    command, targets = args.positional[:2], args.positional[2:]
    env = environment(args)
    if command == ["rollout", "status"] and len(targets) == 1:
        deployment = cluster.ensure(state, env)
        print(
            f'deployment "{targets[0].split("/")[-1]}" successfully rolled out ({deployment.image})'
        )
    elif command[:1] == ["port-forward"] and len(args.positional) == 3:
        service, ports = args.positional[1], args.positional[2]
        local, _, remote = ports.partition(":")
        deployment = cluster.ensure(state, env)
        target = deployment.port_for(service, int(remote or local))
        print(
            f"Forwarding from 127.0.0.1:{local} -> {remote or local} (dry run: {target})",
            flush=True,
        )
        cluster.forward(int(local), target)
    else:
        raise ShimError(
            f"kubectl {' '.join(argv)} is not simulated (dev/dry_run/kubectl_shim.py)", 2
        )
    return 0
