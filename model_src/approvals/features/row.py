"""The feature row of one attempt: bit for bit what ``derive.matrix`` gives, for far less CPU.

The online service scores one attempt at a time, and ``matrix`` on one row pays numpy's fixed
cost on dozens of one-element arrays. :class:`RowFeatures` plans once per spec which counter
feeds which feature, then does the arithmetic on Python floats: IEEE ``+ - * /`` on them round
exactly like numpy's float64 loops. Only the transcendental functions go through numpy (one
``log1p`` and one ``log`` call per row): numpy's SIMD ``log`` and ``log1p`` do not always round
like the C library behind :mod:`math`, so ``math.log1p`` would drift from the batch path in the
last bit.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from approvals import codes
from approvals.features.definitions import CATEGORICALS, UTC_OFFSET_HOURS
from approvals.features.derive import _RATES, EPS, FeatureSpec

DAY_US = 86_400_000_000
# np.nan and math.nan are the same quiet NaN (positive); NaNs that numpy *computes* (0/0) are
# the platform's default NaN instead, which on x86 has the sign bit set: see _divide.
_MISSING = math.nan
_HIGH = 1 - EPS
# Categoricals not read from the attempt as they are (see derive.categorical_values).
_DERIVED = ("prev_code", "prev_class", "card_last_code", "merchant_advice_code")
_FROM_ATTEMPT = tuple(c for c in CATEGORICALS if c not in _DERIVED)
# Names of the values RowFeatures._card and RowFeatures._attempt return, in their order.
_CARD_FEATURES = (
    "amount_vs_card_approved",
    "amount_vs_card_nsf",
    "card_24h_declines",
    "card_24h_nsf",
    "card_life_hard",
    "card_life_declines",
    "amount_vs_card",
    "card_minutes_since_last",
)
_ATTEMPT_FEATURES = (
    "log_amount",
    "cross_border",
    "local_hour",
    "issuer_local_hour",
    "day_of_week",
    "attempt_number",
    "network_token",
    "prev_hard",
    "prev_outage",
)


def _divide(x: float, y: float) -> float:
    """``x / y`` as numpy divides under ``errstate(divide="ignore", invalid="ignore")``.

    Python raises on a zero divisor where IEEE gives ``x * (±inf)``: ±inf, ``x``'s own NaN,
    or for 0/0 the hardware's default NaN (the very bits numpy's 0/0 gives, not math.nan).
    """
    return x / y if y else x * math.copysign(math.inf, y)


def _text(value: Any) -> str | None:
    """A categorical value as :func:`derive.map_values` keys it: text, None when "" or None."""
    if value is None:
        return None
    return (value if type(value) is str else str(value)) or None


def _code(value: Any, index: Mapping[Any, float]) -> float:
    """One value's category code as :func:`derive.encode` gives it (unknown, missing: NaN)."""
    if value is None or type(value) is str:
        return index.get(value, _MISSING)  # "" and None are never categories (fit_vocab)
    key = _text(value)
    return _MISSING if key is None else index.get(key, _MISSING)


def _odds(p: float) -> float:
    """``q / (1 - q)`` of ``p`` clipped to [EPS, 1 - EPS]: the argument of logit's log.

    Comparisons, not ``min``/``max``, so that a NaN passes through as ``np.clip`` lets it.
    """
    q = EPS if p < EPS else _HIGH if p > _HIGH else p
    return q / (1 - q)


def _prev_context(code: Any) -> tuple[float, float, str]:
    """prev_hard, prev_outage and the prev_class value of a previous response code."""
    text = _text(code)
    kind = codes.classify(text)
    outage = text is not None and codes.is_outage(text)
    return float(kind is codes.CodeClass.HARD), float(outage), kind.value


def _rate_steps(global_rate: float) -> list[tuple[int, int, float, float]]:
    """``(row, parent row or -1, strength, strength * global rate)``, parents first.

    ``strength * global rate`` is the prior term of top-level families, the same product the
    batch path computes for every row, so it is computed once per spec.
    """
    steps = []
    for rows, parents in _RATES.levels:
        for row, parent in zip(rows.tolist(), parents.tolist(), strict=True):
            strength = float(_RATES.strength[row, 0])
            steps.append((row, parent, strength, strength * global_rate))
    return steps


def _gather(order: Sequence[int]) -> Callable[[Sequence[float]], tuple[float, ...]]:
    """The values at ``order`` as a tuple (``itemgetter`` returns a bare value for one)."""
    if len(order) == 1:
        only = order[0]
        return lambda values: (values[only],)
    return operator.itemgetter(*order) if order else lambda _values: ()


