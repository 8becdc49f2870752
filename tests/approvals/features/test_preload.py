"""The preloader as the deploy Job runs it: a subprocess without the training libraries,
against a real redis-server, from a packed online state (and BentoML's model store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest
import redis

from approvals.contract import validate_frame
from approvals.features import packed
from approvals.features.materialize import materialize, pack_state
from approvals.features.online import OnlineFeatureStore
from approvals.features.redis_settings import RedisSettings
from approvals.features.state import FeatureState, build_state
from approvals.model.package import ModelPackage
from dev.processes import free_port
from dev.redis_server import RedisServer
from tests.approvals.factories import random_attempts
from tests.approvals.features.test_online import records

pytestmark = pytest.mark.servers

# Training and CLI libraries the serving image lacks; the preloader must run without them.
BLOCKED = ("pandas", "pyarrow", "duckdb", "typer", "rich", "boto3")
# BentoML's model store needs rich (a dependency of bentoml, pinned in the bento's
# requirements.txt): a preloader given a model tag may load it through bentoml, never itself.
BLOCKED_WITH_BENTOML = tuple(name for name in BLOCKED if name != "rich")


def blocker(blocked: tuple[str, ...] = BLOCKED) -> str:
    """Python that puts a finder first on the meta path: importing any of ``blocked`` fails
    as if it were not installed (code that tries one and copes without it goes on)."""
    return f"""
import runpy, sys
BLOCKED = {blocked!r}
assert not set(BLOCKED) & {{m.split(".")[0] for m in sys.modules}}, "loaded before the test"
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{{name}} is not in the serving image", name=name)
        return None
sys.meta_path.insert(0, Refuse())
"""


def run_preload(
    *args: str, blocked: tuple[str, ...] = BLOCKED, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m approvals.features.preload ARGS`` without the ``blocked`` libraries, with
    ``env`` on top of this process's environment (no APPROVALS_REDIS_* of its own)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("APPROVALS_REDIS_")}
    program = (
        blocker(blocked) + 'runpy.run_module("approvals.features.preload", run_name="__main__")'
    )
    return subprocess.run(
        [sys.executable, "-c", program, *args], env={**base, **env},
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip


def pack_model(state: FeatureState, directory: Path) -> Path:
    """A model directory holding the packed online state of ``state`` (as bundle.py packs)."""
    packed.save(pack_state(state), directory / packed.ONLINE_DIR)
    return directory


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    """Two packed models, the second's state ending later, and attempts after both."""
    data = validate_frame(random_attempts(2400, seed=21, days=15), labels=True)
    first, second = data["event_time"].iloc[1600], data["event_time"].iloc[2000]
    root = tmp_path_factory.mktemp("packed")
    older = pack_model(build_state(data.loc[data["event_time"] < first]), root / "older")
    newer = pack_model(build_state(data.loc[data["event_time"] < second]), root / "newer")
    return older, newer, data.loc[data["event_time"] >= second].head(30)


def env_for(url: str, prefix: str | None = None, **extra: str) -> dict[str, str]:
    return {"APPROVALS_REDIS_URL": url, "APPROVALS_REDIS_PREFIX": prefix or fresh(), **extra}


def fresh() -> str:
    return f"p{uuid.uuid4().hex[:8]}"


def live(url: str, prefix: str) -> str | None:
    value = redis.Redis.from_url(url, decode_responses=True).get(f"{prefix}:current")
    return str(value) if value is not None else None


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"one line expected, got {lines}"
    return lines[0]


