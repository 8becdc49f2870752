"""From simulation arrays to the contract's DataFrames (the only place that builds strings)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from approvals.contract import validate_frame
from approvals.simulate import tables
from approvals.simulate.dynamics import Model
from approvals.simulate.process import CODES, MACS

Array = np.ndarray
HEX = np.array(list("0123456789abcdef"))


def _arrow_ids(prefix: str, numbers: Array, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pa.array(numbers, pa.int64()).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _series(values: pa.Array) -> pd.Series:
    """A pandas string Series backed by the Arrow array (no Python objects)."""
    return pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([values])))


def ids(prefix: str, numbers: Array, width: int) -> pd.Series:
    """Identifiers such as ``p00000042`` built without a Python loop."""
    return _series(_arrow_ids(prefix, numbers, width))


def attempt_ids(idx: Array, attempt: Array) -> pd.Series:
    """``<payment_id>-<attempt_number>``."""
    number = pa.array(attempt, pa.int64()).cast(pa.string())
    return _series(pc.binary_join_element_wise(_arrow_ids("p", idx, 8), number, "-"))


def fingerprints(n_cards: int, seed: int) -> Array:
    """Stable, non-reversible card identifiers: 16 hex digits of a seeded 64-bit mix."""
    with np.errstate(over="ignore"):
        x = np.arange(n_cards, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    digits = ((x[:, None] >> shifts) & np.uint64(0xF)).astype(np.int64)
    return HEX[digits].view("<U16").ravel()


def _cat(codes: Array, labels: tuple[str, ...] | list[str] | Array | pd.Series) -> pd.Series:
    """Strings ``labels[codes]`` as an Arrow-backed Series (code -1 is missing)."""
    table = pa.array(np.asarray(labels, dtype=str), pa.string())
    picks = pa.array(codes, pa.int64(), mask=np.asarray(codes) < 0)
    return _series(table.take(picks))


def timestamps(start: datetime, hours: Array) -> pd.Series:
    """UTC timestamps ``hours`` after ``start`` (microsecond precision)."""
    micros = np.round(hours * 3.6e9).astype(np.int64)
    base = pd.Timestamp(start).as_unit("us")
    return pd.Series(base + pd.to_timedelta(micros, unit="us"))


def attempt_order(log: dict[str, Array]) -> Array:
    """Rows of the log by event time (ties by payment, then attempt number)."""
    return np.lexsort((log["attempt"], log["idx"], log["t"]))


def attempts_frame(model: Model, log: dict[str, Array], seed: int, start: datetime) -> pd.DataFrame:
    """The attempts in contract form, validated, sorted by event time."""
    world, pay = model.world, model.pay
    order = attempt_order(log)
    a = {k: v[order] for k, v in log.items()}
    i = a["idx"]
    card, merchant, bn = pay.card[i], pay.merchant[i], world.cards.bin[pay.card[i]]
    countries = [c.code for c in tables.COUNTRIES]
    currencies = [c.currency for c in tables.COUNTRIES]
    mccs = [m.code for m in tables.MCCS]
    frame = pd.DataFrame(
        {
            "attempt_id": attempt_ids(i, a["attempt"]),
            "payment_id": ids("p", i, 8),
            "event_time": timestamps(start, a["t"]),
            "merchant_id": _cat(merchant, ids("m", np.arange(world.merchants.mcc.size), 5)),
            "mcc": _cat(world.merchants.mcc[merchant], mccs),
            "merchant_country": _cat(pay.merchant_country[i], countries),
            "amount": pay.amount[i],
            "currency": _cat(pay.merchant_country[i], currencies),
            "card_fingerprint": _cat(card, fingerprints(world.cards.bin.size, seed)),
            "card_bin": _cat(bn, world.bins.bin),
            "card_brand": _cat(world.bins.brand[bn], tables.BRANDS),
            "card_type": _cat(world.bins.card_type[bn], tables.CARD_TYPES),
            "issuer_country": _cat(pay.issuer_country[i], countries),
            "channel": _cat(pay.channel[i], tables.CHANNELS),
            "three_ds": _cat(pay.three_ds[i], tables.THREE_DS),
            "network_token": pay.token[i],
            "route_id": _cat(a["route"], [r.route_id for r in tables.ROUTES]),
            "attempt_number": a["attempt"].astype(np.int64),
            "previous_response_code": _cat(a["previous"], CODES),
            "merchant_advice_code": _cat(a["mac"] - 1, MACS[1:]),
            "approved": a["code"] == CODES.index("00"),
            "response_code": _cat(a["code"], CODES),
        }
    )
    valid = validate_frame(frame, labels=True)
    valid["event_time"] = valid["event_time"].dt.tz_localize("UTC")
    return valid


def truth_frame(attempts: pd.DataFrame, log: dict[str, Array]) -> pd.DataFrame:
    """``attempt_id`` and the true approval probability, in the attempts' order."""
    p = log["p"][attempt_order(log)]
    return pd.DataFrame({"attempt_id": attempts["attempt_id"], "p_approve": p})


def routes_frame(table: dict[str, Array]) -> pd.DataFrame:
    """Counterfactual routing of first attempts."""
    return pd.DataFrame(
        {
            "attempt_id": attempt_ids(table["idx"], np.ones(table["idx"].size, np.int64)),
            "payment_id": ids("p", table["idx"], 8),
            "route_id": _cat(table["route"], [r.route_id for r in tables.ROUTES]),
            "p_approve": table["p"],
        }
    )


OUTAGE_KINDS = ("route", "issuer", "issuer_route")  # world.Outages.kind 0, 1, 2
OUTAGE_CODES = ("96", "91", "91")


def outages_frame(model: Model, start: datetime) -> pd.DataFrame:
    """The outage windows, by start time: what declined attempts 96 or 91, where and when.

    Columns: ``outage_id``, ``kind`` (``route``: every attempt on the route; ``issuer``:
    every attempt of the issuer's cards; ``issuer_route``: the issuer's cards on the route),
    ``response_code`` (96 or 91), ``route_id`` (null for issuer outages), ``issuer_id`` and
    ``card_bins`` (the issuer's BINs; null and empty for route outages), ``start_time`` and
    ``end_time`` (UTC; an attempt at ``start_time <= t < end_time`` is exposed) and
    ``severity`` (share of exposed attempts declined).
    """
    out, bins = model.world.outages, model.world.bins
    order = np.lexsort((np.arange(out.kind.size), out.start))
    bank = out.bank[order]
    by_bank = [bins.bin[bins.bank == b].tolist() for b in range(model.world.banks.base.size)]
    return pd.DataFrame(
        {
            "outage_id": ids("o", np.arange(order.size), 5),
            "kind": _cat(out.kind[order], OUTAGE_KINDS),
            "response_code": _cat(out.kind[order], OUTAGE_CODES),
            "route_id": _cat(out.route[order], [r.route_id for r in tables.ROUTES]),
            "issuer_id": _cat(bank, ids("i", np.arange(len(by_bank)), 4)),
            "card_bins": pd.Series([by_bank[b] if b >= 0 else [] for b in bank], dtype=object),
            "start_time": timestamps(start, out.start[order]),
            "end_time": timestamps(start, out.end[order]),
            "severity": out.severity[order],
        }
    )


def retries_frame(table: dict[str, Array]) -> pd.DataFrame:
    """Counterfactual second attempts of declined first attempts."""
    frame = routes_frame(table)
    frame.insert(3, "delay_hours", table["delay"])
    return frame
