"""Retry advice: whether, when, through which route and how to reattempt a declined attempt.

Pure functions shared by the offline policy evaluation and the BentoML service (numpy and
pydantic only). Scheme rules come from ``approvals.codes.rules()`` (a data file): they decide
which retry options are allowed; the model only chooses among those, by expected value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from approvals import codes
from approvals.codes import SchemeRules
from approvals.decisions.costs import CostConfig, checked_probability, expected_value

Reason = Literal[
    "hard_decline",
    "mac_do_not_retry",
    "reattempt_limit",
    "excessive_attempts",
    "no_allowed_option",
    "below_threshold",
    "negative_expected_value",
    "best_option",
    "static_policy",
]
DEFAULT_DELAYS: tuple[float, ...] = (0.05, 1, 24, 72, 168)
Hours = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class DeclineContext(BaseModel):
    """A declined attempt to advise on.

    ``reattempts_in_window`` counts reattempts of this payment already made within the scheme
    window (30 days); ``declines_24h`` counts declined attempts of this card at this merchant in
    the last 24 hours, including this one; ``hours_since_decline`` is the time already elapsed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    response_code: Annotated[str, Field(pattern=r"^[0-9A-Z]{2}$")]
    merchant_advice_code: Annotated[str, Field(pattern=r"^[0-9]{2}$")] | None = None
    attempt_number: Annotated[int, Field(ge=1)]
    reattempts_in_window: Annotated[int, Field(ge=0)] = 0
    declines_24h: Annotated[int, Field(ge=0)] = 1
    hours_since_decline: Hours = 0.0
    amount: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    card_brand: str

    @model_validator(mode="after")
    def _is_a_decline(self) -> DeclineContext:
        if codes.is_approved(self.response_code):
            raise ValueError(f"response_code {self.response_code} is an approval, not a decline")
        return self


class RetryOption(BaseModel):
    """One way to reattempt: route, delay, and whether the request is corrected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    route_id: Annotated[str, Field(min_length=1)]
    delay_hours: Hours
    with_3ds: bool = False
    with_network_token: bool = False

    @property
    def corrects_request(self) -> bool:
        """True when the reattempt changes the request (3DS or a network token)."""
        return self.with_3ds or self.with_network_token


@dataclass(frozen=True)
class RetryAdvice:
    """What to do after a decline; ``route_id``/``delay_hours`` are set only on retry."""

    action: Literal["stop", "retry"]
    reason: Reason
    route_id: str | None = None
    delay_hours: float | None = None
    with_3ds: bool = False
    with_network_token: bool = False
    p_approve: float | None = None
    expected_value: float | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-safe dict of the fields."""
        return asdict(self)


def _rule_stop(decline: DeclineContext, rules: SchemeRules) -> Reason | None:
    """The scheme rule that forbids any reattempt, if one does."""
    advice = rules.advice.get(decline.merchant_advice_code or "")
    if rules.category_of.get(decline.response_code, 4) == 1:
        return "hard_decline"
    if advice is not None and advice.action == "never":
        return "mac_do_not_retry"
    if decline.reattempts_in_window >= rules.max_reattempts:
        return "reattempt_limit"
    if decline.declines_24h >= rules.max_declined_attempts_24h:
        return "excessive_attempts"
    return None


def _min_delay(decline: DeclineContext, rules: SchemeRules) -> float:
    advice = rules.advice.get(decline.merchant_advice_code or "")
    wait = advice.min_delay_hours if advice is not None else None
    return max(0.0, (wait or 0.0) - decline.hours_since_decline)


def _needs_correction(decline: DeclineContext, rules: SchemeRules) -> bool:
    advice = rules.advice.get(decline.merchant_advice_code or "")
    fixable = rules.category_of.get(decline.response_code, 4) == 3
    return fixable or (advice is not None and advice.action == "fix_request")


def allowed_options(
    decline: DeclineContext, candidates: Iterable[RetryOption], rules: SchemeRules | None = None
) -> list[RetryOption]:
    """The candidates the scheme rules allow, with delays raised to any MAC waiting time.

    Options that would need a correction they lack are dropped; options whose delay is shorter
    than the Merchant Advice Code's waiting time are moved to that time (duplicates merged).
    Returns an empty list when a rule forbids every reattempt.
    """
    rules = rules or codes.rules()
    if _rule_stop(decline, rules) is not None:
        return []
    floor, must_fix = _min_delay(decline, rules), _needs_correction(decline, rules)
    kept = (o for o in candidates if o.corrects_request or not must_fix)
    raised = (o.model_copy(update={"delay_hours": max(o.delay_hours, floor)}) for o in kept)
    return list(dict.fromkeys(raised))


