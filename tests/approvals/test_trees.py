"""The C-API tree scorer gives ``Booster.predict``'s raw scores, bit for bit."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from approvals.trees import RawTrees


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
