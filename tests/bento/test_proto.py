"""The committed gRPC stubs are what the proto and the locked grpcio-tools generate."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from approval.v1 import approval_pb2 as pb

from approvals.contract import FEATURE_COLUMNS
from dev.stack import BENTO_DIR


def _generator() -> object:
    spec = importlib.util.spec_from_file_location("generate", BENTO_DIR / "proto" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regenerating_the_stubs_gives_identical_files(tmp_path: Path) -> None:
    # when the stubs are generated afresh into an empty directory
    written = _generator().generate(tmp_path)  # type: ignore[attr-defined]
    # then each is byte-identical to the committed one
    assert [p.name for p in written] == [
        "approval_pb2.py",
        "approval_pb2.pyi",
        "approval_pb2_grpc.py",
    ]
    for path in written:
        committed = BENTO_DIR / "approval" / "v1" / path.name
        assert path.read_bytes() == committed.read_bytes(), f"{path.name} drifted: run make proto"


def test_proto_attempt_has_exactly_the_contract_fields() -> None:
    # the gRPC Attempt is the data contract without labels, field for field
    names = [f.name for f in pb.Attempt.DESCRIPTOR.fields]
    assert names == list(FEATURE_COLUMNS)