def _scored(
    options: Sequence[RetryOption],
    score: Callable[[Sequence[RetryOption]], Sequence[float]],
    decline: DeclineContext,
    costs: CostConfig,
) -> list[tuple[RetryOption, float, float]]:
    probabilities = list(score(options))
    if len(probabilities) != len(options):
        raise ValueError(f"score returned {len(probabilities)} values for {len(options)} options")
    rows = []
    for option, raw in zip(options, probabilities, strict=True):
        p = checked_probability(raw, f"score of {option.route_id}")
        ev = expected_value(p, decline.amount, option.route_id, costs, retry=True)
        rows.append((option, p, ev))
    return rows


def _best(rows: list[tuple[RetryOption, float, float]]) -> tuple[RetryOption, float, float]:
    return min(rows, key=lambda r: (-r[2], -r[1], r[0].delay_hours, r[0].route_id, r[0].with_3ds))


def advise_retry(
    decline: DeclineContext,
    candidates: Sequence[RetryOption],
    score: Callable[[Sequence[RetryOption]], Sequence[float]],
    costs: CostConfig,
    *,
    min_probability: float = 0.0,
    rules: SchemeRules | None = None,
) -> RetryAdvice:
    """Advise whether, when, where and how to reattempt a declined payment.

    Scheme rules first (never overridden by the model): hard declines, MAC 03/21, the
    reattempt limit and excessive attempts stop; MAC waiting times raise delays; fixable
    declines (Visa category 3, MAC 04) allow only options that correct the request. Among the
    allowed options the model's expected value decides; no option with ``EV > 0`` and
    ``p >= min_probability`` means stop.

    Args:
        decline: the decline and its retry history.
        candidates: retry options to consider (see ``default_retry_options``).
        score: approval probability of each option; called once, with allowed options only.
        costs: cost configuration.
        min_probability: smallest approval probability worth a reattempt.
        rules: scheme rules (default: ``approvals.codes.rules()``).

    Raises:
        ValueError: ``score`` returns the wrong number of values or values outside [0, 1].
    """
    rules = rules or codes.rules()
    stop = _rule_stop(decline, rules)
    if stop is not None:
        return RetryAdvice("stop", stop)
    options = allowed_options(decline, candidates, rules)
    if not options:
        return RetryAdvice("stop", "no_allowed_option")
    rows = _scored(options, score, decline, costs)
    eligible = [r for r in rows if r[1] >= min_probability]
    if not eligible:
        best_p = max(rows, key=lambda r: r[1])
        return RetryAdvice("stop", "below_threshold", p_approve=best_p[1], expected_value=best_p[2])
    option, p, ev = _best(eligible)
    if ev <= 0:
        return RetryAdvice("stop", "negative_expected_value", p_approve=p, expected_value=ev)
    return RetryAdvice(
        "retry",
        "best_option",
        route_id=option.route_id,
        delay_hours=option.delay_hours,
        with_3ds=option.with_3ds,
        with_network_token=option.with_network_token,
        p_approve=p,
        expected_value=ev,
    )


def static_retry(
    decline: DeclineContext, candidates: Sequence[RetryOption], rules: SchemeRules | None = None
) -> RetryAdvice:
    """The static policy of a holdout: retry whenever the scheme rules allow, with the first
    allowed option in the order given (the first route, the first delay), no model.

    Stops exactly where :func:`advise_retry` must stop by rule (reason ``hard_decline``,
    ``mac_do_not_retry``, ``reattempt_limit``, ``excessive_attempts``, ``no_allowed_option``);
    otherwise retries for reason ``static_policy``.
    """
    rules = rules or codes.rules()
    stop = _rule_stop(decline, rules)
    if stop is not None:
        return RetryAdvice("stop", stop)
    options = allowed_options(decline, candidates, rules)
    if not options:
        return RetryAdvice("stop", "no_allowed_option")
    first = options[0]
    return RetryAdvice(
        "retry", "static_policy", route_id=first.route_id, delay_hours=first.delay_hours,
        with_3ds=first.with_3ds, with_network_token=first.with_network_token,
    )  # fmt: skip


def default_retry_options(
    routes: Iterable[str],
    delays: Sequence[float] = DEFAULT_DELAYS,
    *,
    with_3ds: Sequence[bool] = (False, True),
) -> list[RetryOption]:
    """Every route x delay (hours) x 3DS combination, a grid for ``advise_retry`` to search."""
    return [
        RetryOption(route_id=r, delay_hours=d, with_3ds=s)
        for r in dict.fromkeys(routes)
        for d in delays
        for s in with_3ds
    ]
