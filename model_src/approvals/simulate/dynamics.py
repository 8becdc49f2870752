"""How issuers answer an attempt: a chain of decline mechanisms and their true probabilities.

An attempt passes, in order: a route outage (96), an issuer outage (91), a dead card (its
hard code), a per-payment hard hazard (lost/stolen/closed/expired, 57 on blocked categories,
a cancelled recurring agreement), insufficient funds (51), an amount limit (61), an activity
limit (65) and the issuer's risk decision (05). The first mechanism that fires gives the
response code; if none fires the attempt is approved ("00").

Insufficient funds and the risk decision are *sticky*: each payment carries one latent uniform
per mechanism, so a retry minutes later meets the same answer, while the uniform is redrawn
with a probability that grows with the time since the previous attempt (balances and risk
scores move). The true probability of an attempt conditions on what earlier attempts of the
same payment revealed; it is computed exactly from a small mixture of uniform intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from approvals.simulate import tables
from approvals.simulate.payments import TZ, Payments
from approvals.simulate.world import REGION_OF, ROUTE_COUNTRY, World

Array = np.ndarray

ROUTE_OUT, ISSUER_OUT, DEAD, HARD, NSF, LIMIT, VELOCITY, RISK, APPROVED = range(9)
N_STAGES = 8
MAX_ATTEMPTS = 5
ROUTE_QUALITY = np.array([r.quality for r in tables.ROUTES])
MCC_RISK = np.array([m.risk for m in tables.MCCS])
BLOCKABLE = np.array([m.code in tables.BLOCKABLE_MCCS for m in tables.MCCS])
COUNTRY_APPROVAL = np.array([c.approval for c in tables.COUNTRIES])


@dataclass(frozen=True)
class Params:
    """Tunable strengths of the mechanisms (recorded in the manifest)."""

    risk_intercept: float = 3.05
    domestic_acquiring: float = 0.40
    regional_acquiring: float = 0.15
    challenge_extra: float = 0.40  # challenge 3DS authenticates more strongly than frictionless
    unusual_amount: float = 0.40  # risk per log unit above the card's usual spend
    velocity_risk: float = 0.30  # risk per attempt of the card in the last 24 h
    nsf_slope: float = 2.2
    nsf_intercept: float = -1.9
    death_hazard: float = 0.0015
    block_hazard: float = 0.35
    cancel_hazard: float = 0.006
    nsf_memory_h: float = 72.0  # time scale on which a balance is redrawn
    risk_memory_h: float = 6.0  # time scale on which an issuer's risk score is redrawn


PARAMS = Params()


def sigmoid(x: Array) -> Array:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def static_risk_logit(world: World, pay: Payments, prm: Params = PARAMS) -> Array:
    """The part of the approval logit fixed for the whole payment (not route, time or velocity)."""
    banks, bins, cards, merch = world.banks, world.bins, world.cards, world.merchants
    b, bn = pay.bank, cards.bin[pay.card]
    strength_3ds = banks.three_ds[b] * np.select(
        [pay.three_ds == 2, pay.three_ds == 1], [1 + prm.challenge_extra, 1.0], 0.0
    )
    unusual = np.maximum(0.0, pay.log_amount - cards.log_spend[pay.card])
    return (
        prm.risk_intercept
        + banks.base[b]
        + COUNTRY_APPROVAL[pay.issuer_country]
        + bins.effect[bn]
        - banks.cross_border[b] * pay.cross_border
        + MCC_RISK[merch.mcc[pay.merchant]]
        + np.take(tables.CARD_TYPE_EFFECT, bins.card_type[bn])
        + np.take(tables.BRAND_EFFECT, bins.brand[bn])
        + strength_3ds
        + banks.token[b] * pay.token
        + np.take(tables.CHANNEL_EFFECT, pay.channel)
        - prm.unusual_amount * unusual
        + merch.effect[pay.merchant]
        + cards.latent[pay.card]
    )


def hard_hazards(world: World, pay: Payments, prm: Params = PARAMS) -> Array:
    """Per-payment hazards (payments, 3): card death, blocked category (57), cancelled agreement."""
    bins, cards = world.bins, world.cards
    prepaid = bins.card_type[cards.bin[pay.card]] == 2
    death = prm.death_hazard * cards.fragility[pay.card]
    death = death * np.where(prepaid, 2.0, 1.0) * np.where(pay.cross_border, 1.5, 1.0)
    death = death * np.where(pay.channel == 3, 1.5, 1.0)
    blocked = world.banks.blocks_risky[pay.bank] & BLOCKABLE[world.merchants.mcc[pay.merchant]]
    block = np.where(blocked, prm.block_hazard, 0.001)
    cancel = np.where(pay.channel == 1, prm.cancel_hazard, 0.0)
    return np.stack([death, block, cancel], axis=1)


@dataclass(frozen=True)
class Model:
    """The world, its payments and their per-payment parts of the probabilities."""

    world: World
    pay: Payments
    static: Array  # static_risk_logit per payment
    hazards: Array  # hard_hazards per payment (payments, 3)
    prm: Params

    @classmethod
    def build(cls, world: World, pay: Payments, prm: Params = PARAMS) -> Model:
        """Precompute the per-payment parts."""
        return cls(
            world, pay, static_risk_logit(world, pay, prm), hard_hazards(world, pay, prm), prm
        )


@dataclass(frozen=True)
class Thresholds:
    """Unconditional firing probability of each mechanism for a batch of attempts."""

    route_out: Array
    issuer_out: Array
    hard: Array
    nsf: Array
    limit: Array
    velocity: Array
    risk: Array


def thresholds(model: Model, idx: Array, route: Array, t: Array, velocity: Array) -> Thresholds:
    """Firing probabilities for attempts of payments ``idx`` on ``route`` at time ``t``.

    Args:
        model: world, payments and per-payment parts.
        idx: payment index of each attempt.
        route: route index of each attempt.
        t: hours since the start of the period.
        velocity: attempts of the same card in the previous 24 h.

    Returns:
        The thresholds, unconditional on earlier attempts of the payment.
    """
    world, pay, prm = model.world, model.pay, model.prm
    bank, ic = pay.bank[idx], pay.issuer_country[idx]
    domestic = ROUTE_COUNTRY[route] == ic
    regional = REGION_OF[ROUTE_COUNTRY[route]] == REGION_OF[ic]
    local_hour = np.mod(t + TZ[ic], 24.0)
    night = (local_hour < 6.0) & (pay.channel[idx] != 1)
    logit = (
        model.static[idx]
        + ROUTE_QUALITY[route]
        + np.where(
            domestic, prm.domestic_acquiring, np.where(regional, prm.regional_acquiring, 0.0)
        )
        + world.banks.affinity[bank, route]
        - world.banks.night[bank] * night
        - prm.velocity_risk * velocity
    )
    gap_balance = pay.log_amount[idx] - world.cards.log_balance[pay.card[idx]]
    gap_usual = pay.log_amount[idx] - world.cards.log_spend[pay.card[idx]]
    route_out, issuer_out = outage_probs(world, bank, route, t)
    return Thresholds(
        route_out=route_out,
        issuer_out=issuer_out,
        hard=np.minimum(model.hazards[idx].sum(axis=1), 0.95),
        nsf=np.minimum(sigmoid(prm.nsf_slope * gap_balance + prm.nsf_intercept), 0.97),
        limit=sigmoid(-6.0 + 1.5 * gap_usual),
        velocity=np.minimum(0.002 + 0.015 * velocity.astype(float) ** 2, 0.4),
        risk=sigmoid(-logit),
    )


def outage_probs(world: World, bank: Array, route: Array, t: Array) -> tuple[Array, Array]:
    """Probability that a route outage (96) or an issuer outage (91) declines each attempt."""
    out = world.outages
    survive_route, survive_issuer = np.ones(t.size), np.ones(t.size)
    order = np.argsort(t, kind="stable")
    ts = t[order]
    lo = np.searchsorted(ts, out.start, side="left")
    hi = np.searchsorted(ts, out.end, side="left")
    for e in np.flatnonzero(hi > lo):
        rows = order[lo[e] : hi[e]]
        hit = np.ones(rows.size, dtype=bool)
        if out.route[e] >= 0:
            hit &= route[rows] == out.route[e]
        if out.bank[e] >= 0:
            hit &= bank[rows] == out.bank[e]
        target = survive_route if out.kind[e] == 0 else survive_issuer
        target[rows[hit]] *= 1.0 - out.severity[e]
    return 1.0 - survive_route, 1.0 - survive_issuer
