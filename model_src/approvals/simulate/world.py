"""The static, seeded population: issuer banks and their BINs, merchants, cards, outages.

Everything here is drawn once per seed, before any payment happens. Arrays are indexed by the
entity's position (bank ``b``, BIN ``i``, merchant ``m``, card ``c``, route ``r``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from approvals.simulate import tables

Array = np.ndarray
N_COUNTRIES = len(tables.COUNTRIES)
N_ROUTES = len(tables.ROUTES)
COUNTRY_INDEX = {c.code: i for i, c in enumerate(tables.COUNTRIES)}
REGION_OF = np.array([c.region for c in tables.COUNTRIES])
ROUTE_COUNTRY = np.array([COUNTRY_INDEX[r.country] for r in tables.ROUTES])
MAX_ROUTES = 4


@dataclass(frozen=True)
class Banks:
    """Issuer banks: how each one approves."""

    country: Array  # country index
    base: Array  # bank effect on the approval logit
    cross_border: Array  # penalty when the merchant is abroad (positive number)
    three_ds: Array  # strength of 3-D Secure (frictionless; challenge adds more)
    token: Array  # strength of network tokens
    night: Array  # penalty at the cardholder's night hours
    blocks_risky: Array  # refuses gambling / quasi-cash outright (57)
    affinity: Array  # (bank, route) effect on the approval logit


@dataclass(frozen=True)
class Bins:
    """BINs: the issuer identification numbers cards carry."""

    bin: Array  # strings of 6 or 8 digits
    bank: Array
    country: Array  # issuer country index (the bank's)
    brand: Array  # index into tables.BRANDS
    card_type: Array  # index into tables.CARD_TYPES
    effect: Array
    volume: Array  # relative issuing volume (Zipf)


@dataclass(frozen=True)
class Merchants:
    """Merchants: where they sell, what, and through which routes."""

    country: Array
    mcc: Array  # index into tables.MCCS
    effect: Array
    volume: Array
    three_ds: Array  # share of customer-initiated payments with 3-D Secure
    token: Array  # share of payments with a network token (when the brand allows)
    routes: Array  # (merchant, MAX_ROUTES) route indices, -1 padded; column 0 is primary


@dataclass(frozen=True)
class Cards:
    """Cards: their BIN, spending habits and latent financial state."""

    bin: Array
    activity: Array  # relative number of payments over the period
    log_spend: Array  # log of the usual amount in US dollars
    log_balance: Array  # log of the usual available balance in US dollars
    latent: Array  # small per-card effect on the approval logit
    fragility: Array  # multiplier of the hazard of the card dying (lost, stolen, closed)


@dataclass(frozen=True)
class Outages:
    """Bursts of 91/96: ``kind`` 0 = route (96), 1 = issuer (91), 2 = issuer x route (91)."""

    kind: Array
    bank: Array  # -1 for route outages
    route: Array  # -1 for issuer-wide outages
    start: Array  # hours since the start of the period
    end: Array
    severity: Array  # share of attempts declined while it lasts


@dataclass(frozen=True)
class World:
    """The whole static population."""

    banks: Banks
    bins: Bins
    merchants: Merchants
    cards: Cards
    outages: Outages


def build_world(rng: np.random.Generator, n_payments: int, days: int) -> World:
    """Draw the population for a data set of ``n_payments`` over ``days`` days.

    Args:
        rng: the seeded generator (consumed in a fixed order, so the world is deterministic).
        n_payments: number of payments the world must serve; sizes merchants and cards.
        days: length of the period, for the outage schedule.

    Returns:
        The world.
    """
    banks = _banks(rng, 170)
    bins = _bins(rng, banks, 640)
    merchants = _merchants(rng, int(np.clip(n_payments // 250, 150, 4000)))
    cards = _cards(rng, bins, max(30, n_payments // 6))
    outages = _outages(rng, banks, days)
    return World(banks, bins, merchants, cards, outages)


def _shares(attr: str) -> Array:
    weights = np.array([getattr(c, attr) for c in tables.COUNTRIES], dtype=float)
    return weights / weights.sum()


def _zipf(rng: np.random.Generator, n: int, exponent: float) -> Array:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return rng.permutation(weights / weights.sum())


def _banks(rng: np.random.Generator, n: int) -> Banks:
    country = np.concatenate(
        [
            np.arange(N_COUNTRIES),
            rng.choice(N_COUNTRIES, n - N_COUNTRIES, p=_shares("issuer_share")),
        ]
    )
    us = country == COUNTRY_INDEX["US"]
    return Banks(
        country=country,
        base=rng.normal(0.0, 0.4, n),
        cross_border=rng.uniform(0.3, 0.9, n),
        three_ds=rng.normal(0.35, 0.25, n),
        token=rng.normal(0.25, 0.15, n),
        night=rng.uniform(0.0, 0.5, n),
        blocks_risky=rng.random(n) < np.where(us, 0.5, 0.15),
        affinity=rng.normal(0.0, 0.2, (n, N_ROUTES)),
    )


def _bins(rng: np.random.Generator, banks: Banks, n: int) -> Bins:
    bank = np.concatenate(
        [np.arange(len(banks.base)), rng.integers(0, len(banks.base), n - len(banks.base))]
    )
    country = banks.country[bank]
    brand = np.empty(n, dtype=np.int64)
    card_type = np.empty(n, dtype=np.int64)
    for ci, c in enumerate(tables.COUNTRIES):
        rows = np.flatnonzero(country == ci)
        brand[rows] = rng.choice(
            len(tables.BRANDS), rows.size, p=tables.BRAND_MIX.get(c.code, tables.DEFAULT_BRAND_MIX)
        )
        card_type[rows] = rng.choice(
            3, rows.size, p=tables.TYPE_MIX.get(c.code, tables.DEFAULT_TYPE_MIX)
        )
    card_type[brand == tables.BRANDS.index("amex")] = 0  # amex issues credit cards
    return Bins(
        bin=_bin_numbers(rng, brand),
        bank=bank,
        country=country,
        brand=brand,
        card_type=card_type,
        effect=rng.normal(0.0, 0.15, n),
        volume=_zipf(rng, n, 1.05),
    )


def _bin_numbers(rng: np.random.Generator, brand: Array) -> Array:
    """Unique BIN strings whose leading digits match the brand (4 visa, 51-55/2221-2720 mc, ...)."""
    out = np.empty(brand.size, dtype=object)
    todo = np.arange(brand.size)
    while todo.size:
        out[todo] = [_one_bin(rng, int(b)) for b in brand[todo]]
        _, first = np.unique(out.astype(str), return_index=True)
        dup = np.ones(brand.size, dtype=bool)
        dup[first] = False
        todo = np.flatnonzero(dup)
    return out.astype(str)


def _one_bin(rng: np.random.Generator, brand: int) -> str:
    name = tables.BRANDS[brand]
    long = rng.random() < 0.3 and name in {"visa", "mastercard"}
    width = 8 if long else 6
    if name == "visa":
        head = "4"
    elif name == "mastercard":
        head = str(rng.integers(51, 56)) if rng.random() < 0.8 else str(rng.integers(2221, 2721))
    elif name == "amex":
        head = str(rng.choice(["34", "37"]))
    elif name == "discover":
        head = str(rng.choice(["6011", "65"]))
    elif name == "jcb":
        head = str(rng.integers(3528, 3590))
    elif name == "unionpay":
        head = "62"
    else:
        head = "81"
    tail = rng.integers(0, 10, width - len(head))
    return head + "".join(map(str, tail))


def _merchants(rng: np.random.Generator, n: int) -> Merchants:
    country = np.concatenate(
        [
            np.arange(N_COUNTRIES),
            rng.choice(N_COUNTRIES, n - N_COUNTRIES, p=_shares("merchant_share")),
        ]
    )
    mcc_share = np.array([m.share for m in tables.MCCS])
    adoption = np.array([c.three_ds for c in tables.COUNTRIES])[country]
    return Merchants(
        country=country,
        mcc=rng.choice(len(tables.MCCS), n, p=mcc_share / mcc_share.sum()),
        effect=rng.normal(0.0, 0.25, n),
        volume=_zipf(rng, n, 1.0),
        three_ds=np.clip(adoption * rng.uniform(0.5, 1.25, n), 0.0, 0.95),
        token=rng.uniform(0.0, 0.8, n),
        routes=_merchant_routes(rng, country),
    )


def _merchant_routes(rng: np.random.Generator, country: Array) -> Array:
    """2-4 routes per merchant; the primary acquires in its country or region when it can."""
    routes = np.full((country.size, MAX_ROUTES), -1, dtype=np.int64)
    ids = [r.route_id for r in tables.ROUTES]
    global_routes = [ids.index(g) for g in tables.GLOBAL_ROUTES]
    for m, ci in enumerate(country):
        domestic = list(np.flatnonzero(ci == ROUTE_COUNTRY))
        regional = list(np.flatnonzero(REGION_OF[ROUTE_COUNTRY] == REGION_OF[ci]))
        primary = int(rng.choice(domestic or regional or global_routes))
        others = [r for r in range(N_ROUTES) if r != primary]
        weights = np.array([3.0 if r in global_routes or r in regional else 1.0 for r in others])
        extra = rng.choice(
            others, int(rng.integers(1, 4)), replace=False, p=weights / weights.sum()
        )
        chosen = [primary, *map(int, extra)]
        routes[m, : len(chosen)] = chosen
    return routes


def _cards(rng: np.random.Generator, bins: Bins, n: int) -> Cards:
    """Cards drawn by BIN volume, with each issuer country getting its share of cards."""
    per_country = np.bincount(bins.country, weights=bins.volume, minlength=N_COUNTRIES)
    p = bins.volume * _shares("issuer_share")[bins.country] / per_country[bins.country]
    bin_idx = rng.choice(bins.bin.size, n, p=p / p.sum())
    ctype = bins.card_type[bin_idx]
    wealth = np.array([c.wealth for c in tables.COUNTRIES])[bins.country[bin_idx]]
    log_spend = (
        np.log(40.0) + wealth + np.take(tables.CARD_TYPE_SPEND, ctype) + rng.normal(0, 0.6, n)
    )
    ratio_mean, ratio_sd = np.array(tables.BALANCE_RATIO).T
    log_ratio = rng.normal(ratio_mean[ctype], ratio_sd[ctype])
    return Cards(
        bin=bin_idx,
        activity=rng.gamma(0.8, 1.0, n),
        log_spend=log_spend,
        log_balance=log_spend + log_ratio,
        latent=rng.normal(0.0, 0.2, n),
        fragility=rng.lognormal(-0.08, 0.4, n),
    )


def _outages(rng: np.random.Generator, banks: Banks, days: int) -> Outages:
    """Route-wide, issuer-wide and issuer x route bursts lasting minutes to hours."""
    hours = days * 24.0
    n_banks = banks.base.size
    n_route = rng.poisson(5.0 * days / 30, N_ROUTES)
    n_bank = rng.poisson(0.6 * days / 30, n_banks)
    n_pair = rng.poisson(0.5 * days / 30, (n_banks, N_ROUTES))
    route = np.concatenate(
        [
            np.repeat(np.arange(N_ROUTES), n_route),
            np.full(n_bank.sum(), -1),
            np.repeat(np.tile(np.arange(N_ROUTES), n_banks), n_pair.ravel()),
        ]
    )
    bank = np.concatenate(
        [
            np.full(n_route.sum(), -1),
            np.repeat(np.arange(n_banks), n_bank),
            np.repeat(np.repeat(np.arange(n_banks), N_ROUTES), n_pair.ravel()),
        ]
    )
    kind = np.concatenate(
        [np.full(n_route.sum(), 0), np.full(n_bank.sum(), 1), np.full(n_pair.sum(), 2)]
    )
    start = rng.uniform(0.0, hours, kind.size)
    duration = np.clip(rng.lognormal(np.log(1.5), 0.9, kind.size), 5 / 60, 12.0)
    return Outages(
        kind=kind,
        bank=bank,
        route=route,
        start=start,
        end=start + duration,
        severity=rng.uniform(0.4, 0.95, kind.size),
    )
