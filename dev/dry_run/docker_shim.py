"""The docker stand-in: an image store per job, ``docker save``/``load`` in docker's own format,
and pushes that land in moto's ECR.

``docker build`` (what ``bentoml containerize`` runs) builds nothing: the "image" is its build
context as a single layer, so ``docker save`` still writes a real ``docker save`` tarball
(``manifest.json``, the config, the layer) that ``gzip``, the artifact and ``docker load`` carry
to the deploy jobs, and the kubectl stand-in can serve the bento inside it. ``docker push`` to
an ECR host needs an ``amazon-ecr-login`` first; it puts a v2 manifest into moto's repository
(whose digest ECR then reports) and keeps the blobs for the cluster.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import sys
import tarfile
from pathlib import Path
from typing import Any

from dev.dry_run.record import record
from dev.dry_run.shim_args import Parsed, ShimError, parse, read_json, sha256, write_json

BUILD_VALUED = {
    "-f", "--file", "-t", "--tag", "--build-arg", "--label", "--platform", "--progress",
    "--target", "--cache-from", "--secret", "--output", "-o", "--iidfile", "--network",
    "--add-host", "--ssh", "--cache-to", "--builder",
}  # fmt: skip
BUILD_FLAGS = {"--pull", "--no-cache", "--load", "--push", "-q", "--quiet", "--rm"}


def normal(reference: str) -> str:
    """``name`` -> ``name:latest``, as docker reads a reference without a tag."""
    return reference if ":" in reference.rsplit("/", 1)[-1] else f"{reference}:latest"


class Store:
    """One job's images: ``images/<id>/{config.json,layer.tar}`` and ``tags.json``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.tags: dict[str, str] = read_json(folder / "tags.json", {})

    def add(self, config: bytes, layer: bytes, tags: list[str]) -> str:
        """Store an image under ``tags``; its id (the config's digest)."""
        image = sha256(config)
        target = self.folder / "images" / image
        target.mkdir(parents=True, exist_ok=True)
        (target / "config.json").write_bytes(config)
        (target / "layer.tar").write_bytes(layer)
        self.tags.update({normal(tag): image for tag in tags})
        write_json(self.folder / "tags.json", self.tags)
        return image

    def find(self, reference: str) -> Path:
        """The folder of the image ``reference`` names (a tag or an id).

        Raises:
            ShimError: no such image, as the daemon says it.
        """
        image = self.tags.get(normal(reference)) or reference.removeprefix("sha256:")
        folder = self.folder / "images" / image
        if not image or not folder.is_dir():
            raise ShimError(f"Error response from daemon: No such image: {reference}")
        return folder


def build(store: Store, args: list[str]) -> str:
    """``docker build``: the context (checked to hold the Dockerfile) as the image's layer."""
    parsed = parse(args, BUILD_VALUED, BUILD_FLAGS, "docker build")
    if len(parsed.positional) != 1:
        raise ShimError('"docker build" requires exactly 1 argument (the context)')
    context = Path(parsed.positional[0]).resolve()
    dockerfile = Path(parsed.one("-f", "--file", default=str(context / "Dockerfile")) or "")
    if not context.is_dir() or not (context / dockerfile).is_file():
        raise ShimError(f"unable to prepare context: {context} or its {dockerfile} is missing")
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for path in sorted(context.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(context)), recursive=False)
    body = layer.getvalue()
    config = _config(body, parsed, str(dockerfile))
    image = store.add(config, body, [normal(tag) for tag in parsed.all("-t", "--tag")])
    return (
        f"dry-run: built nothing; image sha256:{image} is the build context ({len(body):,} bytes)"
    )


def _config(layer: bytes, parsed: Parsed, dockerfile: str) -> bytes:
    labels = dict(label.partition("=")[::2] for label in parsed.all("--label"))
    doc = {
        "architecture": "amd64", "os": "linux", "config": {"Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha256(layer)}"]},
        "dry_run": {"dockerfile": dockerfile, "note": "the layer is the build context"},
    }  # fmt: skip
    return json.dumps(doc, sort_keys=True).encode()


