"""Decline-code taxonomy and scheme retry rules, read from ``data/scheme_rules.yaml``.

This is the one place that knows which ISO 8583 response codes are approvals, hard declines
(never retry) or soft declines (a retry may succeed), and what the schemes allow on retries.
Everything else asks this module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

RULES_FILE = "scheme_rules.yaml"


class CodeClass(enum.StrEnum):
    """What a response code means for the next attempt of the same payment."""

    APPROVED = "approved"
    HARD = "hard"  # Visa category 1: the issuer will never approve
    SOFT = "soft"  # Visa category 2 and 4: may approve later
    FIXABLE = "fixable"  # Visa category 3: may approve with corrected details (3DS, expiry)
    NONE = "none"  # no previous attempt


@dataclass(frozen=True)
class MerchantAdvice:
    """A Mastercard Merchant Advice Code and what it allows."""

    code: str
    meaning: str
    action: str  # update_card | retry_later | never | fix_request
    min_delay_hours: float | None

    @property
    def forbids_retry(self) -> bool:
        """True when the scheme says never to reattempt (or not without fixing the request)."""
        return self.action in {"never", "fix_request"}


@dataclass(frozen=True)
class SchemeRules:
    """The decline taxonomy and retry limits, as loaded from the rules file."""

    source: str
    as_of: str
    approved_codes: frozenset[str]
    category_of: dict[str, int]
    outage_codes: frozenset[str]
    max_reattempts: int
    reattempt_window_days: int
    max_declined_attempts_24h: int
    advice: dict[str, MerchantAdvice]


@cache
def rules() -> SchemeRules:
    """Load the rules file once per process."""
    text = resources.files("approvals").joinpath("data", RULES_FILE).read_text()
    raw: dict[str, Any] = yaml.safe_load(text)
    category_of = {
        code: int(cat) for cat, spec in raw["visa_categories"].items() for code in spec["codes"]
    }
    advice = {
        code: MerchantAdvice(code=code, **spec)
        for code, spec in raw["merchant_advice_codes"].items()
    }
    return SchemeRules(
        source=raw["source"],
        as_of=str(raw["as_of"]),
        approved_codes=frozenset(raw["approved_codes"]),
        category_of=category_of,
        outage_codes=frozenset(raw["outage_codes"]),
        max_reattempts=int(raw["reattempt_limit"]["max_reattempts"]),
        reattempt_window_days=int(raw["reattempt_limit"]["window_days"]),
        max_declined_attempts_24h=int(raw["excessive_attempts"]["max_declined_attempts"]),
        advice=advice,
    )


def visa_category(code: str) -> int:
    """Visa decline category (1-4) of a decline code; unknown codes are category 4."""
    return rules().category_of.get(code, 4)


def is_approved(code: str) -> bool:
    """True for response codes that mean the issuer approved."""
    return code in rules().approved_codes


def classify(code: str | None) -> CodeClass:
    """Classify a response code (``None`` means there was no previous attempt)."""
    if code is None or code == "":
        return CodeClass.NONE
    if is_approved(code):
        return CodeClass.APPROVED
    category = visa_category(code)
    if category == 1:
        return CodeClass.HARD
    if category == 3:
        return CodeClass.FIXABLE
    return CodeClass.SOFT


def is_hard(code: str) -> bool:
    """True when no reattempt of this payment may ever succeed (Visa category 1)."""
    return classify(code) is CodeClass.HARD


def is_outage(code: str) -> bool:
    """True for codes that signal an issuer or network outage (retry on another route)."""
    return code in rules().outage_codes


def hard_codes() -> frozenset[str]:
    """All codes listed as Visa category 1."""
    return frozenset(c for c, cat in rules().category_of.items() if cat == 1)


def merchant_advice(code: str | None) -> MerchantAdvice | None:
    """The Merchant Advice Code entry, or ``None`` when absent or unknown."""
    if not code:
        return None
    return rules().advice.get(code)
