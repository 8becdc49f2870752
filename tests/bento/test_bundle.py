"""``bento/bundle.py`` as ``make bento`` runs it: the champion and a challenger registered in
BentoML's model store, the real service built into a bento that declares both, and that bento
served."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from approvals.model.package import FILES, ModelPackage
from approvals.model.train import TrainResult
from approvals.model.trees import CompiledTrees
from dev.redis_server import RedisServer
from dev.requests import attempt_json
from dev.stack import LocalStack, build_bento
from tests.approvals.features.test_preload import BLOCKED_WITH_BENTOML, live, run_preload, snapshot

pytestmark = pytest.mark.slow
# training, infra, tests, and the default dependency groups (checkov) `uv export` must drop
TRAINING_ONLY = ("pulumi", "duckdb", "scikit-learn", "matplotlib", "pytest", "pandas", "moto")
TRAINING_ONLY += ("checkov", "typer")
# the decision sink runs from the image (python -m approvals.experiments.sink): Parquet to S3
SINK = {"pyarrow", "boto3"}


@dataclass(frozen=True)
class Built:
    """A bento built by ``bundle.py`` into a throwaway BentoML home."""

    home: Path
    tag: str

    @property
    def path(self) -> Path:
        name, version = self.tag.split(":")
        return self.home / "bentos" / name / version

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a process using this BentoML home (no model settings)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("APPROVALS_MODEL")}
        return {**env, "BENTOML_HOME": str(self.home), "BENTOML_DO_NOT_TRACK": "true", **extra}


@pytest.fixture(scope="module")
def built(
    serving_model: tuple[TrainResult, Path], challenger_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Built:  # fmt: skip
    """The bento of the serving model with a challenger, built as ``make bento`` builds it."""
    home = tmp_path_factory.mktemp("bento-build") / "bentoml"  # LocalStack serves from here
    return Built(home, build_bento(serving_model[1], home, challenger=challenger_dir))


@pytest.fixture(scope="module")
def challenger(challenger_dir: Path) -> str:
    """The challenger's tag."""
    return f"approvals:{ModelPackage.load(challenger_dir).model_version}"


