"""Exact posterior of a sticky latent uniform that is redrawn now and then.

A mechanism fires when its payment's latent uniform ``u`` is below the attempt's threshold
``p``. Between attempts ``u`` is redrawn with probability ``q``. What earlier attempts revealed
("fired", "did not fire", or nothing when an earlier mechanism answered first) leaves ``u``
distributed as a mixture of uniforms on intervals: one component per possible last redraw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Array = np.ndarray
EPS = 1e-12


@dataclass(frozen=True)
class Sticky:
    """Mixture over ``k`` components: weights ``w`` and intervals ``[lo, hi]``, shape (n, k)."""

    lo: Array
    hi: Array
    w: Array

    @classmethod
    def prior(cls, n: int, k: int) -> Sticky:
        """A fresh uniform: all weight on component 0 over [0, 1]."""
        w = np.zeros((n, k))
        w[:, 0] = 1.0
        return cls(np.zeros((n, k)), np.ones((n, k)), w)

    def take(self, rows: Array) -> Sticky:
        """The posteriors of a subset of payments."""
        return Sticky(self.lo[rows], self.hi[rows], self.w[rows])

    def redraw(self, q: Array, slot: int) -> Sticky:
        """Before attempt ``slot`` (0-based): with probability ``q`` the uniform is redrawn.

        Components are added as needed, so a payment pays memory only for attempts it makes.
        """
        grow = max(0, slot + 1 - self.w.shape[1])
        n = self.w.shape[0]
        w = np.hstack([self.w, np.zeros((n, grow))]) * (1.0 - q)[:, None]
        lo = np.hstack([self.lo, np.zeros((n, grow))])
        hi = np.hstack([self.hi, np.ones((n, grow))])
        w[:, slot], lo[:, slot], hi[:, slot] = q, 0.0, 1.0
        return Sticky(lo, hi, w)

    def fire_prob(self, p: Array) -> Array:
        """Probability that ``u < p`` under the posterior."""
        return np.sum(self.w * self._below(p), axis=1)

    def observe(self, p: Array, fired: Array, seen: Array) -> Sticky:
        """Condition on ``u < p`` (fired) or ``u >= p`` where ``seen``; unchanged elsewhere."""
        below = self._below(p)
        like = np.where(fired[:, None], below, 1.0 - below)
        w = np.where(seen[:, None], self.w * like, self.w)
        w = w / np.maximum(w.sum(axis=1, keepdims=True), EPS)
        p2 = p[:, None]
        hi = np.where((seen & fired)[:, None], np.minimum(self.hi, p2), self.hi)
        lo = np.where((seen & ~fired)[:, None], np.maximum(self.lo, p2), self.lo)
        return Sticky(lo, np.maximum(hi, lo), w)

    def _below(self, p: Array) -> Array:
        width = np.maximum(self.hi - self.lo, EPS)
        return np.clip((p[:, None] - self.lo) / width, 0.0, 1.0)
