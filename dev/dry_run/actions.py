"""Local stand-ins for the ``uses:`` actions of the workflows; any other action fails the run.

===========================================  ================================================
``actions/checkout``                         the repository snapshot, copied into the workspace
``actions/setup-python``                     checks that ``python<version>`` is on PATH
``astral-sh/setup-uv``                       this machine's uv on PATH (same version or fail)
``pulumi/actions``                           the CLI is the pulumi shim; a ``command`` is recorded
``aws-actions/configure-aws-credentials``    fake keys, region and moto's endpoint exported
``aws-actions/amazon-ecr-login``             a docker login recorded (the docker shim checks it)
``actions/upload-artifact`` / ``download-``  a local artifact store (:mod:`dev.dry_run.artifacts`)
===========================================  ================================================

Local composite actions (``./.github/actions/...``) are not here: the job runner runs their
steps like its own.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dev.dry_run import artifacts
from dev.dry_run.record import record
from dev.dry_run.sandbox import FAKE_KEYS

ROLE_ARN = re.compile(r"^arn:aws:iam::\d{12}:role/[\w+=,.@/-]+$")


class ActionError(RuntimeError):
    """The action would fail (or has no local equivalent)."""


@dataclass(frozen=True)
class Host:
    """What the stand-ins share across jobs: snapshot, artifact store, shim state, moto, uv."""

    source: Path
    artifacts: Path
    state: Path
    endpoint: str
    account: str
    uv: Path


@dataclass
class Call:
    """One ``uses:`` step: its rendered ``with:``, its environment and its job's folders."""

    uses: str
    inputs: dict[str, str]
    env: dict[str, str]
    workspace: Path
    job_dir: Path

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean input (``'true'``/``'false'``)."""
        return self.inputs.get(name, str(default)).strip().lower() == "true"


@dataclass
class Result:
    """What an action leaves behind: outputs, exported variables, PATH entries, a note."""

    note: str
    outputs: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    path: list[str] = field(default_factory=list)


def checkout(host: Host, call: Call) -> Result:
    """The snapshot of the working tree in place of the commit (a fresh copy each time)."""
    if call.inputs.get("repository", "") not in ("", "${{ github.repository }}"):
        raise ActionError(f"checkout of another repository {call.inputs['repository']!r}")
    target = call.workspace / call.inputs.get("path", "")
    for stale in target.iterdir() if target.is_dir() else []:  # checkout cleans its folder
        shutil.rmtree(stale) if stale.is_dir() and not stale.is_symlink() else stale.unlink()
    shutil.copytree(host.source, target, symlinks=True, dirs_exist_ok=True)
    return Result(f"checked out the snapshot of {host.source} into {target}")


def setup_python(host: Host, call: Call) -> Result:
    """A check that the wanted interpreter is on the runner's PATH."""
    version = call.inputs.get("python-version", "").strip()
    found = shutil.which(f"python{version}", path=call.env.get("PATH"))
    if not version or found is None:
        raise ActionError(f"setup-python: no python{version} on this machine's PATH")
    return Result(f"python {version}: {found}", outputs={"python-path": found})


def setup_uv(host: Host, call: Call) -> Result:
    """This machine's uv on PATH, if it is the version the workflow pins."""
    done = subprocess.run([host.uv, "--version"], capture_output=True, text=True, check=True)
    have = done.stdout.split()[1]
    want = call.inputs.get("version", "").strip()
    if want and want != have:
        raise ActionError(f"setup-uv: the workflow pins uv {want}, this machine has {have}")
    tools = call.job_dir / "tools" / "uv"
    tools.mkdir(parents=True, exist_ok=True)
    for name in ("uv", "uvx"):
        if (host.uv.parent / name).exists() and not (tools / name).exists():
            (tools / name).symlink_to(host.uv.parent / name)
    return Result(f"uv {have} from {host.uv}", outputs={"uv-version": have}, path=[str(tools)])


