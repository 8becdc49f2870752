"""The C-API tree scorer gives ``Booster.predict``'s raw scores, bit for bit."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from approvals.model.trees import CompiledTrees, RawTrees, compile_trees, probe_rows


@pytest.fixture(scope="module")
def booster() -> lgb.Booster:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4000, 6))
    x[:, 5] = rng.integers(0, 12, size=4000)  # a native categorical
    x[rng.random(x.shape) < 0.05] = np.nan
    y = (np.nan_to_num(x[:, 0]) + np.where(x[:, 5] % 3 == 0, 1.0, -0.5) > 0).astype(int)
    train = lgb.Dataset(x, y, categorical_feature=[5])
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "seed": 1}
    booster = lgb.train(params, train, 60)
    booster.best_iteration = 40  # as early stopping leaves it: predict uses the first 40 trees
    return booster


def rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    x[:, 5] = rng.integers(-1, 15, size=n)  # unseen and negative categories too
    x[rng.random(x.shape) < 0.1] = np.nan
    return x


@pytest.mark.parametrize("n", [1, 2, 500])
def test_scores_equal_booster_predict_bit_for_bit(booster: lgb.Booster, n: int) -> None:
    assert 0 < booster.best_iteration < booster.current_iteration()
    scorer = RawTrees(booster)
    x = rows(n, seed=n)
    expected = booster.predict(x, raw_score=True, num_threads=1)
    assert np.array_equal(scorer(x), expected)
    for i in range(min(n, 50)):  # the single-row path, row by row
        assert scorer(x[i : i + 1])[0] == expected[i]


def test_a_loaded_booster_scores_the_same(booster: lgb.Booster) -> None:
    loaded = lgb.Booster(model_str=booster.model_to_string())
    x = rows(100, seed=9)
    assert np.array_equal(RawTrees(loaded)(x), booster.predict(x, raw_score=True))
    assert np.array_equal(RawTrees(loaded)(x[:1]), booster.predict(x[:1], raw_score=True))


def test_non_contiguous_and_integer_input_is_accepted(booster: lgb.Booster) -> None:
    x = rows(40, seed=4)
    fortran = np.asfortranarray(x)
    assert np.array_equal(RawTrees(booster)(fortran), booster.predict(x, raw_score=True))
    ints = np.zeros((3, 6), dtype=np.int64)
    assert np.array_equal(RawTrees(booster)(ints), booster.predict(ints, raw_score=True))


def test_empty_input_gives_no_scores_and_a_wrong_width_is_refused(booster: lgb.Booster) -> None:
    scorer = RawTrees(booster)
    assert scorer(np.zeros((0, 6))).shape == (0,)
    with pytest.raises(ValueError, match="6 features"):
        scorer(np.zeros((2, 5)))


@pytest.fixture(scope="module")
def compiled_dir(booster: lgb.Booster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tmp_path_factory.mktemp("compiled-model")
    booster.save_model(str(model / "booster.txt"))
    compile_trees(model)
    return model


def test_compiled_trees_match_the_booster(booster: lgb.Booster, compiled_dir: Path) -> None:
    loaded = lgb.Booster(model_file=str(compiled_dir / "booster.txt"))
    compiled = CompiledTrees.load(compiled_dir, loaded)
    assert compiled is not None
    assert compiled.meta["target_cpu"] == "x86-64" and compiled.meta["max_abs_diff"] <= 1e-9
    for x in (rows(500, seed=11), probe_rows(loaded, 3000, seed=12), rows(1, seed=13)):
        assert np.allclose(compiled(x), RawTrees(loaded)(x), rtol=0, atol=1e-9)
    assert compiled(np.zeros((0, 6))).shape == (0,)
    with pytest.raises(ValueError, match="6 features"):
        compiled(np.zeros((2, 5)))


def test_compiled_trees_of_another_booster_are_not_used(
    booster: lgb.Booster, compiled_dir: Path, tmp_path: Path
) -> None:
    import shutil

    other = tmp_path / "model"
    shutil.copytree(compiled_dir, other)
    retrained = lgb.train(
        {"objective": "binary", "num_leaves": 7, "verbose": -1, "seed": 2},
        lgb.Dataset(rows(2000, seed=2), (np.arange(2000) % 3 == 0).astype(int)),
        10,
    )
    retrained.save_model(str(other / "booster.txt"))  # the object is now stale
    assert CompiledTrees.load(other, retrained) is None
    assert CompiledTrees.load(tmp_path / "absent", booster) is None
