"""The row path (``RowFeatures``) against the batch path (``derive.matrix``), bit for bit.

"Equal" here means the same float64 bits: a NaN must be the same NaN (the default NaN numpy
computes for 0/0 has the sign bit set on x86, ``np.nan`` does not), and a log off by one ulp
fails. Counters come from the offline SQL over simulated attempts, as in production.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from approvals import codes
from approvals.contract import validate_frame
from approvals.features import counts_for, frame_columns
from approvals.features.derive import FeatureSpec, feature_columns, matrix
from approvals.features.row import DAY_US, RowFeatures
from approvals.features.state import build_state
from approvals.features.tiles import default_counts
from approvals.model.train import build_spec
from approvals.simulate import simulate

Columns = dict[str, np.ndarray]
Row = tuple[dict[str, Any], dict[str, Any]]


@pytest.fixture(scope="module")
def simulated() -> tuple[pd.DataFrame, Columns, Columns, FeatureSpec]:
    """~3,700 simulated attempts with point-in-time counters; the spec fit on the first 60 %
    (so later attempts meet categories outside its vocabulary)."""
    data = validate_frame(simulate(3000, seed=7, days=14).attempts, labels=True)
    data = data.sort_values("event_time", kind="stable").reset_index(drop=True)
    counts, attempts = counts_for(data, data), frame_columns(data)
    train = np.arange(int(len(data) * 0.6))
    spec = build_spec(
        {k: v[train] for k, v in counts.items()},
        {k: v[train] for k, v in attempts.items()},
        data["approved"].to_numpy()[train].astype(float),
    )
    return data, counts, attempts, spec


def row_inputs(counts: Columns, attempts: Columns) -> list[Row]:
    """Each attempt's (counts, attempt) as the service hands them over: Python scalars."""
    count_cols = {k: v.tolist() for k, v in counts.items()}
    attempt_cols = {k: v.tolist() for k, v in attempts.items() if k != "event_time"}
    times = attempts["event_time"].astype("datetime64[us]").view(np.int64)
    attempt_cols["event_time_us"] = times.tolist()
    return [
        ({k: v[i] for k, v in count_cols.items()}, {k: v[i] for k, v in attempt_cols.items()})
        for i in range(len(times))
    ]


def batch_inputs(rows: Sequence[Row]) -> tuple[Columns, Columns]:
    """The batch path's columns of the same attempts (object arrays for text, like
    ``frame_columns``; ``merchant_advice_code`` only when some attempt has it)."""
    counts = {k: _column([c[k] for c, _ in rows]) for k in rows[0][0]}
    fields = {k for _, a in rows for k in a} - {"event_time_us"}
    attempts = {k: _column([a.get(k) for _, a in rows]) for k in fields}
    attempts["event_time"] = np.array([a["event_time_us"] for _, a in rows], "datetime64[us]")
    return counts, attempts


def _column(values: list[Any]) -> np.ndarray:
    kinds = {type(v) for v in values}
    if kinds <= {float, int} and float in kinds:
        return np.array(values, dtype=np.float64)
    if kinds in ({int}, {bool}):
        return np.array(values)
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def differing(left: np.ndarray, right: np.ndarray, names: Sequence[str]) -> list[str]:
    """Names of the features whose float64 bits differ (any row), or a shape/dtype mismatch."""
    if left.shape != right.shape or left.dtype != right.dtype or left.dtype != np.float64:
        return [f"shape/dtype {left.shape} {left.dtype} vs {right.shape} {right.dtype}"]
    bad = (left.view(np.int64) != right.view(np.int64)).any(axis=0)
    return [names[j] for j in np.flatnonzero(bad).tolist()]


def row_matrix(row: RowFeatures, rows: Sequence[Row]) -> np.ndarray:
    return np.concatenate([row(c, a) for c, a in rows])


def test_rows_equal_the_batch_matrix_on_thousands_of_simulated_attempts(
    simulated: tuple[pd.DataFrame, Columns, Columns, FeatureSpec],
) -> None:
    # Given simulated attempts with their counters, and the batch matrix of all of them
    data, counts, attempts, spec = simulated
    batch = matrix(counts, attempts, spec)
    # When each attempt's row is built on its own
    rows = row_matrix(RowFeatures(spec), row_inputs(counts, attempts))
    # Then every row is the batch matrix's row, bit for bit
    assert len(rows) > 3000, "thousands of attempts compared"
    assert differing(rows, batch, spec.names) == [], "row path differs from the batch path"
    # ... and the data exercised what matters: history, none, unknown categories, retries
    col = {name: batch[:, j] for j, name in enumerate(spec.names)}
    assert (col["card_life_logn"] > 0).mean() > 0.3, "many attempts have card history"
    assert np.isnan(col["card_minutes_since_last"]).any(), "some cards were never seen"
    assert np.isnan(col["amount_vs_card_nsf"]).mean() > 0.5, "0/0 NaNs (no NSF history)"
    assert np.isnan(col["mcc"]).any(), "some categories are outside the spec's vocabulary"
    assert (col["prev_hard"] + col["prev_outage"] > 0).any(), "retries after hard/outage"
    assert (data["attempt_number"] > 1).sum() > 100, "retries are present"


