"""``bentoml build`` of the real service with a small trained model package."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from approvals.model.package import FILES, ModelPackage
from approvals.model.train import TrainResult
from approvals.model.trees import CompiledTrees
from dev.stack import BENTO_DIR

pytestmark = pytest.mark.slow
TRAINING_ONLY = ("pulumi", "duckdb", "scikit-learn", "matplotlib", "pytest", "pandas", "moto")


def _bundle() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bundle", BENTO_DIR / "bundle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(
    serving_model: tuple[TrainResult, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The bento built into a throwaway BentoML store; returns its directory."""
    home = tmp_path_factory.mktemp("bentoml-home")
    before = os.environ.get("BENTOML_HOME")
    os.environ["BENTOML_HOME"] = str(home)  # read by the `bentoml build` subprocess
    try:
        tag = _bundle().build(serving_model[1])
    finally:
        if before is None:
            del os.environ["BENTOML_HOME"]
        else:
            os.environ["BENTOML_HOME"] = before
    name, version = tag.split(":")
    return home / "bentos" / name / version


def test_the_bento_holds_the_service_and_the_model_package(built: Path) -> None:
    manifest = yaml.safe_load((built / "bento.yaml").read_text())
    assert manifest["service"] == "service:Approvals"
    sources = {p.name for p in (built / "src").iterdir()}
    assert {"service.py", "gateway.py", "grpc_server.py", "batching.py", "approval"} <= sources
    assert "bundle.py" not in sources, "the build script stays out of the image"
    model = built / "src" / "model"
    assert all((model / f).is_file() for f in FILES), "a loadable model package"
    assert not (model / "state").exists(), "no training-side feature state in the image"
    # the trees compiled for the baseline x86-64 CPU, and the service's loader accepts them
    assert (model / "compiled" / "trees.o").is_file()
    package = ModelPackage.load(model)
    assert isinstance(package.trees, CompiledTrees), "the bento's compiled trees are used"
    assert package.trees.meta["target_cpu"] == "x86-64"
    wheels = [p.name for p in (built / "env" / "python" / "wheels").iterdir()]
    assert any(re.fullmatch(r"approvals-.*\.whl", w) for w in wheels), wheels


def test_the_bento_requirements_are_serving_only(built: Path) -> None:
    lines = (built / "env" / "python" / "requirements.txt").read_text().splitlines()
    names = {re.split(r"[=<>\[ ;]", ln.strip(), maxsplit=1)[0].lower() for ln in lines if ln}
    names.discard("")
    names = {n for n in names if not n.startswith(("#", "-", "./"))}
    # then everything the service imports is pinned, and nothing of training, infra or tests
    assert {"bentoml", "lightgbm", "lleaves", "numpy", "redis", "grpcio", "pydantic"} <= names
    assert not [n for n in names if n.startswith(TRAINING_ONLY)], sorted(names)
    pinned = [ln for ln in lines if ln and not ln.startswith(("#", " ", "./", "-"))]
    assert all("==" in ln for ln in pinned), "every requirement pinned from uv.lock"