def pulumi_action(host: Host, call: Call) -> Result:
    """The CLI is the shim already; a ``command`` input is recorded, not run."""
    command = call.inputs.get("command", "").strip()
    if not command:
        return Result("pulumi CLI: the dry run's shim is on PATH")
    argv = ["pulumi", command, "--stack", call.inputs.get("stack-name", "")]
    record(host.state, [*argv, "--cwd", call.inputs.get("work-dir", ".")], announce=False)
    return Result(f"pulumi {command} recorded")


def aws_credentials(host: Host, call: Call) -> Result:
    """Fake keys for moto instead of an assumed role (whose ARN must still be well formed)."""
    role, region = call.inputs.get("role-to-assume", ""), call.inputs.get("aws-region", "")
    if not ROLE_ARN.fullmatch(role):
        raise ActionError(f"configure-aws-credentials: role-to-assume {role!r} is not a role ARN")
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        raise ActionError(f"configure-aws-credentials: region {region!r} is not valid")
    env = {**FAKE_KEYS, "AWS_REGION": region, "AWS_DEFAULT_REGION": region}
    env["AWS_ENDPOINT_URL"] = host.endpoint
    session = call.inputs.get("role-session-name", "")
    note = f"would assume {role} as session {session!r}; AWS now means moto at {host.endpoint}"
    return Result(note, outputs={"aws-account-id": host.account}, env=env)


def ecr_login(host: Host, call: Call) -> Result:
    """A docker login to the account's registry, recorded in the job's docker config."""
    region = call.env.get("AWS_REGION", "")
    if not region or not call.env.get("AWS_ACCESS_KEY_ID"):
        raise ActionError("amazon-ecr-login: no AWS credentials (configure-aws-credentials first)")
    registry = f"{host.account}.dkr.ecr.{region}.amazonaws.com"
    config = Path(call.env["DOCKER_CONFIG"]) / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    auths = json.loads(config.read_text()).get("auths", {}) if config.exists() else {}
    auths[registry] = {"auth": base64.b64encode(b"AWS:dry-run").decode()}
    config.write_text(json.dumps({"auths": auths}))
    record(
        host.state, ["docker", "login", "-u", "AWS", "--password-stdin", registry], announce=False
    )
    key = registry.replace(".", "_")
    return Result(f"logged in to {registry}", outputs={"registry": registry, key: "AWS"})


def upload_artifact(host: Host, call: Call) -> Result:
    """Copy the named paths into the run's artifact store."""
    note = artifacts.upload(
        host.artifacts, call.workspace, call.inputs.get("name", "artifact"),
        call.inputs.get("path", ""),
        if_no_files_found=call.inputs.get("if-no-files-found", "warn"),
        overwrite=call.flag("overwrite"), include_hidden=call.flag("include-hidden-files"),
    )  # fmt: skip
    return Result(note)


def download_artifact(host: Host, call: Call) -> Result:
    """Copy an artifact of this run out of the store."""
    dest = call.workspace / call.inputs.get("path", "")
    return Result(artifacts.download(host.artifacts, call.inputs.get("name", ""), dest))


HANDLERS: dict[str, Callable[[Host, Call], Result]] = {
    "actions/checkout": checkout,
    "actions/setup-python": setup_python,
    "astral-sh/setup-uv": setup_uv,
    "pulumi/actions": pulumi_action,
    "aws-actions/configure-aws-credentials": aws_credentials,
    "aws-actions/amazon-ecr-login": ecr_login,
    "actions/upload-artifact": upload_artifact,
    "actions/download-artifact": download_artifact,
}


def run_action(host: Host, call: Call) -> Result:
    """Run the stand-in of ``call.uses`` (``owner/repo[/path]@ref``).

    Raises:
        ActionError: the action has no stand-in, or would fail.
        ArtifactError: an artifact action would fail.
    """
    name = "/".join(call.uses.split("@", 1)[0].split("/")[:2])
    handler = HANDLERS.get(name)
    if handler is None:
        raise ActionError(f"no local equivalent for uses: {call.uses} (dev/dry_run/actions.py)")
    return handler(host, call)