def test_the_blocker_refuses_the_training_libraries() -> None:
    for name in BLOCKED:
        done = subprocess.run(
            [sys.executable, "-c", blocker() + f"import {name}"],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        assert done.returncode != 0 and "not in the serving image" in done.stderr, name


def test_the_preloader_runs_without_training_libraries_and_writes_the_features(
    redis_url: str, models: tuple[Path, Path, pd.DataFrame]
) -> None:
    # given a packed model and an empty prefix
    _, newer, later = models
    prefix = fresh()
    # when the preloader runs without pandas, pyarrow, duckdb, typer, rich and boto3
    done = run_preload("--model", str(newer), "--ttl-days", "2", **env_for(redis_url, prefix))
    # then it succeeds with one progress line per family and switches readers to the new version
    assert done.returncode == 0, done.stderr
    families = [ln for ln in done.stdout.splitlines() if ln.startswith("family ")]
    written = json.loads((newer / packed.ONLINE_DIR / packed.META).read_text())["families"]
    assert len(families) == len(written) > 0, done.stdout
    version = live(redis_url, prefix)
    assert version is not None and version in done.stdout, "the new version is named"
    ttl = redis.Redis.from_url(redis_url).ttl(f"{prefix}:current")
    assert 86400 < ttl <= 2 * 86400, f"--ttl-days 2 gives the pointer TTL {ttl}"
    answer = OnlineFeatureStore(RedisSettings(url=redis_url, prefix=prefix)).counts(records(later))
    assert not answer.degraded and answer.version == version, "the service reads them"


def test_the_same_values_whichever_path_wrote_them(
    redis_url: str, package: ModelPackage, tmp_path: Path
) -> None:
    # given the package's state materialized under one prefix
    state = package.state()
    settings = RedisSettings(url=redis_url, prefix=fresh())
    by_materialize = snapshot(redis_url, settings.prefix, materialize(state, settings).version)
    # when the same state, packed, is preloaded under another
    prefix = fresh()
    done = run_preload("--model", str(pack_model(state, tmp_path)), **env_for(redis_url, prefix))
    assert done.returncode == 0, done.stderr
    by_preload = snapshot(redis_url, prefix, str(live(redis_url, prefix)))
    # then every key holds the same bytes, and the meta the same fields but for `created`
    (values, meta), (preloaded, preloaded_meta) = by_materialize, by_preload
    assert values.keys() == preloaded.keys() and len(values) > 1000, "not the same keys"
    unequal = [k for k in values if values[k] != preloaded[k]]
    assert unequal == [], f"{len(unequal)} values differ, e.g. {unequal[:3]}"
    assert meta.pop(b"created") and preloaded_meta.pop(b"created"), "meta without `created`"
    assert list(meta.items()) == list(preloaded_meta.items()), "the meta differs"


def snapshot(url: str, prefix: str, version: str) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    """Every value of a version by its version-relative key, and its meta."""
    client = redis.Redis.from_url(url)
    head = f"{prefix}:{version}:".encode()
    names = [k for k in client.scan_iter(match=head + b"*", count=5000) if k != head + b"meta"]
    values = client.mget(names)
    relative = {k.removeprefix(head): v for k, v in zip(names, values, strict=True)}
    return relative, client.hgetall(head + b"meta")


def test_a_rerun_and_a_rollback_keep_the_newer_live_version(
    redis_url: str, models: tuple[Path, Path, pd.DataFrame]
) -> None:
    older, newer, _ = models
    env = env_for(redis_url)
    prefix = env["APPROVALS_REDIS_PREFIX"]
    assert run_preload("--model", str(newer), **env).returncode == 0
    written = live(redis_url, prefix)
    # when it runs again, and for the model before (a rollback)
    for model in (newer, older):
        again = run_preload("--model", str(model), **env)
        # then it does nothing, says so, and the newer features stay live
        assert again.returncode == 0, again.stderr
        assert "nothing to do" in again.stdout and "family " not in again.stdout, again.stdout
        assert live(redis_url, prefix) == written, f"{model.name} replaced the live version"


@pytest.mark.parametrize(("field", "value"), [(None, None), ("defs", "0123"), ("layout", "1")])
def test_older_or_incompatible_live_features_are_replaced(
    redis_url: str, models: tuple[Path, Path, pd.DataFrame], field: str | None, value: str | None
) -> None:
    # given a live version that is older than the model, or of other definitions or layout
    older, newer, _ = models
    env = env_for(redis_url)
    prefix = env["APPROVALS_REDIS_PREFIX"]
    assert run_preload("--model", str(older if field is None else newer), **env).returncode == 0
    before = live(redis_url, prefix)
    if field is not None:
        redis.Redis.from_url(redis_url).hset(f"{prefix}:{before}:meta", field, str(value))
    # when the preloader runs for the newer model
    done = run_preload("--model", str(newer), **env)
    # then it writes a new version and switches to it
    assert done.returncode == 0, done.stderr
    assert live(redis_url, prefix) not in (None, before), done.stdout
    assert "writing a new version" in done.stdout, done.stdout


@pytest.mark.parametrize("layout", ["bentoml_home", "bento_image"])
def test_model_tag_resolves_through_the_bentoml_model_store(
    redis_url: str, models: tuple[Path, Path, pd.DataFrame], tmp_path: Path, layout: str
) -> None:
    # given a model registered with its packed state in a BentoML model store: BentoML's own
    # (BENTOML_HOME), or a bento's as its image holds it (BENTO_PATH/models; BENTOML_HOME then
    # points where nothing can be written, as on the image's read-only root file system)
    _, newer, _ = models
    store = tmp_path / "store"
    register = (
        "import shutil, sys, bentoml\n"
        "with bentoml.models.create('approvals:v1') as model:\n"
        "    shutil.copytree(sys.argv[1], model.path + '/online')\n"
    )
    subprocess.run(
        [sys.executable, "-c", register, str(newer / packed.ONLINE_DIR)],
        env={**os.environ, "BENTOML_HOME": str(store), "BENTOML_DO_NOT_TRACK": "true"},
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    where = {"BENTOML_HOME": str(store)}
    if layout == "bento_image":
        where = {"BENTO_PATH": str(store), "BENTOML_HOME": "/proc/no-bentoml-home"}
    env = env_for(redis_url, BENTOML_DO_NOT_TRACK="true", **where)
    # when the preloader is given its tag, and a tag the store does not hold
    done = run_preload("--model-tag", "approvals:v1", blocked=BLOCKED_WITH_BENTOML, **env)
    unknown = run_preload("--model-tag", "approvals:v2", blocked=BLOCKED_WITH_BENTOML, **env)
    # then the first is loaded, the second refused in one line naming it
    assert done.returncode == 0, done.stderr
    assert live(redis_url, env["APPROVALS_REDIS_PREFIX"]) is not None
    assert unknown.returncode == 2, unknown.stderr
    assert "approvals:v2" in one_line(unknown.stderr)


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--model", "{empty}"], {}, "no packed online state"),
        (["--model", "{missing}"], {}, "no such directory"),
        (["--model-tag", "approvals:no such tag"], {}, "approvals:no such tag"),
        (["--model", "{newer}"], {"APPROVALS_REDIS_URL": "http://127.0.0.1:1"}, "REDIS_URL"),
        (["--model", "{newer}"], {"APPROVALS_REDIS_TIMEOUT_MS": "-1"}, "TIMEOUT_MS"),
        ([], {}, "--model"),
        (["--model", "{newer}", "--model-tag", "approvals:v1"], {}, "--model"),
        (["--model", "{newer}", "--ttl-days", "0"], {}, "--ttl-days"),
    ],
)
def test_user_errors_exit_2_with_one_line_naming_the_problem(
    redis_url: str,
    models: tuple[Path, Path, pd.DataFrame],
    tmp_path: Path,
    args: list[str],
    env: dict[str, str],
    named: str,
) -> None:
    (tmp_path / "empty").mkdir()
    where = {"empty": tmp_path / "empty", "missing": tmp_path / "missing", "newer": models[1]}
    home = {"BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    done = run_preload(
        *[a.format(**where) for a in args], blocked=BLOCKED_WITH_BENTOML,
        **env_for(redis_url, **home, **env),
    )  # fmt: skip
    assert done.returncode == 2, f"exit {done.returncode}: {done.stderr}"
    assert named in one_line(done.stderr), done.stderr


