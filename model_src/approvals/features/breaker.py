"""A small thread-safe circuit breaker and the counters a degraded dependency reports.

Closed: every call goes through; ``threshold`` consecutive failures open it. Open: calls are
skipped until ``cooldown`` has passed, then exactly one probe goes through (half-open). A
successful probe closes it, a failed one opens it for another cooldown. No restart needed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """Skips a failing dependency for a while, then probes it once."""

    def __init__(
        self, threshold: int, cooldown_s: float, clock: Callable[[], float] | None = None
    ) -> None:
        """Create a closed breaker.

        Args:
            threshold: consecutive failures that open the breaker.
            cooldown_s: seconds an open breaker waits before letting one probe through.
            clock: monotonic clock in seconds (``time.monotonic`` by default).
        """
        self.threshold, self.cooldown_s = threshold, cooldown_s
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._state, self._failures, self._opened_at = CLOSED, 0, 0.0
        self.opened_total = 0

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        return self._state

    def allow(self) -> bool:
        """True if a call may go to the dependency now (claims the probe when half-open)."""
        with self._lock:
            if self._state == CLOSED:
                return True
            if self._state == OPEN and self._clock() - self._opened_at >= self.cooldown_s:
                self._state = HALF_OPEN
                return True
            return False

    def success(self) -> bool:
        """Record a call that worked: the breaker closes. True if it was not closed before."""
        with self._lock:
            was_open = self._state != CLOSED
            self._state, self._failures = CLOSED, 0
            return was_open

    def failure(self) -> bool:
        """Record a failed call; True if this failure opened the breaker."""
        with self._lock:
            self._failures += 1
            if self._state == HALF_OPEN or (
                self._state == CLOSED and self._failures >= self.threshold
            ):
                self._state, self._opened_at = OPEN, self._clock()
                self.opened_total += 1
                return True
            return False


class OnlineStats:
    """Counters of a reader, for metrics: good reads, failures and degraded answers by reason."""

    def __init__(
        self,
        on_degraded: Callable[[str], None] | None = None,
        on_keys: Callable[[int, int], None] | None = None,
    ) -> None:
        """Start at zero.

        Args:
            on_degraded: called with the reason of every degraded answer.
            on_keys: called with (keys read from Redis, keys answered from held hashes) of
                every answer served from the store.
        """
        self._lock = threading.Lock()
        self._on_degraded = on_degraded
        self._on_keys = on_keys
        self.reads = 0
        self.keys_read = 0
        self.keys_held = 0
        self.not_after_state = 0
        self.failures = 0
        self.degraded_by_reason: Counter[str] = Counter()

    @property
    def degraded(self) -> int:
        """Degraded answers of any reason."""
        return sum(self.degraded_by_reason.values())

    def read(self, not_after_state: int = 0, keys_read: int = 0, keys_held: int = 0) -> None:
        """Count an answer served from the store.

        Args:
            not_after_state: attempts of it timed at or before the state's end, whose
                counters may include outcomes at or after their own time.
            keys_read: keys whose hashes came from Redis.
            keys_held: keys answered from hashes the reader held for the live version.
        """
        with self._lock:
            self.reads += 1
            self.not_after_state += not_after_state
            self.keys_read += keys_read
            self.keys_held += keys_held
        if self._on_keys is not None:
            self._on_keys(keys_read, keys_held)

    def failure(self) -> None:
        """Count a failed call (error or timeout)."""
        with self._lock:
            self.failures += 1

    def degrade(self, reason: str) -> None:
        """Count an answer made of defaults, and tell the hook."""
        with self._lock:
            self.degraded_by_reason[reason] += 1
        if self._on_degraded is not None:
            self._on_degraded(reason)
