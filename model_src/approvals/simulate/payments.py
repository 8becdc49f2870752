"""First attempts: who pays whom, when, how much, through which channel and authentication."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from approvals.simulate import tables
from approvals.simulate.world import N_COUNTRIES, World

Array = np.ndarray
TZ = np.array([c.tz_hours for c in tables.COUNTRIES])
FX = np.array([c.usd_fx for c in tables.COUNTRIES])
VELOCITY_WINDOW_H = 24.0


@dataclass(frozen=True)
class Payments:
    """One row per payment (its first attempt); arrays share the payment index."""

    card: Array
    merchant: Array
    bank: Array
    issuer_country: Array
    merchant_country: Array
    t: Array  # first-attempt time, hours since the start of the period
    channel: Array  # index into tables.CHANNELS
    three_ds: Array  # index into tables.THREE_DS
    token: Array  # bool
    log_amount: Array  # log of the amount in US dollars
    amount: Array  # in major units of the merchant's currency
    cross_border: Array  # bool
    card_key: Array  # sorting key of the card's first attempts (for velocity)


def draw_payments(rng: np.random.Generator, world: World, n: int, days: int) -> Payments:
    """Draw ``n`` payments over ``days`` days from the world's cards and merchants."""
    cards, bins = world.cards, world.bins
    card = rng.choice(cards.bin.size, n, p=cards.activity / cards.activity.sum())
    issuer_country = bins.country[cards.bin[card]]
    merchant = _pick_merchants(rng, world, issuer_country)
    merchant_country = world.merchants.country[merchant]
    channel = _channels(rng, world, merchant)
    t = _times(rng, channel, issuer_country, merchant_country, days)
    three_ds = _three_ds(rng, world, merchant, channel)
    brand = bins.brand[cards.bin[card]]
    token_rate = world.merchants.token[merchant] * np.take(tables.TOKEN_BRAND, brand)
    token_rate = np.clip(token_rate * np.where(channel == 1, 1.3, 1.0), 0, 0.95)
    mcc_shift = np.array([m.amount_shift for m in tables.MCCS])[world.merchants.mcc[merchant]]
    spread = np.where(channel == 1, 0.25, 0.7)
    log_amount = cards.log_spend[card] + mcc_shift + rng.normal(0, 1, n) * spread
    return Payments(
        card=card,
        merchant=merchant,
        bank=bins.bank[cards.bin[card]],
        issuer_country=issuer_country,
        merchant_country=merchant_country,
        t=t,
        channel=channel,
        three_ds=three_ds,
        token=rng.random(n) < token_rate,
        log_amount=log_amount,
        amount=_local_amount(log_amount, merchant_country),
        cross_border=issuer_country != merchant_country,
        card_key=_card_key(card, t),
    )


def _pick_merchants(rng: np.random.Generator, world: World, issuer_country: Array) -> Array:
    m = world.merchants
    domestic_share = np.array([c.domestic_share for c in tables.COUNTRIES])
    domestic = rng.random(issuer_country.size) < domestic_share[issuer_country]
    out = np.empty(issuer_country.size, dtype=np.int64)
    for ci in range(N_COUNTRIES):
        home = m.country == ci
        for mask, pool in ((domestic, home), (~domestic, ~home)):
            rows = np.flatnonzero(mask & (issuer_country == ci))
            candidates = np.flatnonzero(pool)
            weights = m.volume[candidates]
            out[rows] = rng.choice(candidates, rows.size, p=weights / weights.sum())
    return out


def _channels(rng: np.random.Generator, world: World, merchant: Array) -> Array:
    mixes = np.cumsum(np.array([m.channels for m in tables.MCCS]), axis=1)
    mixes /= mixes[:, -1:]
    cum = mixes[world.merchants.mcc[merchant]]
    return (rng.random(merchant.size)[:, None] > cum).sum(axis=1)


def _times(
    rng: np.random.Generator,
    channel: Array,
    issuer_country: Array,
    merchant_country: Array,
    days: int,
) -> Array:
    """UTC hours: cardholders pay by their local clock; recurring bills at 02-06 merchant time."""
    n = channel.size
    day = rng.integers(0, days, n).astype(float)
    diurnal = np.array(tables.DIURNAL) / np.sum(tables.DIURNAL)
    local = rng.choice(24, n, p=diurnal) + rng.random(n)
    recurring = channel == 1
    local[recurring] = rng.uniform(2.0, 6.0, int(recurring.sum()))
    tz = np.where(recurring, TZ[merchant_country], TZ[issuer_country])
    return np.mod(day * 24.0 + local - tz, days * 24.0)


def _three_ds(rng: np.random.Generator, world: World, merchant: Array, channel: Array) -> Array:
    customer_present = (channel == 0) | (channel == 2)
    with_3ds = customer_present & (rng.random(merchant.size) < world.merchants.three_ds[merchant])
    challenge = rng.random(merchant.size) < 0.3
    return np.where(with_3ds, np.where(challenge, 2, 1), 0)


def _local_amount(log_amount: Array, merchant_country: Array) -> Array:
    local = np.exp(log_amount) * FX[merchant_country]
    zero_decimal = np.array([c.currency in tables.ZERO_DECIMAL for c in tables.COUNTRIES])[
        merchant_country
    ]
    rounded = np.where(zero_decimal, np.round(local), np.round(local, 2))
    return np.maximum(rounded, np.where(zero_decimal, 1.0, 0.5))


def _card_key(card: Array, t: Array) -> Array:
    """Sorted key card * span + time, so a searchsorted finds a card's attempts in a window."""
    return np.sort(card.astype(np.float64) * 1e6 + t)


def card_attempts_before(pay: Payments, idx: Array, t: Array) -> Array:
    """Number of first attempts of each payment's card in the 24 h before ``t`` (excluded)."""
    base = pay.card[idx].astype(np.float64) * 1e6
    hi = np.searchsorted(pay.card_key, base + t, side="left")
    lo = np.searchsorted(pay.card_key, base + t - VELOCITY_WINDOW_H, side="left")
    return hi - lo