def test_unreachable_redis_exits_1_in_one_line(models: tuple[Path, Path, pd.DataFrame]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    done = run_preload("--model", str(models[1]), **env_for(url))
    assert done.returncode == 1, done.stderr
    assert "ConnectionError" in one_line(done.stderr) and url in done.stderr


def test_a_failed_write_exits_1_and_keeps_the_previous_version(
    own_redis: RedisServer, models: tuple[Path, Path, pd.DataFrame]
) -> None:
    # given a live version, and a Redis with room for a part of the next one only
    older, newer, later = models
    env = env_for(own_redis.url)
    prefix = env["APPROVALS_REDIS_PREFIX"]
    assert run_preload("--model", str(older), **env).returncode == 0
    before = live(own_redis.url, prefix)
    client = redis.Redis.from_url(own_redis.url)
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) + 100_000)
    # when the newer model is preloaded
    done = run_preload("--model", str(newer), **env)
    # then it fails with exit 1, and readers still get the previous version
    assert done.returncode == 1, done.stderr
    assert "maxmemory" in one_line(done.stderr)
    client.config_set("maxmemory", 0)
    assert live(own_redis.url, prefix) == before, "the pointer moved after a failed write"
    answer = OnlineFeatureStore(RedisSettings(url=own_redis.url, prefix=prefix)).counts(
        records(later)
    )
    assert answer.version == before and not answer.degraded, "the previous version was lost"
    # and once Redis has room, the newer model is loaded
    assert run_preload("--model", str(newer), **env).returncode == 0
    assert live(own_redis.url, prefix) != before


