"""Static reference tables of the simulated payments world: countries, routes, MCCs, brands.

These are the fixed parts of the world (what a payments engineer would recognise); the seeded,
random parts (issuer banks, BINs, merchants, cards) are drawn from them in ``world.py``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Country:
    """A country that has both issuers and merchants."""

    code: str
    currency: str
    tz_hours: float  # offset of local time from UTC
    usd_fx: float  # units of local currency per US dollar
    region: str
    approval: float  # issuer-country effect on the approval logit
    merchant_share: float
    issuer_share: float
    wealth: float  # shift of the log usual spend
    three_ds: float  # 3-D Secure adoption of e-commerce merchants (SCA in Europe)
    domestic_share: float  # share of a cardholder's payments at domestic merchants


COUNTRIES: tuple[Country, ...] = (
    Country("US", "USD", -5, 1.0, "NA", 0.15, 0.30, 0.30, 0.2, 0.10, 0.90),
    Country("CA", "CAD", -5, 1.36, "NA", 0.10, 0.05, 0.05, 0.1, 0.15, 0.70),
    Country("MX", "MXN", -6, 17.0, "LATAM", -0.35, 0.04, 0.05, -0.4, 0.15, 0.75),
    Country("BR", "BRL", -3, 5.0, "LATAM", -0.45, 0.07, 0.08, -0.4, 0.20, 0.85),
    Country("GB", "GBP", 0, 0.79, "EU", 0.10, 0.12, 0.11, 0.2, 0.75, 0.80),
    Country("DE", "EUR", 1, 0.92, "EU", 0.10, 0.08, 0.08, 0.1, 0.70, 0.75),
    Country("FR", "EUR", 1, 0.92, "EU", 0.00, 0.07, 0.07, 0.1, 0.80, 0.75),
    Country("NL", "EUR", 1, 0.92, "EU", 0.15, 0.05, 0.04, 0.2, 0.70, 0.65),
    Country("ES", "EUR", 1, 0.92, "EU", -0.05, 0.04, 0.04, 0.0, 0.70, 0.75),
    Country("IT", "EUR", 1, 0.92, "EU", -0.10, 0.04, 0.04, 0.0, 0.70, 0.75),
    Country("JP", "JPY", 9, 150.0, "APAC", 0.00, 0.05, 0.05, 0.2, 0.30, 0.85),
    Country("AU", "AUD", 10, 1.52, "APAC", 0.10, 0.04, 0.04, 0.2, 0.25, 0.75),
    Country("SG", "SGD", 8, 1.34, "APAC", 0.05, 0.02, 0.02, 0.3, 0.40, 0.55),
    Country("IN", "INR", 5.5, 83.0, "APAC", -0.55, 0.03, 0.03, -1.0, 0.60, 0.85),
)

# Currencies quoted without minor units.
ZERO_DECIMAL = frozenset({"JPY"})


@dataclass(frozen=True)
class Route:
    """An acquirer/processor connection; issuers trust acquiring in their own country."""

    route_id: str
    country: str
    quality: float  # route effect on the approval logit


ROUTES: tuple[Route, ...] = (
    Route("acq_us_1", "US", 0.05),
    Route("acq_us_2", "US", -0.05),
    Route("acq_gb_1", "GB", 0.00),
    Route("acq_nl_1", "NL", 0.05),
    Route("acq_br_1", "BR", -0.05),
    Route("acq_jp_1", "JP", 0.00),
    Route("acq_sg_1", "SG", -0.05),
)
GLOBAL_ROUTES = ("acq_us_1", "acq_nl_1", "acq_gb_1")

# channel mixes: ecommerce, recurring, in_app, moto
RETAIL = (0.88, 0.02, 0.07, 0.03)
SUBSCRIPTION = (0.30, 0.65, 0.05, 0.00)
APP = (0.35, 0.05, 0.60, 0.00)
TRAVEL = (0.80, 0.00, 0.10, 0.10)
SERVICES = (0.60, 0.20, 0.00, 0.20)


@dataclass(frozen=True)
class Mcc:
    """A merchant category: its risk for issuers, typical ticket and channel mix."""

    code: str
    label: str
    risk: float  # effect on the approval logit
    amount_shift: float  # log multiplier of the cardholder's usual spend
    share: float
    channels: tuple[float, float, float, float]


MCCS: tuple[Mcc, ...] = (
    Mcc("5411", "grocery", 0.30, -0.3, 0.08, RETAIL),
    Mcc("5812", "restaurants", 0.25, -0.6, 0.06, RETAIL),
    Mcc("5999", "misc retail", 0.00, 0.0, 0.12, RETAIL),
    Mcc("5311", "department stores", 0.10, 0.3, 0.06, RETAIL),
    Mcc("5691", "clothing", 0.05, 0.3, 0.10, RETAIL),
    Mcc("5732", "electronics", -0.25, 1.2, 0.06, RETAIL),
    Mcc("5912", "drug stores", 0.20, -0.4, 0.04, RETAIL),
    Mcc("5942", "books", 0.15, -0.5, 0.03, RETAIL),
    Mcc("4121", "rideshare", 0.20, -0.5, 0.05, APP),
    Mcc("4511", "airlines", -0.30, 1.8, 0.04, TRAVEL),
    Mcc("7011", "hotels", -0.20, 1.4, 0.04, TRAVEL),
    Mcc("4722", "travel agencies", -0.35, 1.6, 0.03, TRAVEL),
    Mcc("4899", "streaming", 0.25, -1.0, 0.06, SUBSCRIPTION),
    Mcc("5968", "subscriptions", -0.25, -0.6, 0.04, SUBSCRIPTION),
    Mcc("7372", "software", 0.00, 0.3, 0.04, SUBSCRIPTION),
    Mcc("4814", "telecom", 0.20, 0.0, 0.03, SUBSCRIPTION),
    Mcc("5816", "digital games", -0.50, -0.8, 0.05, APP),
    Mcc("5818", "digital goods", -0.40, -0.7, 0.04, APP),
    Mcc("7995", "gambling", -1.00, 0.3, 0.03, RETAIL),
    Mcc("6051", "quasi-cash, crypto", -1.10, 1.0, 0.02, RETAIL),
    Mcc("8999", "professional services", 0.00, 0.9, 0.02, SERVICES),
)
BLOCKABLE_MCCS = frozenset({"7995", "6051"})  # some issuers refuse these outright (57)

BRANDS = ("visa", "mastercard", "amex", "discover", "jcb", "unionpay", "other")
BRAND_EFFECT = (0.0, 0.0, 0.05, -0.10, 0.0, -0.20, -0.20)
TOKEN_BRAND = (1.0, 1.0, 0.3, 0.2, 0.2, 0.1, 0.1)  # network-token availability by brand
BRAND_MIX: dict[str, tuple[float, ...]] = {
    "US": (0.50, 0.30, 0.12, 0.08, 0.0, 0.0, 0.0),
    "JP": (0.35, 0.20, 0.05, 0.0, 0.40, 0.0, 0.0),
    "SG": (0.45, 0.35, 0.10, 0.0, 0.0, 0.10, 0.0),
    "IN": (0.45, 0.35, 0.0, 0.0, 0.0, 0.0, 0.20),
}
DEFAULT_BRAND_MIX = (0.55, 0.38, 0.07, 0.0, 0.0, 0.0, 0.0)

CARD_TYPES = ("credit", "debit", "prepaid")
CARD_TYPE_EFFECT = (0.0, -0.10, -0.60)
CARD_TYPE_SPEND = (0.2, 0.0, -0.4)
BALANCE_RATIO = ((2.3, 0.9), (1.4, 1.0), (0.7, 0.9))  # log(balance / usual spend): mean, sd
TYPE_MIX: dict[str, tuple[float, float, float]] = {
    "BR": (0.35, 0.50, 0.15),
    "MX": (0.30, 0.50, 0.20),
    "IN": (0.25, 0.55, 0.20),
}
DEFAULT_TYPE_MIX = (0.50, 0.42, 0.08)

CHANNELS = ("ecommerce", "recurring", "in_app", "moto")
CHANNEL_EFFECT = (0.0, 0.40, 0.10, -0.50)
THREE_DS = ("none", "frictionless", "challenge")

# Relative volume by local hour of the cardholder (low at night, peaks at lunch and evening).
DIURNAL = (
    0.8, 0.5, 0.3, 0.2, 0.2, 0.3, 0.6, 1.2, 2.0, 2.6, 3.0, 3.3,
    3.6, 3.4, 3.1, 3.0, 3.1, 3.4, 3.9, 4.4, 4.6, 4.1, 3.0, 1.7,
)  # fmt: skip
