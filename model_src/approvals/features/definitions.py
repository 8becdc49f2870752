"""Feature definitions: the one place that says what the model sees.

Both the offline DuckDB SQL (:mod:`approvals.features.offline`) and the online Redis reader
read these definitions, so a feature is computed the same way in training and in serving.

Aggregates are counted per *family* (an entity key such as issuer BIN x route) over *windows*.
A window of length W with tile size s covers, for an attempt at time t, every labelled attempt
of the same key with ``tile_start(t) - W <= time < t``, where ``tile_start(t)`` is t rounded
down to a multiple of s. Aligning the window start to tiles is what lets the online store keep
one counter per tile and still answer exactly what the offline SQL computes.
"""

from __future__ import annotations

from dataclasses import dataclass

# Counters kept per family and time point. Each is a sum over labelled attempts.
COUNTERS: dict[str, str] = {
    "n": "1",
    "a": "CAST(approved AS INTEGER)",
    "hard": "CAST(is_hard AS INTEGER)",
    "outage": "CAST(is_outage AS INTEGER)",
    "nsf": "CAST(is_nsf AS INTEGER)",
    "slog": "ln(1 + amount)",
    "aslog": "CASE WHEN approved THEN ln(1 + amount) ELSE 0 END",
    "nsfslog": "CASE WHEN response_code = '51' THEN ln(1 + amount) ELSE 0 END",
}

MINUTE = 60
HOUR = 3600
DAY = 86400


@dataclass(frozen=True)
class Window:
    """A time window with the tile size its start is aligned to (seconds; 0 = lifetime)."""

    name: str
    seconds: int
    tile: int

    @property
    def lifetime(self) -> bool:
        """True for the window that covers all history before the attempt."""
        return self.seconds == 0


LIFETIME = Window("life", 0, 0)
W1H = Window("1h", HOUR, 5 * MINUTE)
W24H = Window("24h", DAY, HOUR)
W7D = Window("7d", 7 * DAY, 6 * HOUR)


@dataclass(frozen=True)
class Family:
    """An entity key over which labelled outcomes are counted.

    Attributes:
        name: short name used in feature names (``bin_route_1h_rate``).
        keys: attempt columns that form the key.
        windows: windows counted for this key.
        counters: which of :data:`COUNTERS` the model uses for this key.
        parent: family whose lifetime rate is the prior this family's rates shrink toward
            (``None``: the global approval rate of the training data).
        strength: pseudo-count of the prior in the shrunk rate (a+m*prior)/(n+m).
    """

    name: str
    keys: tuple[str, ...]
    windows: tuple[Window, ...]
    counters: tuple[str, ...]
    parent: str | None
    strength: float


FAMILIES: tuple[Family, ...] = (
    Family("bin", ("card_bin",), (W24H, W7D, LIFETIME), ("n", "a", "outage"), None, 30.0),
    Family(
        "bin_route",
        ("card_bin", "route_id"),
        (W1H, W24H, W7D, LIFETIME),
        ("n", "a", "outage"),
        "bin",
        20.0,
    ),
    Family("route", ("route_id",), (W1H, W24H, LIFETIME), ("n", "a", "outage"), None, 50.0),
    Family(
        "country_route", ("issuer_country", "route_id"), (W7D, LIFETIME), ("n", "a"), None, 30.0
    ),
    Family("merchant", ("merchant_id",), (W7D, LIFETIME), ("n", "a"), None, 30.0),
    Family(
        "bin_ctx",
        ("card_bin", "channel", "three_ds", "network_token"),
        (LIFETIME,),
        ("n", "a"),
        "bin",
        20.0,
    ),
    Family("bin_mcc", ("card_bin", "mcc"), (LIFETIME,), ("n", "a"), "bin", 20.0),
    Family("merchant_bin", ("merchant_id", "card_bin"), (LIFETIME,), ("n", "a"), "bin", 10.0),
    Family(
        "card",
        ("card_fingerprint",),
        (W24H, W7D, LIFETIME),
        ("n", "a", "hard", "nsf", "slog", "aslog", "nsfslog"),
        "bin",
        3.0,
    ),
)
FAMILY_BY_NAME = {f.name: f for f in FAMILIES}

# Categorical columns handed to LightGBM as native categoricals (vocabulary fixed at training).
CATEGORICALS: tuple[str, ...] = (
    "card_brand",
    "card_type",
    "channel",
    "three_ds",
    "route_id",
    "mcc",
    "issuer_country",
    "merchant_country",
    "currency",
    "prev_code",
    "prev_class",
    "card_last_code",
    "merchant_advice_code",
)

# UTC offsets (hours, standard time) used for the local hour of day, by merchant country.
# Daylight saving is ignored on purpose: one hour of drift does not change the signal.
UTC_OFFSET_HOURS: dict[str, float] = {
    "US": -5, "CA": -5, "MX": -6, "BR": -3, "AR": -3, "CL": -4, "CO": -5, "PE": -5,
    "GB": 0, "IE": 0, "PT": 0, "ES": 1, "FR": 1, "DE": 1, "IT": 1, "NL": 1, "BE": 1, "AT": 1,
    "CH": 1, "SE": 1, "NO": 1, "DK": 1, "PL": 1, "CZ": 1, "HU": 1, "FI": 2, "GR": 2, "RO": 2,
    "TR": 3, "IL": 2, "AE": 4, "SA": 3, "EG": 2, "ZA": 2, "NG": 1, "KE": 3, "IN": 5.5,
    "PK": 5, "BD": 6, "TH": 7, "VN": 7, "ID": 7, "MY": 8, "SG": 8, "PH": 8, "CN": 8, "HK": 8,
    "TW": 8, "KR": 9, "JP": 9, "AU": 10, "NZ": 12, "RU": 3, "UA": 2,
}  # fmt: skip


def window_features(family: Family) -> list[str]:
    """Names of the raw counter columns the offline SQL produces for a family."""
    return [f"{family.name}_{w.name}_{c}" for w in family.windows for c in family.counters]


def all_window_features() -> list[str]:
    """Raw counter columns of every family, in a stable order."""
    return [name for family in FAMILIES for name in window_features(family)]


def max_window_seconds() -> int:
    """Longest finite window plus its tile: how much recent history the state must keep."""
    return max(w.seconds + w.tile for f in FAMILIES for w in f.windows if not w.lifetime)
