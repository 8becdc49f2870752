"""Images in moto's ECR: pushed by the docker stand-in, pulled by the cluster stand-in.

ECR (moto) keeps the manifests, tags and digests; the blobs stay in the dry run's state
folder (``blobs/sha256-<hex>``), as a registry's storage would.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from dev.dry_run.shim_args import ShimError, read_json, sha256

ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com$")
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def split_reference(reference: str) -> tuple[str, str, str]:
    """``HOST/REPOSITORY:TAG`` -> (host, repository, tag).

    Raises:
        ShimError: not an ECR reference (the dry run has no other registry).
    """
    host, _, rest = reference.partition("/")
    repository, _, tag = rest.rpartition(":")
    if not ECR_HOST.fullmatch(host) or not repository or not tag:
        raise ShimError(f"the dry run pushes to ECR only, not {reference!r}")
    return host, repository, tag


def _client(state: Path) -> Any:
    from dev.dry_run.sandbox import aws_client

    sandbox = read_json(state / "sandbox.json", {})
    return aws_client("ecr", sandbox["endpoint"], sandbox["region"])


def _blob(state: Path, digest: str) -> Path:
    return state / "blobs" / digest.replace(":", "-")


def put_image(state: Path, repository: str, tag: str, image: Path) -> str:
    """Push the image in folder ``image`` (``config.json``, ``layer.tar``); its ECR digest.

    Raises:
        ShimError: the repository is missing, or the tag exists with another image (ECR tags
            are immutable).
    """
    from botocore.exceptions import ClientError

    layers = []
    for name, media in (
        ("config.json", "container.image.v1+json"),
        ("layer.tar", "image.rootfs.diff.tar"),
    ):
        data = (image / name).read_bytes()
        digest = f"sha256:{sha256(data)}"
        _blob(state, digest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image / name, _blob(state, digest))
        layers.append(
            {"mediaType": f"application/vnd.docker.{media}", "size": len(data), "digest": digest}
        )
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": layers[0],
        "layers": layers[1:],
    }
    ecr = _client(state)
    try:
        ecr.put_image(
            repositoryName=repository, imageManifest=json.dumps(manifest, sort_keys=True),
            imageTag=tag, imageManifestMediaType=MANIFEST_TYPE,
        )  # fmt: skip
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code == "ImageTagAlreadyExistsException":
            raise ShimError(
                f"tag invalid: the image tag {tag!r} already exists in the {repository!r} "
                "repository and cannot be overwritten because the repository is immutable"
            ) from exc
        if code != "ImageAlreadyExistsException":  # the same image again: nothing to do
            raise ShimError(f"push to {repository}: {exc}") from exc
    described = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    return str(described["imageDetails"][0]["imageDigest"])


def pull(state: Path, repository: str, tag: str) -> tuple[str, Path]:
    """The ECR digest of ``repository:tag`` and the file of its (single) layer.

    Raises:
        ShimError: no such image (what a pod's ImagePullBackOff would say).
    """
    from botocore.exceptions import ClientError

    try:
        found = _client(state).batch_get_image(
            repositoryName=repository, imageIds=[{"imageTag": tag}]
        )
    except ClientError as exc:
        raise ShimError(f"ImagePullBackOff: {repository}:{tag}: {exc}") from exc
    if not found.get("images"):
        raise ShimError(f"ImagePullBackOff: {repository}:{tag} is not in ECR")
    image = found["images"][0]
    manifest = json.loads(image["imageManifest"])
    return str(image["imageId"]["imageDigest"]), _blob(state, manifest["layers"][0]["digest"])
