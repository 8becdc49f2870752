"""The cluster behind the kubectl stand-in: each environment runs the image its stack names.

``ensure`` is the rollout: it reads the image tag the stack's last ``pulumi up`` set, pulls that
image from moto's ECR (manifest and digest from ECR, the layer from the dry run's blobs), and,
unless the environment already runs that digest, starts it as the image would run:

- the image's Python environment: a venv with the bento's ``env/python/requirements.txt``
  (what its Dockerfile installs; built once per digest, from uv's cache);
- Redis, and the feature Job: ``python -m approvals.features.preload --model-tag
  approvals:<modelVersion>`` from the image, as the deploy's Job runs it;
- ``bentoml serve $BENTO_PATH`` on free ports, ready when ``/readyz`` answers 200.

The processes lead their own sessions and are recorded in ``state/cluster/<env>.json``;
:func:`stop_all` ends them when the dry run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import subprocess
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dev.dry_run.ecr import pull
from dev.dry_run.pulumi_shim import deployed, setting
from dev.dry_run.shim_args import ShimError, read_json, write_json
from dev.processes import free_port, tail
from dev.redis_server import RedisServer

HTTP_PORT, GRPC_PORT = 3000, 50051  # the Services' ports (infra/components/manifests.py)


@dataclass
class Deployment:
    """What one environment runs: the image, its local ports and its process groups."""

    environment: str
    image: str
    digest: str
    http: int = 0
    grpc: int = 0
    groups: list[int] = field(default_factory=list)
    ready: bool = False

    def port_for(self, service: str, port: int) -> int:
        """The local port behind ``svc/NAME`` port ``port`` (``-grpc`` or 50051: gRPC)."""
        grpc = service.endswith("-grpc") or port == GRPC_PORT
        return self.grpc if grpc else self.http

    def alive(self) -> bool:
        """Whether all its process groups still run."""
        return bool(self.groups) and all(_exists(group) for group in self.groups)


def _record(state: Path, environment: str) -> Path:
    return state / "cluster" / f"{environment}.json"


def ensure(state: Path, environment: str) -> Deployment:
    """Make ``environment`` run the image its stack names (a no-op when it does already).

    Raises:
        ShimError: the stack names no image, the image is not in ECR, or it does not start.
    """
    path = _record(state, environment)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stack = read_json(state / "stacks" / f"{environment}.json", {})
        tag, model_version = wanted(state, environment, stack)
        repository = stack["ecrRepositoryUrl"].split("/", 1)[1]
        digest, layer = pull(state, repository, tag)
        current = read_json(path, None)
        running = Deployment(**current) if current else None
        if running is not None and running.ready and running.digest == digest and running.alive():
            return running
        if running is not None:
            stop(running)
        image = f"{stack['ecrRepositoryUrl']}:{tag}@{digest}"
        deployment = Deployment(environment, image, digest)
        try:
            start(state, deployment, layer, model_version)
        finally:  # recorded even when it failed half-way: stop_all ends what did start
            write_json(path, asdict(deployment))
        deployment.ready = True
        write_json(path, asdict(deployment))
        return deployment


def wanted(state: Path, environment: str, stack: dict[str, Any]) -> tuple[str, str]:
    """(image tag, model version) the stack's last ``pulumi up`` deploys.

    As infra/components/release.py decides: an ``...imageTag`` in the config names the image;
    else the ``...modelVersion`` in the config, else the environment's champion, names a
    version whose registry record holds the image.

    Raises:
        ShimError: no pulumi up named a release and there is no champion, or the version has
            no image recorded.
    """
    config = deployed(state, environment)
    tag, version = setting(config, "imageTag"), setting(config, "modelVersion")
    if tag:
        return tag, version or tag  # release.yml tags the image with the model version
    registry = _registry(state, stack["bucketName"])
    if not version:
        current = registry.current(environment, "champion")
        version = "" if current is None else current.version
    if not version:
        raise ShimError(f"the {environment} stack names no release and has no champion")
    record = registry.show(version)
    if record.image is None:
        raise ShimError(f"version {version} has no image recorded in the {environment} registry")
    return record.image.reference.split("@", 1)[0].rsplit(":", 1)[1], version


def _registry(state: Path, bucket: str) -> Any:
    from approvals.registry.core import ModelRegistry
    from dev.dry_run.sandbox import aws_client

    sandbox = read_json(state / "sandbox.json", {})
    return ModelRegistry(aws_client("s3", sandbox["endpoint"], sandbox["region"]), bucket)


def start(state: Path, deployment: Deployment, layer: Path, model_version: str) -> None:
    """Unpack the image, build its environment, load its features and serve it."""
    folder = state / "images" / deployment.digest.replace(":", "-")
    bento = _unpack(layer, folder / "bento")
    venv = _image_env(state, bento, folder)
    workdir = state / "cluster" / deployment.environment
    workdir.mkdir(parents=True, exist_ok=True)
    redis = RedisServer(workdir)
    redis.start()
    if redis.proc is not None:
        deployment.groups.append(redis.proc.pid)
    env = _image_vars(bento, workdir, redis.url)
    job = [str(venv / "bin" / "python"), "-m", "approvals.features.preload"]
    tag = f"approvals:{model_version}"
    _run([*job, "--model-tag", tag], workdir / "features-job.log", env, "feature Job")
    deployment.http, deployment.grpc = free_port(), free_port()
    log = workdir / "service.log"
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [str(venv / "bin" / "bentoml"), "serve", str(bento), "--host", "127.0.0.1",
             "--port", str(deployment.http)],
            cwd=bento, env={**env, "GRPC_PORT": str(deployment.grpc)}, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deployment.groups.append(proc.pid)
    _wait_ready(f"http://127.0.0.1:{deployment.http}/readyz", proc, log)


def _unpack(layer: Path, target: Path) -> Path:
    if not target.is_dir():
        partial = target.with_name(target.name + ".partial")
        with tarfile.open(layer) as tar:
            tar.extractall(partial, filter="data")
        partial.rename(target)
    return target


def _image_env(state: Path, bento: Path, folder: Path) -> Path:
    """The image's venv, made as its Dockerfile makes ``/app/.venv``: ``uv venv``, then the
    bento's own ``env/python/install.sh`` (requirements, then its wheels) inside it."""
    venv = folder / "venv"
    if (venv / "bin" / "bentoml").exists():
        return venv
    uv = Path(read_json(state / "sandbox.json", {})["uv"])
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    path = os.pathsep.join([str(venv / "bin"), str(uv.parent), env.get("PATH", "")])
    env |= {"UV_PYTHON_DOWNLOADS": "never", "PATH": path}
    log = folder / "image-env.log"
    _run([str(uv), "venv", "--python", "3.11", str(venv)], log, env, "image venv")
    install = ["bash", "-euxo", "pipefail", str(bento / "env" / "python" / "install.sh")]
    _run(install, log, {**env, "VIRTUAL_ENV": str(venv)}, "image install.sh")
    return venv


