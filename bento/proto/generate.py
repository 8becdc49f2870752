"""Generate the Python gRPC stubs of ``approval/v1/approval.proto`` reproducibly.

The stubs are committed (the serving image needs no protoc). They are produced by the
``grpcio-tools`` pinned in ``uv.lock``, so the same lock gives byte-identical files, and
``tests/bento/test_proto.py`` fails when the committed stubs drift from the proto.

Usage: ``uv run --frozen --all-extras python bento/proto/generate.py [OUT_DIR]``
(default ``OUT_DIR``: ``bento/``, giving the importable package ``approval.v1``).
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
PROTO = "approval/v1/approval.proto"
DEFAULT_OUT = PROTO_ROOT.parent


def generate(out: Path = DEFAULT_OUT) -> list[Path]:
    """Run protoc (from grpcio-tools) on the proto; return the files written.

    Raises:
        RuntimeError: protoc failed.
    """
    from grpc_tools import protoc

    include = resources.files("grpc_tools") / "_proto"
    package = out / "approval" / "v1"
    package.mkdir(parents=True, exist_ok=True)
    for directory in (out / "approval", package):
        (directory / "__init__.py").touch()
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        PROTO,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTO}")
    return sorted(package.glob("approval_pb2*"))


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    for path in generate(target):
        print(path)