class RowFeatures:
    """The feature row of one attempt, equal bit for bit to :func:`derive.matrix` of it.

    Precomputed from a :class:`FeatureSpec` once: the rate plan with the prior terms that only
    depend on the spec, counter keys, the category codes, and where each feature goes in the
    row. A call costs a few dozen Python float operations and a handful of numpy calls.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        """Plan the row of ``spec``.

        Raises:
            ValueError: ``spec.names`` holds a name derivation does not produce.
        """
        plan = _RATES
        self.names = list(spec.names)
        self._n_keys = [f"{base}_n" for base in plan.bases]
        self._a_keys = [f"{base}_a" for base in plan.bases]
        self._steps = _rate_steps(spec.global_rate)
        self._outage = [(f"{plan.bases[i]}_outage", i) for i in plan.outage]
        # logit's log is taken of the compared rows' odds, then of their lifetime rows' odds
        self._vs_rows = list(plan.vs_life)
        life_rows = sorted({int(plan.life_row[i]) for i in plan.vs_life})
        self._odds_rows = self._vs_rows + life_rows
        first = len(self._vs_rows)
        self._vs_pairs = [
            (k, first + life_rows.index(int(plan.life_row[i]))) for k, i in enumerate(self._vs_rows)
        ]
        index = spec.vocab_index
        self._attempt_codes = [(c, index[c]) for c in _FROM_ATTEMPT]
        self._derived_codes = [index[c] for c in _DERIVED]
        self._offsets: dict[str | None, float] = {c: float(h) for c, h in UTC_OFFSET_HOURS.items()}
        layout = self._layout()
        unknown = sorted(set(self.names) - set(layout))
        if unknown:
            raise ValueError(f"spec names features derivation does not produce: {unknown}")
        position = {name: i for i, name in enumerate(layout)}
        self._take = _gather([position[name] for name in self.names])

    def _layout(self) -> list[str]:
        """Every feature's name, in the order :meth:`__call__` lists their values."""
        bases = _RATES.bases
        return [
            *(f"{base}_rate" for base in bases),
            *(f"{base}_logn" for base in bases),
            *(key for key, _ in self._outage),
            *(f"{bases[i]}_vs_life" for i in self._vs_rows),
            *_CARD_FEATURES,
            *_ATTEMPT_FEATURES,
            *_FROM_ATTEMPT,
            *_DERIVED,
        ]

    def __call__(
        self, counts: Mapping[str, float | str | None], attempt: Mapping[str, Any]
    ) -> np.ndarray:
        """The feature row of one attempt, shape ``(1, len(spec.names))``, float64, C order.

        Args:
            counts: the keys of :func:`approvals.features.tiles.default_counts`, each a Python
                scalar (``card_last_us`` NaN when unknown, ``card_last_code`` str or None).
            attempt: the fields of :data:`approvals.features.ATTEMPT_FIELDS` as Python values,
                with ``event_time_us`` (int epoch microseconds, UTC) for ``event_time``;
                ``merchant_advice_code`` may be absent.
        """
        c: Mapping[str, Any] = counts
        n = list(map(c.__getitem__, self._n_keys))
        rate = self._rates(n, list(map(c.__getitem__, self._a_keys)))
        logn = np.log1p(np.array([*n, attempt["amount"]], dtype=np.float64)).tolist()
        log_amount = logn.pop()
        t_us = operator.index(attempt["event_time_us"])
        prev = _prev_context(attempt["previous_response_code"])
        values = [
            *rate,
            *logn,
            *(_divide(c[key], n[i] + 1.0) for key, i in self._outage),
            *self._vs_life_values(rate),
            *self._card(c, log_amount, t_us),
            *self._attempt(attempt, log_amount, t_us, prev),
            *(_code(attempt[name], index) for name, index in self._attempt_codes),
            *self._derived(attempt, c["card_last_code"], prev[2]),
        ]
        row = np.fromiter(self._take(values), dtype=np.float64, count=len(self.names))
        return row.reshape(1, len(self.names))

    def _rates(self, n: list[float], a: list[float]) -> list[float]:
        """Shrunk rates of every (family, window) row, parents before their children."""
        rate = [0.0] * len(n)
        for row, parent, strength, top_lift in self._steps:
            lift = top_lift if parent < 0 else strength * rate[parent]
            rate[row] = _divide(a[row] + lift, n[row] + strength)
        return rate

    def _vs_life_values(self, rate: list[float]) -> list[float]:
        """logit(rate) - logit(lifetime rate), the logs taken in one numpy call."""
        odds = [_odds(rate[i]) for i in self._odds_rows]
        logs = np.log(np.array(odds, dtype=np.float64)).tolist()
        return [logs[k] - logs[life] for k, life in self._vs_pairs]

    @staticmethod
    def _card(c: Mapping[str, Any], log_amount: float, t_us: int) -> tuple[float, ...]:
        """The values of :data:`_CARD_FEATURES` (see ``derive._card_features``)."""
        n_life = c["card_life_n"]
        mean_log = c["card_life_slog"] / n_life if n_life > 0 else _MISSING
        return (
            log_amount - _divide(c["card_life_aslog"], c["card_life_a"]),
            log_amount - _divide(c["card_life_nsfslog"], c["card_life_nsf"]),
            c["card_24h_n"] - c["card_24h_a"],
            c["card_24h_nsf"],
            c["card_life_hard"],
            n_life - c["card_life_a"],
            log_amount - mean_log,
            (t_us - c["card_last_us"]) / 60e6,
        )

    def _attempt(
        self,
        attempt: Mapping[str, Any],
        log_amount: float,
        t_us: int,
        prev: tuple[float, float, str],
    ) -> tuple[float, ...]:
        """The values of :data:`_ATTEMPT_FEATURES` (see ``derive.attempt_features``)."""
        days, since_midnight = divmod(t_us, DAY_US)  # floors like datetime64[D], before 1970 too
        hours_utc = since_midnight / 3.6e9
        merchant, issuer = attempt["merchant_country"], attempt["issuer_country"]
        return (
            log_amount,
            float(merchant != issuer),
            (hours_utc + self._offsets.get(_text(merchant), 0.0)) % 24,
            (hours_utc + self._offsets.get(_text(issuer), 0.0)) % 24,
            float((days + 3) % 7),
            float(attempt["attempt_number"]),
            float(attempt["network_token"]),
            prev[0],
            prev[1],
        )

    def _derived(self, attempt: Mapping[str, Any], last_code: Any, prev_class: str) -> list[float]:
        """Codes of prev_code, prev_class, card_last_code and merchant_advice_code."""
        raw = (attempt["previous_response_code"], prev_class, last_code)
        values = [*raw, attempt.get("merchant_advice_code")]
        return [_code(v, index) for v, index in zip(values, self._derived_codes, strict=True)]
