"""A second, independent generator of contract data: the model must work on it too.

Deliberately unlike ``approvals.simulate``: other names and codes, a latent per-card state that
drifts over time (an AR(1) "financial health" no feature observes directly), issuer x route and
issuer x context interactions drawn at random, retries at random delays, and a truth column.
Run as a module to measure the model against this generator's oracle::

    uv run --frozen --all-extras python -m tests.approvals.alt_generator --payments 200000
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

COUNTRIES = np.array(["US", "GB", "DE", "FR", "BR", "MX", "JP", "AU", "IN", "ES"])
MCCS = np.array(["5411", "5812", "5999", "4111", "7995", "5732", "4814", "5968", "4511"])
ROUTES = np.array(["acq-a", "acq-b", "acq-c", "acq-d", "acq-e"])
SOFT = np.array(["05", "51", "61", "91", "96"])
HARD = np.array(["14", "41", "43", "57", "04"])


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _world(rng: np.random.Generator, n_bins: int, n_merchants: int, n_cards: int) -> dict:
    bins = np.array(
        [
            f"{d}{i:06d}"[:8]
            for d, i in zip(
                rng.choice(["4", "5", "3"], n_bins), rng.integers(0, 10**6, n_bins), strict=True
            )
        ]
    )
    return {
        "bins": bins,
        "bin_country": rng.integers(0, len(COUNTRIES), n_bins),
        "bin_base": rng.normal(2.0, 0.7, n_bins),
        "bin_route": rng.normal(0, 0.45, (n_bins, len(ROUTES))),
        "bin_token": rng.normal(0.3, 0.3, n_bins),
        "bin_3ds": rng.normal(0.1, 0.4, n_bins),
        "bin_mcc": rng.normal(0, 0.35, (n_bins, len(MCCS))),
        "merchant_country": rng.integers(0, len(COUNTRIES), n_merchants),
        "merchant_mcc": rng.integers(0, len(MCCS), n_merchants),
        "merchant_routes": np.argsort(rng.random((n_merchants, len(ROUTES))), axis=1)[:, :3],
        "merchant_base": rng.normal(0, 0.3, n_merchants),
        "card_bin": rng.zipf(1.3, n_cards) % n_bins,
        "card_type": rng.choice(["credit", "debit", "prepaid"], n_cards, p=[0.5, 0.4, 0.1]),
        "card_spend": rng.normal(3.5, 0.8, n_cards),
        "card_latent0": rng.normal(0, 0.9, n_cards),
    }  # fmt: skip


def generate(payments: int, seed: int = 0, days: int = 45) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Labelled attempts (contract columns) and their true probabilities."""
    rng = np.random.default_rng(seed)
    w = _world(rng, 300, 1500, max(payments // 5, 100))
    n = payments
    card = rng.zipf(1.2, n) % len(w["card_bin"])
    merchant = rng.integers(0, 1500, n)
    t = np.sort(rng.uniform(0, days * 86400, n))
    b = w["card_bin"][card]
    # latent card health drifts: AR(1) in days, never observed
    drift = np.sin(t / 86400 / 7 + card) * 0.6
    latent = w["card_latent0"][card] + drift
    amount = np.round(np.exp(w["card_spend"][card] + rng.normal(0, 0.9, n)), 2)
    token = rng.random(n) < 0.35
    three = rng.choice(["none", "frictionless", "challenge"], n, p=[0.6, 0.3, 0.1])
    channel = rng.choice(["ecommerce", "recurring", "in_app", "moto"], n, p=[0.6, 0.2, 0.15, 0.05])
    route_slot = np.where(rng.random(n) < 0.7, 0, rng.integers(1, 3, n))
    route = w["merchant_routes"][merchant, route_slot]
    mcc = w["merchant_mcc"][merchant]
    cross = w["merchant_country"][merchant] != w["bin_country"][b]

    def logit_at(route_idx: np.ndarray, extra: np.ndarray) -> np.ndarray:
        return (
            w["bin_base"][b] + w["bin_route"][b, route_idx] + w["merchant_base"][merchant]
            + w["bin_mcc"][b, mcc] + latent - 0.45 * cross
            - 0.35 * np.clip(np.log(amount) - w["card_spend"][card], 0, None)
            + token * w["bin_token"][b] + (three != "none") * w["bin_3ds"][b]
            + np.select([channel == "recurring", channel == "moto"], [0.4, -0.6], 0.0)
            - 0.6 * (w["card_type"][card] == "prepaid") + extra
        )  # fmt: skip

    p1 = sigmoid(logit_at(route, 0.0))
    ok1 = rng.random(n) < p1
    frames = [_frame(w, card, merchant, t, b, amount, token, three, channel, route, mcc,
                     np.ones(n, int), np.full(n, None), ok1, rng, np.arange(n))]  # fmt: skip
    truths = [p1]
    retry = (~ok1) & (rng.random(n) < 0.55)
    idx = np.flatnonzero(retry)
    code1 = frames[0]["response_code"].to_numpy()[idx]
    hard = np.isin(code1, HARD)
    delay = rng.choice([60, 3600, 86400, 3 * 86400], idx.size)
    route2 = np.where(
        rng.random(idx.size) < 0.5, route[idx], w["merchant_routes"][merchant[idx], 1]
    )
    bump = np.where(np.isin(code1, ["91", "96"]) & (route2 != route[idx]), 1.2, -0.9)
    bump = bump + np.where(code1 == "51", np.log1p(delay / 86400) * 0.6 - 0.8, 0)
    sub = _Sub(idx)
    p2 = np.where(hard, 0.0, sigmoid(sub.logit(logit_at, route, route2, bump)))
    ok2 = rng.random(idx.size) < p2
    frames.append(_frame(w, card[idx], merchant[idx], t[idx] + delay, b[idx], amount[idx],
                         token[idx], three[idx], channel[idx], route2, mcc[idx],
                         np.full(idx.size, 2), code1, ok2, rng, idx))  # fmt: skip
    truths.append(p2)
    data = pd.concat(frames, ignore_index=True)
    data["attempt_id"] = [f"x{i}" for i in range(len(data))]
    truth = pd.DataFrame({"attempt_id": data["attempt_id"], "p_true": np.concatenate(truths)})
    order = np.argsort(data["event_time"].to_numpy(), kind="stable")
    return data.iloc[order].reset_index(drop=True), truth


class _Sub:
    """Evaluates the logit of the retried payments only (indexing every array by ``idx``)."""

    def __init__(self, idx: np.ndarray) -> None:
        self.idx = idx

    def logit(self, fn, route: np.ndarray, route2: np.ndarray, bump: np.ndarray) -> np.ndarray:
        full_route = route.copy()
        full_route[self.idx] = route2
        extra = np.zeros(route.size)
        extra[self.idx] = bump
        return fn(full_route, extra)[self.idx]


def _frame(w, card, merchant, t, b, amount, token, three, channel, route, mcc, attempt, prev,
           ok, rng, payment) -> pd.DataFrame:  # fmt: skip
    n = len(card)
    decline = np.where(rng.random(n) < 0.1, rng.choice(HARD, n), rng.choice(SOFT, n))
    start = np.datetime64("2026-03-01T00:00:00", "us")
    return pd.DataFrame({
        "payment_id": [f"y{i}" for i in payment],
        "event_time": start + (t * 1e6).astype("timedelta64[us]"),
        "merchant_id": [f"mer{m}" for m in merchant],
        "mcc": MCCS[mcc],
        "merchant_country": COUNTRIES[w["merchant_country"][merchant]],
        "amount": amount,
        "currency": "USD",
        "card_fingerprint": [f"fp{c}" for c in card],
        "card_bin": w["bins"][b],
        "card_brand": _brand(w["bins"][b]),
        "card_type": w["card_type"][card],
        "issuer_country": COUNTRIES[w["bin_country"][b]],
        "channel": channel,
        "three_ds": three,
        "network_token": token,
        "route_id": ROUTES[route],
        "attempt_number": attempt,
        "previous_response_code": prev,
        "approved": ok,
        "response_code": np.where(ok, "00", decline),
    })  # fmt: skip


def _brand(bins: np.ndarray) -> np.ndarray:
    first = np.array([b[0] for b in bins])
    return np.select([first == "4", first == "5"], ["visa", "mastercard"], "amex")


RAW_CATEGORICAL = ("card_bin", "merchant_id", "mcc", "merchant_country", "issuer_country",
                   "card_brand", "card_type", "channel", "three_ds", "route_id",
                   "previous_response_code")  # fmt: skip


def raw_baseline(data: pd.DataFrame, test_rows: int) -> np.ndarray:
    """Plain LightGBM on the raw contract columns (the baseline the features must beat)."""
    import lightgbm as lgb

    frame = pd.DataFrame({c: data[c].astype("category") for c in RAW_CATEGORICAL})
    frame["amount"] = data["amount"].to_numpy()
    frame["attempt_number"] = data["attempt_number"].to_numpy()
    frame["network_token"] = data["network_token"].astype(int).to_numpy()
    frame["hour"] = data["event_time"].dt.hour.to_numpy()
    y = data["approved"].astype(int).to_numpy()
    cut, valid = len(data) - test_rows, int((len(data) - test_rows) * 0.85)
    params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 63,
              "min_data_in_leaf": 100, "verbosity": -1, "seed": 7}  # fmt: skip
    train_set = lgb.Dataset(frame.iloc[:valid], y[:valid])
    valid_set = lgb.Dataset(frame.iloc[valid:cut], y[valid:cut], reference=train_set)
    booster = lgb.train(params, train_set, 2000, valid_sets=[valid_set],
                        callbacks=[lgb.early_stopping(50, verbose=False)])  # fmt: skip
    return np.asarray(booster.predict(frame.iloc[cut:]))


def main() -> None:
    """Train on this generator's data and report the model's log loss against its oracle."""
    from approvals.contract import validate_frame
    from approvals.model import metrics
    from approvals.model.train import TrainConfig, train

    parser = argparse.ArgumentParser()
    parser.add_argument("--payments", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--config", type=str, default="{}", help="TrainConfig fields as JSON")
    args = parser.parse_args()
    start = time.monotonic()
    data, truth = generate(args.payments, args.seed)
    data = validate_frame(data, labels=True)
    result = train(data, TrainConfig(**json.loads(args.config)))
    oracle = truth.set_index("attempt_id")["p_true"].reindex(result.test["attempt_id"]).to_numpy()
    y = result.test["approved"].to_numpy().astype(float)
    print(f"payments={args.payments} attempts={len(data)} test={len(y)} "
          f"log_loss={metrics.log_loss(y, result.test_p):.4f} "
          f"oracle={metrics.log_loss(y, oracle):.4f} "
          f"ratio={metrics.oracle_ratio(y, result.test_p, oracle):.4f} "
          f"ece={metrics.ece(y, result.test_p):.4f} ({time.monotonic() - start:.0f}s)")  # fmt: skip
    sorted_data = data.sort_values("event_time", kind="stable").reset_index(drop=True)
    raw = raw_baseline(sorted_data, len(y))
    print(f"plain LightGBM on raw columns: ratio={metrics.oracle_ratio(y, raw, oracle):.4f} "
          f"ece={metrics.ece(y, raw):.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