def test_the_models_are_registered_in_the_store(
    built: Built, package: ModelPackage, challenger: str
) -> None:
    # then `bentoml models list` names the champion's and the challenger's versions
    listed = subprocess.run(
        [sys.executable, "-m", "bentoml", "models", "list", "-o", "json"],
        env=built.env(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    tags = sorted(m["tag"] for m in json.loads(listed.stdout))
    assert tags == sorted([f"approvals:{package.model_version}", challenger]), tags
    # and the stored model is the serving package: no training-side state, compiled trees
    model = built.home / "models" / "approvals" / package.model_version
    assert all((model / f).is_file() for f in FILES), "a loadable model package"
    assert not (model / "state").exists(), "no training-side feature state in the image"
    assert (model / "online" / "meta.json").is_file(), "the state's Redis values, packed"
    assert (model / "compiled" / "trees.o").is_file()
    stored = ModelPackage.load(model)
    assert isinstance(stored.trees, CompiledTrees), "the compiled trees are used"
    assert stored.trees.meta["target_cpu"] == "x86-64"


def test_the_bento_holds_the_service_and_declares_the_models(
    built: Built, package: ModelPackage, challenger: str
) -> None:
    manifest = yaml.safe_load((built.path / "bento.yaml").read_text())
    assert manifest["service"] == "service:Approvals"
    # then the service's entry of the manifest names the model versions it serves
    (service,) = manifest["services"]
    champion = f"approvals:{package.model_version}"
    assert sorted(m["tag"] for m in service["models"]) == sorted([champion, challenger])
    sources = {p.name for p in (built.path / "src").iterdir()}
    assert {"service.py", "gateway.py", "grpc_server.py", "batching.py", "approval"} <= sources
    assert "bundle.py" not in sources, "the build script stays out of the image"
    assert "model" not in sources, "the model comes from the store, not the sources"
    settings = (built.path / "src" / "serving.env").read_text()
    assert settings == f"APPROVALS_MODEL_TAG={champion}\nAPPROVALS_CHALLENGER_TAG={challenger}\n"
    wheels = [p.name for p in (built.path / "env" / "python" / "wheels").iterdir()]
    assert any(re.fullmatch(r"approvals-.*\.whl", w) for w in wheels), wheels


def test_the_bento_requirements_are_serving_only(built: Built) -> None:
    lines = (built.path / "env" / "python" / "requirements.txt").read_text().splitlines()
    names = {re.split(r"[=<>\[ ;]", ln.strip(), maxsplit=1)[0].lower() for ln in lines if ln}
    names.discard("")
    names = {n for n in names if not n.startswith(("#", "-", "./"))}
    # then everything the service imports is pinned, and nothing of training, infra or tests
    assert {"bentoml", "lightgbm", "lleaves", "numpy", "redis", "grpcio", "pydantic"} <= names
    assert "python-json-logger" in names, "the service's JSON logs"
    assert not [n for n in names if n.startswith(TRAINING_ONLY)], sorted(names)
    assert names >= SINK, "the sink extra: the image runs the decision sink"
    assert not names & {"pandas", "duckdb", "typer"}, "the sink needs no DataFrame, SQL or CLI"
    assert "pip" not in names, "pip is for the Pulumi engine (infra extra), not the image"
    pinned = [ln for ln in lines if ln and not ln.startswith(("#", " ", "./", "-"))]
    assert all("==" in ln for ln in pinned), "every requirement pinned from uv.lock"


@pytest.fixture
def served_bento(
    built: Built, features_redis: RedisServer, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    """``bentoml serve TAG`` of the built bento (no model directory), shadowed by its
    challenger; its URL and log."""
    log = tmp_path / "serve.log"
    stack = LocalStack(
        built.home.parent, bento=built.tag, redis_url=features_redis.url, log=log,
        ready_timeout=90, env={"APPROVALS_EXPERIMENT": "shadow"},
    )  # fmt: skip
    service = stack.start_service()
    try:
        yield service.http, log
    finally:
        stack.stop()


@pytest.mark.servers
def test_serving_the_bento_loads_the_declared_models(
    served_bento: tuple[str, Path], package: ModelPackage, challenger: str,
    test_rows: pd.DataFrame,
) -> None:  # fmt: skip
    url, log = served_bento
    # when the built bento is served and called
    answer = httpx.post(f"{url}/score", json={"attempt": attempt_json(test_rows.iloc[0])})
    # then the champion answers, and both declared models were loaded from the store with
    # their compiled trees
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == package.model_version
    assert answer.json()["variant"] == "champion"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    loaded = [e for e in entries if e["message"] == "model loaded"]
    assert sorted(e["source"] for e in loaded) == sorted(
        [f"approvals:{package.model_version}", challenger]
    ), loaded
    assert {e["trees"] for e in loaded} == {"compiled"}, loaded


@pytest.mark.servers
def test_the_preloader_loads_the_registered_model_by_tag_as_in_the_image(
    built: Built, features_redis: RedisServer, package: ModelPackage, tmp_path: Path
) -> None:
    # given the bento laid out as `bentoml containerize` lays out its image: the bento with its
    # models beside it (BENTO_PATH/models), and a BENTOML_HOME where nothing can be written
    bento = tmp_path / "bento"
    shutil.copytree(built.path, bento)
    shutil.copytree(built.home / "models", bento / "models")
    # and Redis holding the package's state as `approvals materialize` wrote it
    url = features_redis.url
    materialized = live(url, "approvals")
    assert materialized is not None
    # when the preloader loads the registered model by its tag
    prefix = f"bundle{uuid.uuid4().hex[:6]}"
    done = run_preload(
        "--model-tag", f"approvals:{package.model_version}", blocked=BLOCKED_WITH_BENTOML,
        APPROVALS_REDIS_URL=url, APPROVALS_REDIS_PREFIX=prefix, BENTO_PATH=str(bento),
        BENTOML_HOME="/proc/no-bentoml-home", BENTOML_DO_NOT_TRACK="true",
    )  # fmt: skip
    # then it writes the very same values as the materialization of the package's state
    assert done.returncode == 0, done.stderr
    values, meta = snapshot(url, "approvals", materialized)
    preloaded, preloaded_meta = snapshot(url, prefix, str(live(url, prefix)))
    assert values == preloaded, "the registered model's packed values differ from the state's"
    for field in (b"defs", b"layout", b"end_us", b"keys"):
        assert meta[field] == preloaded_meta[field], field