def save(store: Store, args: list[str]) -> None:
    """``docker save``: a tarball with ``manifest.json`` as docker writes it."""
    parsed = parse(args, {"-o", "--output"}, set(), "docker save")
    output = parsed.one("-o", "--output")
    if output is None and sys.stdout.isatty():
        raise ShimError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    buffer = io.BytesIO()
    entries: list[dict[str, Any]] = []
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for reference in parsed.positional:
            folder = store.find(reference)
            image = folder.name
            _add(tar, f"{image}.json", (folder / "config.json").read_bytes())
            _add(tar, f"{image}/layer.tar", (folder / "layer.tar").read_bytes())
            entries.append(
                {"Config": f"{image}.json", "RepoTags": [normal(reference)],
                 "Layers": [f"{image}/layer.tar"]}
            )  # fmt: skip
        _add(tar, "manifest.json", json.dumps(entries).encode())
    if output is None:
        sys.stdout.buffer.write(buffer.getvalue())
    else:
        Path(output).write_bytes(buffer.getvalue())


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def load(store: Store, args: list[str]) -> None:
    """``docker load``: the images of a ``docker save`` tarball, with their tags."""
    parsed = parse(args, {"-i", "--input"}, {"-q", "--quiet"}, "docker load")
    source = parsed.one("-i", "--input")
    if source is None and sys.stdin.isatty():
        raise ShimError("requested load from stdin, but stdin is empty")
    data = Path(source).read_bytes() if source else sys.stdin.buffer.read()
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for entry in json.loads(_member(tar, "manifest.json")):
                config = _member(tar, entry["Config"])
                layer = _member(tar, entry["Layers"][0])
                store.add(config, layer, entry["RepoTags"])
                for tag in entry["RepoTags"]:
                    print(f"Loaded image: {tag}")
    except (tarfile.TarError, KeyError, ValueError) as exc:
        raise ShimError(f"Error response from daemon: not a docker save tarball ({exc})") from exc


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    handle = tar.extractfile(name)
    if handle is None:
        raise KeyError(name)
    return handle.read()


def push(state: Path, store: Store, reference: str) -> None:
    """``docker push`` to an ECR host: the manifest into moto, the blobs kept for the cluster."""
    from dev.dry_run.ecr import put_image, split_reference

    folder = store.find(reference)
    host, repository, tag = split_reference(normal(reference))
    config = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    if host not in read_json(config, {}).get("auths", {}):
        raise ShimError(f"no basic auth credentials (docker login {host} first)")
    digest = put_image(state, repository, tag, folder)
    size = (folder / "layer.tar").stat().st_size
    print(f"The push refers to repository [{host}/{repository}]")
    print(f"{tag}: digest: {digest} size: {size}")


def main(state: Path, job: Path, args: list[str]) -> int:
    """Run one docker command of a job's steps; its exit code."""
    record(state, ["docker", *args])
    store = Store(job / "docker")
    command, rest = (args[0], args[1:]) if args else ("", [])
    if command == "buildx" and rest[:1] == ["build"]:
        command, rest = "build", rest[1:]
    if command == "version":
        fmt = parse(rest, {"--format", "-f"}, set(), "docker version").one("--format", "-f")
        print('"27.5.1"' if fmt and "json" in fmt else "Server: dry-run stand-in 27.5.1")
    elif command == "build":
        print(build(store, rest), file=sys.stderr)
    elif command == "save":
        save(store, rest)
    elif command == "load":
        load(store, rest)
    elif command == "tag" and len(rest) == 2:
        folder = store.find(rest[0])
        store.tags[normal(rest[1])] = folder.name
        write_json(store.folder / "tags.json", store.tags)
    elif command == "push" and len(rest) == 1:
        push(state, store, rest[0])
    elif command == "images":
        for tag, image in sorted(store.tags.items()):
            print(f"{tag}\t{image[:12]}")
    else:
        raise ShimError(
            f"docker {shlex.join(args)} is not simulated (dev/dry_run/docker_shim.py)", 2
        )
    return 0
