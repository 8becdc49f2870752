"""The state of payments between attempts, and the true probabilities of their next attempt."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from approvals.simulate import dynamics as dyn
from approvals.simulate.payments import VELOCITY_WINDOW_H, Payments, card_attempts_before
from approvals.simulate.sticky import Sticky

Array = np.ndarray


@dataclass(frozen=True)
class Deaths:
    """When each card died (lost, stolen, closed, expired) and with which code; inf if never."""

    time: Array
    code: Array

    @classmethod
    def from_events(cls, pay: Payments, n_cards: int, died: Array, code: Array) -> Deaths:
        """The earliest death event of each card among the payments flagged ``died``."""
        events = np.flatnonzero(died)
        events = events[np.argsort(pay.t[events], kind="stable")]
        cards, first = np.unique(pay.card[events], return_index=True)
        time, codes = np.full(n_cards, np.inf), np.full(n_cards, -1)
        time[cards], codes[cards] = pay.t[events[first]], code[events[first]]
        return cls(time, codes)

    def dead(self, card: Array, t: Array) -> Array:
        """True where the card was already dead at time ``t``."""
        return t > self.time[card]


@dataclass(frozen=True)
class Chains:
    """Declined payments after their latest attempt (one row per payment)."""

    idx: Array  # payment index
    route: Array
    t: Array  # time of the latest attempt
    attempt: Array  # number of the latest attempt
    stage: Array  # mechanism that answered the latest attempt
    code: Array  # its response code (index into process.CODES)
    mac: Array  # its merchant advice code (index into process.MACS)
    retries: Array  # (n, 3) retries made after outage, insufficient funds, other soft codes
    times: Array  # (n, MAX_ATTEMPTS) times of the payment's attempts, nan when none
    h_clear: Array  # an earlier attempt showed that the payment's hard hazard did not fire
    nsf: Sticky
    risk: Sticky

    @classmethod
    def start(cls, idx: Array, route: Array, t: Array, code: Array, mac: Array) -> Chains:
        """Payments before any attempt (the first attempt is recorded with ``after``)."""
        n, k = idx.size, dyn.MAX_ATTEMPTS
        times = np.full((n, k), np.nan)
        zeros = np.zeros(n, dtype=np.int64)
        return cls(
            idx, route, t, zeros, zeros, code, mac, np.zeros((n, 3), dtype=np.int64), times,
            np.zeros(n, dtype=bool), Sticky.prior(n, 1), Sticky.prior(n, 1),
        )  # fmt: skip

    def take(self, rows: Array) -> Chains:
        """A subset of the payments."""
        return Chains(
            self.idx[rows], self.route[rows], self.t[rows], self.attempt[rows], self.stage[rows],
            self.code[rows], self.mac[rows], self.retries[rows], self.times[rows],
            self.h_clear[rows], self.nsf.take(rows), self.risk.take(rows),
        )  # fmt: skip

    def after(self, attempt: Attempt, stage: Array, code: Array, mac: Array) -> Chains:
        """The state once ``attempt`` was answered by mechanism ``stage`` with ``code``/``mac``."""
        seen_nsf, seen_risk = stage >= dyn.NSF, stage >= dyn.RISK
        times = self.times.copy()
        times[np.arange(self.idx.size), self.attempt] = attempt.t
        return replace(
            self,
            route=attempt.route,
            t=attempt.t,
            attempt=self.attempt + 1,
            stage=stage,
            code=code,
            mac=mac,
            times=times,
            h_clear=self.h_clear | (stage > dyn.HARD),
            nsf=attempt.nsf.observe(attempt.th.nsf, stage == dyn.NSF, seen_nsf),
            risk=attempt.risk.observe(attempt.th.risk, stage == dyn.RISK, seen_risk),
        )


@dataclass(frozen=True)
class Attempt:
    """The next attempt of each chain: where, when, and its true stage probabilities."""

    route: Array
    t: Array
    th: dyn.Thresholds
    probs: Array  # (n, N_STAGES) conditional firing probability of each mechanism
    nsf: Sticky  # posteriors after the redraw that precedes this attempt
    risk: Sticky

    @property
    def p_approve(self) -> Array:
        """True probability that the attempt is approved."""
        return np.prod(1.0 - self.probs, axis=1)


def velocity(pay: Payments, ch: Chains, t: Array) -> Array:
    """Attempts of the card in the 24 h before ``t``: other payments' first tries, own retries."""
    own_retries = ch.times[:, 1:]
    recent = (own_retries > (t - VELOCITY_WINDOW_H)[:, None]) & (own_retries < t[:, None])
    return card_attempts_before(pay, ch.idx, t) + recent.sum(axis=1)


def attempt_probs(model: dyn.Model, deaths: Deaths, ch: Chains, route: Array, t: Array) -> Attempt:
    """True probabilities of the next attempt of each chain on ``route`` at time ``t``."""
    pay, prm = model.pay, model.prm
    th = dyn.thresholds(model, ch.idx, route, t, velocity(pay, ch, t))
    slot = int(ch.attempt.max(initial=0))
    assert np.all(ch.attempt == slot), "chains advance in lockstep"
    nsf, risk = ch.nsf, ch.risk
    if slot > 0:  # a later attempt: the latent uniforms may have been redrawn since
        dt = np.maximum(t - ch.t, 0.0)
        nsf = nsf.redraw(1.0 - np.exp(-dt / prm.nsf_memory_h), slot)
        risk = risk.redraw(1.0 - np.exp(-dt / prm.risk_memory_h), slot)
    dead = deaths.dead(pay.card[ch.idx], t).astype(float)
    hard = np.where(ch.h_clear, 0.0, th.hard)
    probs = np.stack(
        [th.route_out, th.issuer_out, dead, hard, nsf.fire_prob(th.nsf), th.limit, th.velocity,
         risk.fire_prob(th.risk)],
        axis=1,
    )  # fmt: skip
    return Attempt(route, t, th, probs, nsf, risk)
