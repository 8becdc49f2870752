"""The machine the dry run plays: a snapshot of the repository, moto's AWS, stacks, runner env.

- :func:`snapshot`: the working tree as ``actions/checkout`` would give it (tracked and
  untracked files, not ignored ones, uncommitted edits included), copied once per dry run;
- :class:`MotoServer`: moto's standalone server on a free port (S3 and ECR);
- :func:`provision`: what ``pulumi up`` of each environment would have made: a registry bucket
  and an ECR repository on moto, and the stack outputs the pulumi shim answers with;
- :func:`runner_env`: the environment a job starts from (nothing of the caller's AWS setup).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from dev.dry_run.settings import DryRunSettings
from dev.processes import StackError, free_port, stop_group, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
FAKE_KEYS = {
    "AWS_ACCESS_KEY_ID": "dry-run",
    "AWS_SECRET_ACCESS_KEY": "dry-run",
    "AWS_SESSION_TOKEN": "dry-run",
}
# what a runner's environment keeps of the caller's: locale, home (uv's cache) and proxies
PASSED_THROUGH = (
    "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TERM", "UV_CACHE_DIR", "PYENV_ROOT",
    "SSL_CERT_FILE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
    "no_proxy",
)  # fmt: skip


def snapshot(repo: Path, dest: Path) -> int:
    """Copy the repository's files (``git ls-files -co --exclude-standard``) into ``dest``.

    Returns:
        How many files were copied.

    Raises:
        StackError: ``repo`` is not a git checkout.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=repo, capture_output=True, check=False,
    )  # fmt: skip
    if listed.returncode != 0:
        raise StackError(f"git ls-files in {repo} failed: {listed.stderr.decode()[-500:]}")
    count = 0
    for name in sorted(set(listed.stdout.decode().split("\0")) - {""}):
        source = repo / name
        if source.is_symlink() or source.is_file():  # a tracked file deleted in the tree: gone
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target, follow_symlinks=False)
            count += 1
    return count


class MotoServer:
    """moto's standalone server (S3, ECR, STS...) on a free port, for one dry run."""

    def __init__(self, log: Path) -> None:
        self.port, self.log = free_port(), log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """Its endpoint URL (``AWS_ENDPOINT_URL`` for boto3 and the AWS CLI)."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MotoServer:
        with self.log.open("wb") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_for_port(self.port, timeout=60, proc=self.proc)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None:
            stop_group(self.proc, timeout=10)


@dataclass(frozen=True)
class Stack:
    """One environment's stand-in stack: its bucket, ECR repository and outputs."""

    environment: str
    bucket: str
    repository: str
    outputs: dict[str, Any]


def aws_client(service: str, endpoint: str, region: str) -> Any:
    """A boto3 client of moto's ``service`` with the fake keys."""
    import boto3

    keys = {name.lower(): value for name, value in FAKE_KEYS.items()}
    make: Any = boto3.client  # typed per service name; ours is a variable
    return make(service, endpoint_url=endpoint, region_name=region, **keys)


def create_bucket(s3: Any, bucket: str, region: str) -> None:
    """Create ``bucket`` in ``region`` (us-east-1 takes no location constraint)."""
    where = (
        {}
        if region == "us-east-1"
        else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    )
    s3.create_bucket(Bucket=bucket, **where)


def provision(settings: DryRunSettings, endpoint: str, run_id: str, state: Path) -> list[Stack]:
    """Create each environment's bucket and ECR repository on moto; write its stack outputs
    to ``state/stacks/<environment>.json`` for the pulumi shim."""
    s3, ecr = (aws_client(name, endpoint, settings.region) for name in ("s3", "ecr"))
    stacks = []
    for environment in settings.environments:
        bucket = f"approvals-dry-run-{run_id}-{environment}"
        create_bucket(s3, bucket, settings.region)
        name = f"approvals-{environment}-{run_id}"
        created = ecr.create_repository(repositoryName=name, imageTagMutability="IMMUTABLE")
        stack = Stack(environment, bucket, name, _outputs(settings, environment, bucket, created))
        target = state / "stacks" / f"{environment}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(stack.outputs, indent=1))
        stacks.append(stack)
    return stacks


def _outputs(
    settings: DryRunSettings, environment: str, bucket: str, created: dict[str, Any]
) -> dict[str, Any]:
    """The stack outputs the deploy scripts read (infra/__main__.py exports them)."""
    context = f"dry-run-{environment}"
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": "https://dry-run.invalid"}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
        "users": [{"name": context, "user": {"token": "dry-run"}}],
    }
    return {
        "environment": environment,
        "clusterName": f"approvals-{environment}",
        "bucketName": bucket,
        "ecrRepositoryUrl": created["repository"]["repositoryUri"],
        "serviceHosts": {**settings.service_hosts.model_dump(), "httpLoadBalancer": ""},
        "kubeconfig": kubeconfig,
    }


def runner_env(shims: Path, temp: Path) -> dict[str, str]:
    """The environment a job's processes start from, like a fresh runner's.

    ``PATH`` is the caller's without this checkout's folders (its ``.venv``, ``.tools``) behind
    the shims (docker, pulumi, kubectl); AWS reads no config or credentials file and no
    instance metadata, so nothing reaches a real account.
    """
    keep = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    virtual_env = os.environ.get("VIRTUAL_ENV", "\0")
    host_path = [
        entry
        for entry in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
        if entry and not entry.startswith((str(ROOT) + os.sep, virtual_env))
    ]
    return {
        **keep,
        "PATH": os.pathsep.join([str(shims), *host_path]),
        "AWS_CONFIG_FILE": str(temp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(temp / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "DOCKER_CONFIG": str(temp / "docker-config"),
        # BentoML's usage tracking is the runner's business, not the workflow's: kept quiet
        "BENTOML_DO_NOT_TRACK": "true",
    }