def test_rows_equal_a_matrix_of_one_attempt(
    simulated: tuple[pd.DataFrame, Columns, Columns, FeatureSpec],
) -> None:
    # Given a sample of attempts, each also featurized alone by the batch path
    _, counts, attempts, spec = simulated
    row = RowFeatures(spec)
    for i in np.random.default_rng(2).choice(len(attempts["amount"]), 150, replace=False):
        one_counts = {k: v[i : i + 1] for k, v in counts.items()}
        one_attempt = {k: v[i : i + 1] for k, v in attempts.items()}
        (c, a) = row_inputs(one_counts, one_attempt)[0]
        # When / Then the row path gives the batch path's one-row matrix exactly
        got, want = row(c, a), matrix(one_counts, one_attempt, spec)
        assert differing(got, want, spec.names) == [], f"attempt {i}"
        assert got.flags.c_contiguous and got.shape == (1, len(spec.names)), "row layout"


def test_rows_equal_the_batch_over_a_state_after_a_pause(
    simulated: tuple[pd.DataFrame, Columns, Columns, FeatureSpec],
) -> None:
    # Given a feature state of the first 70 % and later attempts, some of them days later
    data, _, _, spec = simulated
    cut = int(len(data) * 0.7)
    state = build_state(data.iloc[:cut])
    later = data.iloc[cut:].reset_index(drop=True)
    shifted = later.head(300).assign(event_time=later["event_time"].head(300) + pd.Timedelta("5D"))
    queries = pd.concat([later, shifted], ignore_index=True)
    counts, attempts = counts_for(queries, None, state), frame_columns(queries)
    # When / Then the rows over the state's counters equal the batch matrix
    rows = row_matrix(RowFeatures(spec), row_inputs(counts, attempts))
    assert differing(rows, matrix(counts, attempts, spec), spec.names) == []


def test_rows_follow_the_spec_order_and_subset(
    simulated: tuple[pd.DataFrame, Columns, Columns, FeatureSpec],
) -> None:
    # Given a spec asking for a shuffled subset of the features (one of them twice)
    _, counts, attempts, spec = simulated
    shuffled = np.random.default_rng(4).permutation(spec.names)[:30]
    names = [str(name) for name in shuffled] + [spec.names[0]]
    subset = FeatureSpec(spec.global_rate, spec.vocab, names)
    head = {k: v[:200] for k, v in counts.items()}, {k: v[:200] for k, v in attempts.items()}
    # When / Then the row path gives those columns in that order, and one feature alone too
    rows = row_matrix(RowFeatures(subset), row_inputs(*head))
    assert differing(rows, matrix(*head, subset), names) == [], "subset in spec order"
    single = FeatureSpec(spec.global_rate, spec.vocab, ["log_amount"])
    assert RowFeatures(single)(*row_inputs(*head)[0]).shape == (1, 1), "one feature, 2-D"


def test_a_name_derivation_does_not_produce_is_rejected(
    simulated: tuple[pd.DataFrame, Columns, Columns, FeatureSpec],
) -> None:
    spec = simulated[3]
    bad = FeatureSpec(spec.global_rate, spec.vocab, [*spec.names, "bin_1h_rate"])
    with pytest.raises(ValueError, match="bin_1h_rate"):
        RowFeatures(bad)


def test_the_bitwise_check_tells_nans_and_ulps_apart() -> None:
    # Given two NaNs that differ only in the sign bit, and two neighbouring floats
    nan, other_nan = np.array([[np.nan]]), np.array([[-np.nan]])
    one, next_one = np.array([[1.0]]), np.array([[np.nextafter(1.0, 2.0)]])
    # Then a NaN-tolerant comparison calls the NaNs equal, the bitwise check does not
    assert np.array_equal(nan, other_nan, equal_nan=True), "equal_nan ignores NaN bits"
    assert differing(nan, other_nan, ["x"]) == ["x"], "NaN bits compared"
    assert differing(one, next_one, ["x"]) == ["x"], "one ulp apart"
    assert differing(nan, nan.copy(), ["x"]) == [], "the same NaN"


