"""The experiment's arms in the service: who answers a payment, and whether the challenger
shadows it.

A payment's arm comes from a stable hash of its ``payment_id``
(:class:`approvals.experiments.assignment.Split`), so its retries stay in its arm:

- ``champion``: the champion model answers;
- ``challenger`` (mode ``ab``): the challenger model answers;
- ``holdout``: the static policy answers (routes in the merchant's order, retries whenever
  the scheme rules allow, first allowed option): no model decides, but the champion's
  probabilities are still computed and logged, so monitoring sees unselected traffic.

In mode ``shadow`` the challenger also scores every champion and holdout request after the
answer, off the request path; its answers are logged (``shadow``), never returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from approvals.experiments.assignment import Split
from approvals.serving.engine import Engine

__all__ = ["Arms"]


@dataclass(frozen=True)
class Arms:
    """The engines of the arms and the split of payments among them."""

    champion: Engine
    challenger: Engine | None = None
    split: Split | None = None
    shadow: bool = False

    @classmethod
    def configure(
        cls, champion: Engine, challenger: Engine | None, mode: str, challenger_share: float,
        holdout_share: float, salt: str,
    ) -> Arms:  # fmt: skip
        """The arms of an experiment mode (``off``, ``shadow``, ``ab``) and its shares.

        Raises:
            ValueError: a mode that needs a challenger has none.
        """
        if mode != "off" and challenger is None:
            raise ValueError(f"experiment mode {mode!r} needs a challenger model")
        shares = {"holdout": holdout_share}
        if mode == "ab":
            shares["challenger"] = challenger_share
        shares["champion"] = 1.0 - sum(shares.values())
        live = {k: v for k, v in shares.items() if v > 0}
        split = Split(live, salt) if set(live) != {"champion"} else None
        return cls(champion, challenger if mode != "off" else None, split, mode == "shadow")

    def of(self, payment_id: str) -> str:
        """The arm of one payment."""
        return "champion" if self.split is None else self.split.arm(payment_id)

    def of_all(self, payment_ids: Sequence[str]) -> np.ndarray:
        """The arm of each payment (object array)."""
        if self.split is None:
            return np.full(len(payment_ids), "champion", dtype=object)
        return np.array([self.split.arm(p) for p in payment_ids], dtype=object)

    def engine(self, variant: str) -> Engine:
        """The engine that scores an arm's requests (the champion's for holdout)."""
        if variant == "challenger" and self.challenger is not None:
            return self.challenger
        return self.champion

    def shadows(self, variant: str) -> Engine | None:
        """The challenger, when it shadows this arm's requests."""
        return self.challenger if self.shadow and variant != "challenger" else None