def _image_vars(bento: Path, workdir: Path, redis_url: str) -> dict[str, str]:
    """The variables the image and the Deployment give the service process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VIRTUAL_ENV"))}
    home = workdir / "bentoml-home"
    home.mkdir(exist_ok=True)
    env |= {"BENTO_PATH": str(bento), "BENTOML_HOME": str(home), "BENTOML_CONTAINERIZED": "true",
            "BENTOML_DO_NOT_TRACK": "true", "APPROVALS_REDIS_URL": redis_url}  # fmt: skip
    return env


def _run(argv: list[str], log: Path, env: dict[str, str], what: str) -> None:
    with log.open("ab") as sink:
        done = subprocess.run(argv, env=env, stdout=sink, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise ShimError(f"{what} failed ({done.returncode}); end of {log}:\n{tail(log, 20)}")


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ShimError(
                f"the service exited ({proc.returncode}); end of {log}:\n{tail(log, 20)}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise ShimError(
        f"the service was not ready within {timeout:.0f}s; end of {log}:\n{tail(log, 20)}"
    )


def forward(local: int, target: int) -> None:
    """Forward TCP connections on 127.0.0.1:``local`` to ``target`` until killed."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def serve() -> None:
        server = await asyncio.start_server(accept, "127.0.0.1", local)
        async with server:
            await server.serve_forever()

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        asyncio.run(serve())
    except OSError as exc:
        raise ShimError(f"unable to listen on port {local}: {exc}") from exc


def stop(deployment: Deployment) -> None:
    """End a deployment's processes (SIGTERM, then SIGKILL after 20 s)."""
    for group in deployment.groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for group in deployment.groups:
        while time.monotonic() < deadline and _exists(group):
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


def _exists(group: int) -> bool:
    """Whether a process of ``group`` still runs (zombies, which nobody may reap, do not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group and fields[0] != "Z":
                return True
    return False


def stop_all(state: Path) -> None:
    """End every environment's processes (the dry run is over)."""
    for path in sorted((state / "cluster").glob("*.json")):
        stop(Deployment(**read_json(path, {})))