# --- edge cases: a hand-made spec and generated attempts ---------------------------------

VOCAB = {
    "card_brand": ["visa", "mastercard", "ÿ"],
    "card_type": ["credit", "debit"],
    "channel": ["ecommerce", "recurring"],
    "three_ds": ["none", "challenge"],
    "route_id": ["r_us", "r_eu", "ルート"],
    "mcc": ["5411", "5999"],
    "issuer_country": ["US", "GB", "IN"],
    "merchant_country": ["US", "DE", "NZ"],
    "currency": ["USD", "€UR"],
    "prev_code": ["05", "51", "91"],
    "prev_class": ["none", "soft", "hard"],
    "card_last_code": ["00", "51"],
    "merchant_advice_code": ["02", "24"],
}


@pytest.fixture(scope="module")
def edge_spec() -> FeatureSpec:
    """A spec of every feature derivation produces, over a vocabulary with non-ASCII values."""
    spec = FeatureSpec(global_rate=0.83, vocab=VOCAB)
    counts, attempts = batch_inputs([(_zero_counts(), _attempt(0))])
    return FeatureSpec(0.83, VOCAB, sorted(feature_columns(counts, attempts, spec)))


def _zero_counts() -> dict[str, Any]:
    return {k: v.tolist()[0] for k, v in default_counts(1).items()}


def _attempt(t_us: int, **fields: Any) -> dict[str, Any]:
    attempt: dict[str, Any] = {
        "event_time_us": t_us,
        "amount": 25.0,
        "merchant_country": "US",
        "issuer_country": "GB",
        "attempt_number": 1,
        "network_token": False,
        "previous_response_code": None,
        "card_brand": "visa",
        "card_type": "credit",
        "channel": "ecommerce",
        "three_ds": "none",
        "route_id": "r_us",
        "mcc": "5411",
        "currency": "USD",
        "merchant_advice_code": None,
    }
    return {**attempt, **fields}


def assert_like_batch(spec: FeatureSpec, rows: Sequence[Row]) -> np.ndarray:
    """The row path's rows, after checking them against the batch matrix of all of them."""
    got = row_matrix(RowFeatures(spec), rows)
    want = matrix(*batch_inputs(rows), spec)
    assert differing(got, want, spec.names) == [], "row path differs from the batch path"
    return got


def feature(spec: FeatureSpec, rows: np.ndarray, name: str) -> np.ndarray:
    return rows[:, spec.names.index(name)]


def test_zero_counters_give_the_batch_paths_nans(edge_spec: FeatureSpec) -> None:
    # Given an attempt with no history at all (default counters: zeros, NaN last time)
    rows = assert_like_batch(edge_spec, [(_zero_counts(), _attempt(1_760_000_000_000_000))])
    # Then the card features are missing and rates are the priors
    for name in ("amount_vs_card", "amount_vs_card_approved", "card_minutes_since_last"):
        assert np.isnan(feature(edge_spec, rows, name)).all(), f"{name} is missing"
    assert feature(edge_spec, rows, "bin_life_rate")[0] == pytest.approx(0.83), "the prior"
    assert feature(edge_spec, rows, "card_life_declines")[0] == 0.0


@pytest.mark.parametrize(
    ("t_us", "hour", "weekday"),
    [
        (0, 0.0, 3.0),  # 1970-01-01, a Thursday
        (-1, 24 - 1 / 3.6e9, 2.0),  # one microsecond before: Wednesday, just before midnight
        (-DAY_US, 0.0, 2.0),
        (-DAY_US - 1, 24 - 1 / 3.6e9, 1.0),
        (DAY_US - 1, 24 - 1 / 3.6e9, 3.0),
        (-2_208_988_800_000_000, 0.0, 0.0),  # 1900-01-01, a Monday
        (4_102_444_800_000_000 - 1, 24 - 1 / 3.6e9, 3.0),  # 2099-12-31 23:59:59.999999
    ],
)
def test_times_around_midnight_and_before_1970(
    edge_spec: FeatureSpec, t_us: int, hour: float, weekday: float
) -> None:
    # Given attempts at day boundaries, before and after the epoch (merchant in New Zealand)
    attempt = _attempt(t_us, merchant_country="NZ", issuer_country="IN")
    rows = assert_like_batch(edge_spec, [(_zero_counts(), attempt)])
    # Then the UTC hour floors to the day like datetime64[D], and local hours wrap at 24
    assert feature(edge_spec, rows, "day_of_week")[0] == weekday, "day of week"
    assert feature(edge_spec, rows, "local_hour")[0] == pytest.approx((hour + 12) % 24)
    assert feature(edge_spec, rows, "issuer_local_hour")[0] == pytest.approx((hour + 5.5) % 24)


