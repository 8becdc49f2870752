"""Attempts as they happen: first tries on the static route split, then the static retry policy.

Static policy (what the platform did before it had a model): hard declines never; 91/96 retry
within minutes on the merchant's secondary route (once); 51 retry after 24-72 h on the same
route (at most twice; 72 h or more after MAC 02); 05 and other soft declines retry once after
about an hour on the same route; Mastercard MAC 03 and 21 are never retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from approvals.simulate import dynamics as dyn
from approvals.simulate.chains import Attempt, Chains, Deaths, attempt_probs

Array = np.ndarray
PRIMARY_SHARE = 0.8  # share of first attempts a merchant sends to its primary route
CODES = ("00", "05", "14", "41", "43", "51", "54", "57", "61", "65", "91", "96", "R1")
MACS = ("", "01", "02", "03", "21", "24", "25")
C = {c: i for i, c in enumerate(CODES)}
M = {c: i for i, c in enumerate(MACS)}
DEATH_CODES = np.array([C["14"], C["41"], C["43"], C["54"]])
DEATH_SHARES = np.array([0.30, 0.20, 0.15, 0.35])
STAGE_CODE = np.array([C["96"], C["91"], -1, -1, C["51"], C["61"], C["65"], C["05"], C["00"]])
MASTERCARD = 1


@dataclass
class Log:
    """Attempts as parallel arrays, appended round by round."""

    parts: dict[str, list[Array]] = field(default_factory=dict)

    def add(self, **columns: Array) -> None:
        """Append one batch of attempts."""
        for name, values in columns.items():
            self.parts.setdefault(name, []).append(values)

    def arrays(self) -> dict[str, Array]:
        """The attempts so far, concatenated."""
        return {name: np.concatenate(values) for name, values in self.parts.items()}


def sample_stage(rng: np.random.Generator, probs: Array) -> Array:
    """First mechanism that fires (or APPROVED), each firing independently with its probability."""
    fired = rng.random(probs.shape) < probs
    return np.where(fired.any(axis=1), fired.argmax(axis=1), dyn.APPROVED)


def hard_codes(
    rng: np.random.Generator, hazards: Array, brand: Array
) -> tuple[Array, Array, Array]:
    """Code, MAC and "card died" for attempts whose hard hazard fired (cause drawn by its share)."""
    share = hazards / np.maximum(hazards.sum(axis=1, keepdims=True), 1e-12)
    cause = (rng.random(len(share))[:, None] > np.cumsum(share, axis=1)).sum(axis=1)
    death = DEATH_CODES[rng.choice(DEATH_CODES.size, len(share), p=DEATH_SHARES)]
    mc = brand == MASTERCARD
    code = np.select([cause == 0, cause == 1], [death, C["57"]], np.where(mc, C["05"], C["R1"]))
    mac = np.where(mc & (cause == 2), M["21"], 0)
    return code, mac, cause == 0


def advice_codes(rng: np.random.Generator, code: Array, brand: Array) -> Array:
    """Mastercard Merchant Advice Codes returned with some declines (index into MACS)."""
    u = rng.random(code.size)
    lost = np.isin(code, [C["14"], C["41"], C["43"]])
    table = [
        (lost & (u < 0.6), M["03"]),
        ((code == C["54"]) & (u < 0.5), M["01"]),
        ((code == C["57"]) & (u < 0.3), M["03"]),
        ((code == C["51"]) & (u < 0.10), M["02"]),
        ((code == C["51"]) & (u >= 0.10) & (u < 0.20), M["25"]),
        ((code == C["05"]) & (u < 0.05), M["03"]),
        ((code == C["05"]) & (u >= 0.05) & (u < 0.15), M["24"]),
    ]
    mac = np.select([cond for cond, _ in table], [value for _, value in table], 0)
    return np.where(brand == MASTERCARD, mac, 0)


def run(rng: np.random.Generator, model: dyn.Model) -> tuple[Log, Chains, Deaths]:
    """Play every payment: the first attempt, then retry rounds until the policy stops.

    Returns:
        The attempt log and the chains of the declined payments after their FIRST attempt
        (the conditioning state of the counterfactual retries).
    """
    log = Log()
    first, deaths = _first_attempts(rng, model, log)
    chains = first
    for _ in range(dyn.MAX_ATTEMPTS - 1):
        go, delay, route = _policy(rng, model, chains)
        if not go.any():
            break
        chains = chains.take(np.flatnonzero(go))
        chains = _retry(rng, model, deaths, chains, delay[go], route[go], log)
    return log, first, deaths


def _brand(model: dyn.Model, idx: Array) -> Array:
    return model.world.bins.brand[model.world.cards.bin[model.pay.card[idx]]]


def _answer(
    rng: np.random.Generator, model: dyn.Model, deaths: Deaths, ch: Chains, stage: Array
) -> tuple[Array, Array, Array]:
    """Response code, MAC and "card died here" of attempts answered by mechanism ``stage``."""
    brand = _brand(model, ch.idx)
    hard_code, hard_mac, died = hard_codes(rng, model.hazards[ch.idx], brand)
    card_code = deaths.code[model.pay.card[ch.idx]]
    code = np.select(
        [stage == dyn.DEAD, stage == dyn.HARD], [card_code, hard_code], STAGE_CODE[stage]
    )
    mac = np.where((stage == dyn.HARD) & (hard_mac > 0), hard_mac, advice_codes(rng, code, brand))
    return code, mac, died & (stage == dyn.HARD)


def _record(log: Log, ch: Chains, attempt: Attempt, p: Array, code: Array, mac: Array) -> None:
    log.add(
        idx=ch.idx, attempt=ch.attempt + 1, t=attempt.t, route=attempt.route, code=code, mac=mac,
        previous=np.where(ch.attempt > 0, ch.code, -1), p=p,
    )  # fmt: skip


def static_routes(rng: np.random.Generator, routes: Array) -> Array:
    """The static routing the data came from: a fixed volume split per merchant.

    Most merchants send :data:`PRIMARY_SHARE` of first attempts to their primary acquirer and
    spread the rest evenly over their other routes (cost and redundancy contracts), which is
    what gives a model observations of every route.
    """
    available = (routes >= 0).sum(axis=1)
    other = rng.integers(1, np.maximum(available, 2))
    spill = (rng.random(routes.shape[0]) >= PRIMARY_SHARE) & (available > 1)
    slot = np.where(spill, other, 0)
    return routes[np.arange(routes.shape[0]), slot]


def _first_attempts(rng: np.random.Generator, model: dyn.Model, log: Log) -> tuple[Chains, Deaths]:
    """Every payment's first try on its merchant's static route; cards die on the way."""
    pay = model.pay
    n, n_cards = pay.t.size, model.world.cards.bin.size
    route = static_routes(rng, model.world.merchants.routes[pay.merchant])
    none = np.full(n, -1)
    ch = Chains.start(np.arange(n), route, pay.t, none, np.zeros(n, dtype=np.int64))
    alive = Deaths(np.full(n_cards, np.inf), none[:n_cards])
    attempt = attempt_probs(model, alive, ch, route, pay.t)
    stage = sample_stage(rng, attempt.probs)
    code, _, died = _answer(rng, model, alive, ch, stage)
    deaths = Deaths.from_events(pay, n_cards, died, code)
    dead = deaths.dead(pay.card, pay.t)
    stage = np.where(dead & (stage >= dyn.DEAD), dyn.DEAD, stage)
    code, mac, _ = _answer(rng, model, deaths, ch, stage)
    _record(log, ch, attempt, np.where(dead, 0.0, attempt.p_approve), code, mac)
    declined = np.flatnonzero(stage != dyn.APPROVED)
    sub = ch.take(declined)
    sub_attempt = Attempt(
        route[declined], pay.t[declined], _take_th(attempt.th, declined),
        attempt.probs[declined], attempt.nsf.take(declined), attempt.risk.take(declined),
    )  # fmt: skip
    return sub.after(sub_attempt, stage[declined], code[declined], mac[declined]), deaths


def _take_th(th: dyn.Thresholds, rows: Array) -> dyn.Thresholds:
    return dyn.Thresholds(**{k: v[rows] for k, v in th.__dict__.items()})


def _policy(rng: np.random.Generator, model: dyn.Model, ch: Chains) -> tuple[Array, Array, Array]:
    """The static retry policy: whether, after how many hours and on which route to retry."""
    stage, n = ch.stage, ch.idx.size
    never = np.isin(ch.mac, [M["03"], M["21"]]) | (ch.attempt >= dyn.MAX_ATTEMPTS)
    outage = (stage <= dyn.ISSUER_OUT) & (ch.retries[:, 0] < 1)
    nsf = (stage == dyn.NSF) & (ch.retries[:, 1] < 2)
    other = (stage >= dyn.LIMIT) & (stage <= dyn.RISK) & (ch.retries[:, 2] < 1)
    go = ~never & (outage | nsf | other)
    nsf_wait = np.where(ch.mac == M["02"], rng.uniform(72, 96, n), rng.uniform(24, 72, n))
    delay = np.select(
        [outage, nsf], [rng.uniform(2 / 60, 15 / 60, n), nsf_wait], rng.uniform(1.0, 1.5, n)
    )
    routes = model.world.merchants.routes[model.pay.merchant[ch.idx]]
    secondary = np.where(ch.route == routes[:, 0], routes[:, 1], routes[:, 0])
    return go, delay, np.where(outage, secondary, ch.route)


def _retry(
    rng: np.random.Generator,
    model: dyn.Model,
    deaths: Deaths,
    ch: Chains,
    delay: Array,
    route: Array,
    log: Log,
) -> Chains:
    """One retry round for the chains the policy chose."""
    kind = np.select([ch.stage <= dyn.ISSUER_OUT, ch.stage == dyn.NSF], [0, 1], 2)
    retries = ch.retries.copy()
    retries[np.arange(kind.size), kind] += 1
    ch = replace(ch, retries=retries)
    attempt = attempt_probs(model, deaths, ch, route, ch.t + delay)
    stage = sample_stage(rng, attempt.probs)
    code, mac, _ = _answer(rng, model, deaths, ch, stage)
    _record(log, ch, attempt, attempt.p_approve, code, mac)
    return ch.after(attempt, stage, code, mac)
