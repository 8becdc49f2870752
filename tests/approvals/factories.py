"""Small contract-conforming data sets for tests, independent of the project's simulator."""

from __future__ import annotations

import numpy as np
import pandas as pd

DECLINES = np.array(["05", "51", "91", "14", "54", "61"])


def random_attempts(n: int = 2000, seed: int = 0, days: int = 20) -> pd.DataFrame:
    """Labelled attempts with a simple known structure (BIN, route, token effects)."""
    rng = np.random.default_rng(seed)
    bins = np.array([f"4{i:05d}" for i in range(25)] + [f"5{i:05d}" for i in range(15)])
    routes = np.array(["r_us", "r_eu", "r_gb"])
    bin_idx = rng.integers(0, len(bins), n)
    route_idx = rng.integers(0, len(routes), n)
    token = rng.random(n) < 0.4
    logit = 1.5 + 0.05 * (bin_idx % 7) - 0.6 * (route_idx == 2) + 0.5 * token
    approved = rng.random(n) < 1 / (1 + np.exp(-logit))
    start = np.datetime64("2026-01-01T00:00:00", "us")
    seconds = np.sort(rng.integers(0, days * 86400, n))
    attempt_number = np.where(rng.random(n) < 0.1, 2, 1)
    prev = np.where(attempt_number == 2, rng.choice(DECLINES, n), None)
    return pd.DataFrame(
        {
            "attempt_id": [f"a{i}" for i in range(n)],
            "payment_id": [f"p{i}" for i in range(n)],
            "event_time": start + seconds.astype("timedelta64[s]"),
            "merchant_id": rng.choice(["m1", "m2", "m3", "m4"], n),
            "mcc": rng.choice(["5411", "5812", "7995"], n),
            "merchant_country": rng.choice(["US", "GB", "DE"], n),
            "amount": np.round(rng.lognormal(3, 1, n), 2),
            "currency": "USD",
            "card_fingerprint": [f"c{i}" for i in rng.integers(0, n // 4, n)],
            "card_bin": bins[bin_idx],
            "card_brand": np.where(np.char.startswith(bins[bin_idx], "4"), "visa", "mastercard"),
            "card_type": rng.choice(["credit", "debit", "prepaid"], n),
            "issuer_country": rng.choice(["US", "GB", "DE"], n),
            "channel": rng.choice(["ecommerce", "recurring"], n),
            "three_ds": rng.choice(["none", "frictionless", "challenge"], n),
            "network_token": token,
            "route_id": routes[route_idx],
            "attempt_number": attempt_number,
            "previous_response_code": prev,
            "approved": approved,
            "response_code": np.where(approved, "00", rng.choice(DECLINES, n)),
        }
    )
