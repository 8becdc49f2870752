"""The columns of the transactions contract, declared once (``shared/contracts/transactions.md``).

Every boundary reads this table: the vectorised validator (:mod:`approvals.contract.table`),
the file edge (:mod:`approvals.contract.files`) and the per-attempt request model
(:mod:`approvals.contract.attempt`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CARD_BRANDS = ("visa", "mastercard", "amex", "discover", "jcb", "unionpay", "other")
CARD_TYPES = ("credit", "debit", "prepaid")
CHANNELS = ("ecommerce", "recurring", "in_app", "moto")
THREE_DS = ("none", "frictionless", "challenge")

MCC_RE = r"^[0-9]{4}$"
COUNTRY_RE = r"^[A-Z]{2}$"
CURRENCY_RE = r"^[A-Z]{3}$"
BIN_RE = r"^[0-9]{6,8}$"
CODE_RE = r"^[0-9A-Z]{2}$"
ADVICE_RE = r"^[0-9]{2}$"

# Limits of online requests (files have none: the contract accepts any length and count).
MAX_ID_LENGTH = 128
MAX_ATTEMPT_NUMBER = 1000

Kind = Literal["string", "timestamp", "float", "int", "bool"]
Need = Literal["yes", "no", "label"]


@dataclass(frozen=True)
class Column:
    """One column of the contract."""

    name: str
    kind: Kind
    need: Need
    pattern: str | None = None
    choices: tuple[str, ...] | None = None
    nullable: bool = False

    @property
    def is_id(self) -> bool:
        """A free-text identifier (no pattern, no choices): 1 to MAX_ID_LENGTH in requests."""
        return self.kind == "string" and self.pattern is None and self.choices is None


COLUMNS: tuple[Column, ...] = (
    Column("attempt_id", "string", "yes"),
    Column("payment_id", "string", "yes"),
    Column("event_time", "timestamp", "yes"),
    Column("merchant_id", "string", "yes"),
    Column("mcc", "string", "yes", pattern=MCC_RE),
    Column("merchant_country", "string", "yes", pattern=COUNTRY_RE),
    Column("amount", "float", "yes"),
    Column("currency", "string", "yes", pattern=CURRENCY_RE),
    Column("card_fingerprint", "string", "yes"),
    Column("card_bin", "string", "yes", pattern=BIN_RE),
    Column("card_brand", "string", "yes", choices=CARD_BRANDS),
    Column("card_type", "string", "yes", choices=CARD_TYPES),
    Column("issuer_country", "string", "yes", pattern=COUNTRY_RE),
    Column("channel", "string", "yes", choices=CHANNELS),
    Column("three_ds", "string", "yes", choices=THREE_DS),
    Column("network_token", "bool", "yes"),
    Column("route_id", "string", "yes"),
    Column("attempt_number", "int", "yes"),
    Column("previous_response_code", "string", "yes", pattern=CODE_RE, nullable=True),
    Column("merchant_advice_code", "string", "no", pattern=ADVICE_RE, nullable=True),
    Column("approved", "bool", "label"),
    Column("response_code", "string", "label", pattern=CODE_RE),
)
BY_NAME = {c.name: c for c in COLUMNS}
FEATURE_COLUMNS = tuple(c.name for c in COLUMNS if c.need != "label")
LABEL_COLUMNS = tuple(c.name for c in COLUMNS if c.need == "label")