def test_redis_stopped_exits_1(
    own_redis: RedisServer, models: tuple[Path, Path, pd.DataFrame]
) -> None:
    env = env_for(own_redis.url)
    own_redis.stop()
    done = run_preload("--model", str(models[1]), **env)
    assert done.returncode == 1, done.stderr
    assert own_redis.url in one_line(done.stderr)


def test_the_auth_token_is_used_and_never_shown(
    own_redis: RedisServer, models: tuple[Path, Path, pd.DataFrame]
) -> None:
    token = "preload-t0ken-" + uuid.uuid4().hex
    redis.Redis.from_url(own_redis.url).config_set("requirepass", token)
    env = env_for(own_redis.url)
    done = run_preload("--model", str(models[1]), **env, APPROVALS_REDIS_PASSWORD=token)
    wrong = run_preload("--model", str(models[1]), **env, APPROVALS_REDIS_PASSWORD=token[::-1])
    assert done.returncode == 0, done.stderr
    assert wrong.returncode == 2 and "AUTH" in one_line(wrong.stderr), wrong.stderr
    for shown in (done.stdout, done.stderr, wrong.stdout, wrong.stderr):
        assert token not in shown and token[::-1] not in shown, "the token was printed"


def test_damaged_packed_files_exit_1_and_write_nothing(
    redis_url: str, models: tuple[Path, Path, pd.DataFrame], tmp_path: Path
) -> None:
    # given a copy of a packed model with one byte of its values changed
    online = tmp_path / packed.ONLINE_DIR
    online.mkdir()
    for path in (models[1] / packed.ONLINE_DIR).iterdir():
        (online / path.name).write_bytes(path.read_bytes())
    values = bytearray((online / packed.VALUES).read_bytes())
    values[len(values) // 2] ^= 0xFF
    (online / packed.VALUES).write_bytes(bytes(values))
    env = env_for(redis_url)
    # when it is preloaded, then it is refused as damaged and nothing is written
    done = run_preload("--model", str(tmp_path), **env)
    assert done.returncode == 1, done.stderr
    assert "checksum" in one_line(done.stderr)
    assert live(redis_url, env["APPROVALS_REDIS_PREFIX"]) is None
