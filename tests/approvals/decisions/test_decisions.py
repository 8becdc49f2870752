"""Tests for approvals.decisions: route ranking and retry advice under scheme rules."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from approvals import codes
from approvals.decisions import retries, routes
from approvals.decisions.costs import AttemptFees, CostConfig
from approvals.decisions.retries import DeclineContext, RetryOption

COSTS = CostConfig(
    currency_note="EUR",
    merchant_margin=0.1,
    attempt_fee=AttemptFees(default=0.05, by_route={"dear": 0.5}),
    retry_penalty=0.02,
    scheme_reattempt_fee=0.15,
)
RULES = codes.rules()
SOFT = "51"
FIXABLE = next(c for c, cat in RULES.category_of.items() if cat == 3)
OPTIONS = retries.default_retry_options(["a", "b"])
WAITING_MACS = sorted(c for c, a in RULES.advice.items() if a.min_delay_hours)


def decline(code: str = SOFT, **extra: object) -> DeclineContext:
    fields: dict[str, object] = {
        "response_code": code,
        "attempt_number": 1,
        "amount": 100.0,
        "card_brand": "mastercard",
    }
    return DeclineContext.model_validate(fields | extra)


def constant(p: float) -> Callable[[Sequence[RetryOption]], list[float]]:
    return lambda options: [p] * len(options)


def forbidden(options: Sequence[RetryOption]) -> list[float]:
    raise AssertionError("score must not be called when the rules forbid a retry")


def test_rank_routes_best_first_by_expected_value() -> None:
    ranked = routes.rank_routes(100.0, {"a": 0.80, "dear": 0.82, "b": 0.80}, COSTS)
    assert [r.route_id for r in ranked] == ["a", "b", "dear"], "EV, then p, then route id"
    assert ranked[0].expected_value == pytest.approx(0.8 * 10 - 0.05), "EV of the best route"


def test_rank_routes_rejects_bad_probability() -> None:
    with pytest.raises(ValueError, match="route x"):
        routes.rank_routes(10.0, {"x": 1.5}, COSTS)
    with pytest.raises(ValueError, match="amount"):
        routes.rank_routes(float("nan"), {"x": 0.5}, COSTS)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.text(min_size=1, max_size=5), st.floats(0, 1), max_size=8),
    st.floats(0, 1e5),
)
def test_rank_routes_is_sorted(probabilities: dict[str, float], amount: float) -> None:
    ranked = routes.rank_routes(amount, probabilities, COSTS)
    keys = [(-r.expected_value, -r.p_approve, r.route_id) for r in ranked]
    assert keys == sorted(keys), "routes come best first"
    assert {r.route_id for r in ranked} == set(probabilities), "every route is ranked once"


def test_soft_decline_retries_on_best_option() -> None:
    def score(options: Sequence[RetryOption]) -> list[float]:
        return [0.6 if o.route_id == "b" and o.delay_hours == 24 else 0.3 for o in options]

    advice = retries.advise_retry(decline(), OPTIONS, score, COSTS)
    assert advice.action == "retry" and advice.reason == "best_option", "a paying soft retry"
    assert (advice.route_id, advice.delay_hours) == ("b", 24), "the highest-EV option wins"
    assert advice.expected_value == pytest.approx(0.6 * 10 - 0.05 - 0.02), "EV reported"


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(sorted(codes.hard_codes())), st.floats(0, 1), st.integers(1, 5))
def test_hard_declines_never_retry(code: str, p: float, attempt: int) -> None:
    advice = retries.advise_retry(decline(code, attempt_number=attempt), OPTIONS, forbidden, COSTS)
    assert advice.action == "stop" and advice.reason == "hard_decline", f"{code} must stop"


@pytest.mark.parametrize("mac", ["03", "21"])
def test_mac_do_not_retry_stops(mac: str) -> None:
    advice = retries.advise_retry(decline(merchant_advice_code=mac), OPTIONS, forbidden, COSTS)
    assert advice.reason == "mac_do_not_retry", f"MAC {mac} forbids any retry"


def test_mac_04_and_fixable_codes_need_a_corrected_request() -> None:
    seen: list[RetryOption] = []

    def score(options: Sequence[RetryOption]) -> list[float]:
        seen.extend(options)
        return [0.9] * len(options)

    for context in (decline(merchant_advice_code="04"), decline(FIXABLE)):
        advice = retries.advise_retry(context, OPTIONS, score, COSTS)
        assert advice.action == "retry" and advice.with_3ds, "only corrected requests retry"
    assert seen and all(o.corrects_request for o in seen), "score sees only corrected options"
    plain = [o for o in OPTIONS if not o.with_3ds]
    advice = retries.advise_retry(decline(FIXABLE), plain, forbidden, COSTS)
    assert advice.reason == "no_allowed_option", "no corrected option: stop"


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(WAITING_MACS), st.floats(0, 300), st.sampled_from(OPTIONS))
def test_mac_waiting_time_is_never_broken(mac: str, elapsed: float, option: RetryOption) -> None:
    context = decline(merchant_advice_code=mac, hours_since_decline=elapsed)
    advice = retries.advise_retry(context, [option], constant(0.9), COSTS)
    wait = RULES.advice[mac].min_delay_hours or 0.0
    assert advice.action == "retry", "a soft decline with a paying option retries"
    assert advice.delay_hours is not None, "a retry has a delay"
    assert advice.delay_hours + elapsed >= wait - 1e-9, f"MAC {mac} asks to wait {wait} h"


def test_reattempt_limit_and_excessive_attempts_stop() -> None:
    limit = decline(reattempts_in_window=RULES.max_reattempts)
    assert retries.advise_retry(limit, OPTIONS, forbidden, COSTS).reason == "reattempt_limit"
    busy = decline(declines_24h=RULES.max_declined_attempts_24h)
    assert retries.advise_retry(busy, OPTIONS, forbidden, COSTS).reason == "excessive_attempts"
    just_under = decline(reattempts_in_window=RULES.max_reattempts - 1)
    advice = retries.advise_retry(just_under, OPTIONS, constant(0.9), COSTS)
    assert advice.action == "retry", "one reattempt left in the window is still allowed"


def test_low_probability_and_negative_value_stop() -> None:
    low = retries.advise_retry(decline(), OPTIONS, constant(0.2), COSTS, min_probability=0.3)
    assert (low.action, low.reason) == ("stop", "below_threshold"), "below the minimum p"
    assert low.p_approve == 0.2, "the best probability seen is reported"
    cheap = retries.advise_retry(decline(amount=0.5), OPTIONS, constant(0.5), COSTS)
    assert cheap.reason == "negative_expected_value", "a retry that cannot pay stops"
    assert cheap.expected_value is not None and cheap.expected_value <= 0, "EV reported"


def test_empty_candidates_stop_without_scoring() -> None:
    advice = retries.advise_retry(decline(), [], forbidden, COSTS)
    assert advice.reason == "no_allowed_option", "nothing to choose from"


def test_bad_score_output_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="returned 1 values"):
        retries.advise_retry(decline(), OPTIONS, lambda o: [0.5], COSTS)
    with pytest.raises(ValueError, match="within"):
        retries.advise_retry(decline(), OPTIONS, constant(float("nan")), COSTS)


def test_decline_context_validates() -> None:
    with pytest.raises(ValidationError, match="approval"):
        decline("00")
    with pytest.raises(ValidationError, match="declines_24h"):
        decline(declines_24h=-1)
    with pytest.raises(ValidationError, match="surprise"):
        decline(surprise=1)


def test_default_retry_options_grid() -> None:
    grid = retries.default_retry_options(["a", "b", "a"], delays=(1, 24))
    assert len(grid) == 2 * 2 * 2, "routes (deduplicated) x delays x 3DS"
    assert len(set(grid)) == len(grid), "no duplicate options"