def test_codes_categories_and_amounts_at_the_edges(edge_spec: FeatureSpec) -> None:
    # Given hard, outage, unknown and empty previous codes, unknown and non-ASCII categories
    # and amounts from zero to huge, and one attempt without merchant_advice_code
    zero = _zero_counts()
    rows = [
        (zero, _attempt(5, previous_response_code="14", attempt_number=2, amount=0.0)),
        (zero, _attempt(6, previous_response_code="91", merchant_advice_code="24")),
        (zero, _attempt(7, previous_response_code="", card_brand="ÿ", route_id="ルート")),
        (zero, _attempt(8, previous_response_code="Zz", currency="€UR", amount=1e300)),
        (zero, _attempt(9, mcc="", channel="ünknown", amount=5e-324, network_token=True)),
        (
            {**zero, "card_last_code": "51"},
            {k: v for k, v in _attempt(10).items() if k != "merchant_advice_code"},
        ),
    ]
    got = assert_like_batch(edge_spec, rows)
    # Then the taxonomy and vocabulary decide, and unknowns are missing
    assert list(feature(edge_spec, got, "prev_hard")) == [1, 0, 0, 0, 0, 0], "14 is hard"
    assert list(feature(edge_spec, got, "prev_outage")) == [0, 1, 0, 0, 0, 0], "91 is outage"
    assert feature(edge_spec, got, "route_id")[2] == 2.0, "non-ASCII category known"
    assert np.isnan(feature(edge_spec, got, "prev_code")[3]), "unknown code is missing"
    assert feature(edge_spec, got, "card_last_code")[5] == 1.0, "last code from counters"
    assert np.isnan(feature(edge_spec, got, "merchant_advice_code")[5]), "absent advice"


COUNTER = st.one_of(
    st.just(0.0),
    st.integers(0, 5000).map(float),
    st.floats(0, 1e15, allow_nan=False),
)
# Infinite counters give inf and NaN rates. Not NaN counters: counters are sums of finite
# values, and when two NaNs meet in one operation which one comes out (its sign and payload)
# is left open by IEEE 754, so even numpy's own loops may differ from one build to the next.
BROKEN_COUNTER = st.one_of(COUNTER, st.just(math.inf))
TEXT = st.one_of(
    st.none(),
    st.text(max_size=3),
    st.sampled_from(sorted({v for values in VOCAB.values() for v in values})),
    st.sampled_from([5411, 5999, 7]),  # not text: keyed as str (mcc 5411 is category "5411")
)
CODE = st.one_of(
    st.none(),
    st.just(""),
    st.sampled_from(sorted({*codes.rules().category_of, *codes.rules().approved_codes})),
    st.text(max_size=2),
)
TIME_US = st.one_of(
    st.integers(-(2**60), 2**60),
    st.builds(lambda day, us: day * DAY_US + us, st.integers(-40_000, 40_000), st.integers(-2, 2)),
)


@st.composite
def rows_strategy(draw: st.DrawFn) -> Row:
    """One attempt with any counters (zeros, large, sometimes NaN or inf; NaN last time),
    any time (often a microsecond from midnight) and any texts."""
    counter = BROKEN_COUNTER if draw(st.booleans()) else COUNTER
    counts: dict[str, Any] = {
        k: draw(counter) for k in _zero_counts() if k not in ("card_last_us", "card_last_code")
    }
    counts["card_last_us"] = draw(
        st.one_of(st.just(math.nan), st.integers(-(2**52), 2**52).map(float))
    )
    counts["card_last_code"] = draw(CODE)
    fields = {name: draw(TEXT) for name in VOCAB if name in _attempt(0) and "code" not in name}
    attempt = _attempt(
        draw(TIME_US),
        amount=draw(st.one_of(st.floats(0, 1e308), st.integers(0, 10**6).map(float))),
        attempt_number=draw(st.integers(1, 20)),
        network_token=draw(st.booleans()),
        previous_response_code=draw(CODE),
        merchant_advice_code=draw(CODE),
        **fields,
    )
    if draw(st.booleans()):
        del attempt["merchant_advice_code"]
    return counts, attempt


# the batch path warns on tiny, NaN and infinite counters; the row path must match it silently
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rows_strategy(), min_size=1, max_size=5))
def test_generated_attempts_equal_the_batch_bit_for_bit(
    edge_spec: FeatureSpec, rows: list[Row]
) -> None:
    # Given / When / Then: any attempts, featurized one by one, equal the batch of all of them
    assert_like_batch(edge_spec, rows)
