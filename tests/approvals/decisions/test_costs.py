"""Tests for approvals.decisions.costs: config loading, expected value, threshold choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from approvals.decisions import costs as c
from approvals.errors import ConfigError


@pytest.fixture
def cfg() -> c.CostConfig:
    return c.CostConfig(
        currency_note="EUR",
        merchant_margin=0.1,
        attempt_fee=c.AttemptFees(default=0.05, by_route={"cheap": 0.01}),
        retry_penalty=0.02,
        scheme_reattempt_fee=0.15,
    )


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "costs.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_embedded_defaults_load() -> None:
    cfg = c.load_costs()
    assert 0 < cfg.merchant_margin <= 1, "packaged margin is a share"
    assert cfg.attempt_fee.default > 0, "packaged default attempt fee is set"
    assert cfg.currency_note, "packaged file says which currency"


def test_user_file_round_trips(tmp_path: Path) -> None:
    data = c.load_costs().model_dump()
    data["attempt_fee"]["by_route"] = {"r1": 0.2}
    cfg = c.load_costs(_write(tmp_path, data))
    assert cfg.fee("r1") == 0.2 and cfg.fee("other") == data["attempt_fee"]["default"], "fees"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"merchant_margin": -0.1}, "merchant_margin"),
        ({"retry_penalty": "lots"}, "retry_penalty"),
        ({"surprise": 1}, "surprise"),
        ({"attempt_fee": {"default": 0.1, "by_route": {"r": -1}}}, "attempt_fee.by_route.r"),
    ],
)
def test_bad_file_names_the_key(tmp_path: Path, change: dict[str, object], key: str) -> None:
    data = c.load_costs().model_dump() | change
    with pytest.raises(ConfigError, match=f"key '{key}'"):
        c.load_costs(_write(tmp_path, data))


def test_missing_key_is_named(tmp_path: Path) -> None:
    data = c.load_costs().model_dump()
    del data["scheme_reattempt_fee"]
    with pytest.raises(ConfigError, match="scheme_reattempt_fee"):
        c.load_costs(_write(tmp_path, data))


def test_missing_and_malformed_files_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        c.load_costs(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        c.load_costs(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        c.load_costs(bad)


def test_config_is_frozen(cfg: c.CostConfig) -> None:
    with pytest.raises(ValueError, match="frozen"):
        cfg.merchant_margin = 0.5  # type: ignore[misc]


def test_expected_value_scalar_hand_computed(cfg: c.CostConfig) -> None:
    value = c.expected_value(0.8, 100.0, "x", cfg, retry=True)
    assert isinstance(value, float), "scalars in, float out"
    assert value == pytest.approx(0.8 * 0.1 * 100 - 0.05 - 0.02), "p*margin*amount-fee-penalty"
    first = c.expected_value(0.8, 100.0, "cheap", cfg, retry=False, breaks_rules=True)
    assert first == pytest.approx(8 - 0.01 - 0.15), "route fee and scheme fee, no penalty"


def test_expected_value_vectorised(cfg: c.CostConfig) -> None:
    value = c.expected_value(
        np.array([0.5, 0.5]), np.array([10.0, 10.0]), ["cheap", "other"], cfg, retry=False
    )
    assert value.shape == (2,), "arrays in, array out"
    assert value[0] - value[1] == pytest.approx(0.04), "per-route fees apply row by row"


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1e6, allow_nan=False), st.booleans())
def test_expected_value_monotone_in_p(p1: float, p2: float, amount: float, retry: bool) -> None:
    cfg = c.load_costs()
    lo, hi = sorted((p1, p2))
    low = c.expected_value(lo, amount, "r", cfg, retry=retry)
    high = c.expected_value(hi, amount, "r", cfg, retry=retry)
    assert high >= low, "a higher approval probability never lowers expected value"


def test_choose_threshold_hand_computed(cfg: c.CostConfig) -> None:
    # given amounts of 10 -> an approval is worth 1.0; fee 0.05 + penalty 0.02 = 0.07
    y = [1, 1, 0, 0, 0]
    p = [0.9, 0.8, 0.7, 0.2, 0.1]
    choice = c.choose_threshold(y, p, [10.0] * 5, ["r"] * 5, cfg)
    assert choice.threshold == 0.8, "acting on the two approvals maximises value"
    assert choice.value_total == pytest.approx(2 * 0.93), "two approvals net of costs"
    assert choice.value_all_total == pytest.approx(2 - 5 * 0.07), "acting on everything"
    assert choice.precision == 1.0 and choice.recall == 1.0, "perfect split"
    assert choice.share_acted == pytest.approx(0.4), "two of five acted on"


def test_choose_threshold_respects_ties(cfg: c.CostConfig) -> None:
    # a tie at 0.5 must be acted on as a block: cutting inside it is not a real threshold
    choice = c.choose_threshold([1, 0, 0], [0.5, 0.5, 0.5], [10.0] * 3, ["r"] * 3, cfg)
    assert choice.share_acted in (0.0, 1.0), "tied probabilities are all in or all out"


def test_choose_threshold_acts_on_nothing_when_nothing_pays(cfg: c.CostConfig) -> None:
    choice = c.choose_threshold([0, 0, 1], [0.9, 0.6, 0.3], [0.01] * 3, ["r"] * 3, cfg)
    assert choice.threshold > 0.9, "threshold above every probability acts on nothing"
    assert choice.value_total == 0.0 and choice.share_acted == 0.0, "no action, no value"
    assert choice.precision is None, "precision undefined when nothing is acted on"


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.floats(0, 1), st.floats(0, 500, allow_nan=False)),
        min_size=1,
        max_size=40,
    )
)
def test_choose_threshold_beats_every_alternative(rows: list[tuple[bool, float, float]]) -> None:
    cfg = c.load_costs()
    y, p, amt = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    choice = c.choose_threshold(y, p, amt, ["r"] * len(rows), cfg)
    gain = y * cfg.merchant_margin * amt - cfg.fee("r") - cfg.retry_penalty
    for t in [*p, 2.0]:
        assert choice.value_total >= gain[p >= t].sum() - 1e-9, f"threshold {t} does better"
    realised = gain[p >= choice.threshold].sum()
    assert realised == pytest.approx(choice.value_total, abs=1e-9), "reported value is real"


def test_choose_threshold_rejects_bad_input(cfg: c.CostConfig) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        c.choose_threshold([1], [0.5, 0.5], [1.0], ["r"], cfg)
    with pytest.raises(ValueError, match="amounts"):
        c.choose_threshold([1], [0.5], [-1.0], ["r"], cfg)
    with pytest.raises(ValueError, match="no rows"):
        c.choose_threshold([], [], [], [], cfg)
