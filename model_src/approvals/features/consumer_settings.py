"""Settings of the outcome stream's consumer, read once at the edge (``APPROVALS_OUTCOMES_*``).

The store's own connection settings are :class:`~approvals.features.redis_settings.RedisSettings`
(``APPROVALS_REDIS_*``); the consumer takes both (:mod:`approvals.features.consumer`).
"""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from approvals.features.outcomes import MAX_BATCH

_NAME = r"^[A-Za-z0-9_.:@-]{1,200}$"


class ConsumerSettings(BaseSettings):
    """How the worker reads the stream (env ``APPROVALS_OUTCOMES_*``).

    Attributes:
        stream: the stream key (default ``<redis prefix>:outcomes``).
        group: the consumer group; every worker of one deployment shares it.
        consumer: this worker's name in the group (default: the host name, i.e. the pod's).
        batch: entries read and applied at once (at most the store's batch size).
        block_ms: how long one read waits for new entries.
        start_id: where a new group starts: ``$`` new entries only, ``0`` the whole stream.
        claim_idle_ms: entries pending this long on another consumer are taken over.
        claim_interval_s: how often to look for such entries.
        dead_letter: stream of rejected events (default ``<stream>:dead``).
        dead_letter_maxlen: the dead-letter stream is trimmed to about this length.
        metrics_host, metrics_port: where ``/metrics``, ``/livez``, ``/readyz`` listen (0: off).
        lag_interval_s: how often the lag gauges are refreshed.
        apply_timeout_s: time allowed to one apply (one ``EVALSHA``).
        retry_min_s, retry_max_s: the backoff after a failed Redis call, doubling between.
        log_level: of the JSON log lines on stdout.
    """

    model_config = SettingsConfigDict(env_prefix="APPROVALS_OUTCOMES_", frozen=True, extra="forbid")

    stream: str | None = Field(default=None, pattern=_NAME)
    group: str = Field(default="features", pattern=_NAME)
    consumer: str = Field(default_factory=socket.gethostname, pattern=_NAME)
    batch: int = Field(default=500, ge=1, le=MAX_BATCH)
    block_ms: int = Field(default=1000, ge=1, le=60_000)
    start_id: Literal["$", "0"] = "$"
    claim_idle_ms: int = Field(default=60_000, ge=100)
    claim_interval_s: float = Field(default=15.0, gt=0)
    dead_letter: str | None = Field(default=None, pattern=_NAME)
    dead_letter_maxlen: int = Field(default=100_000, ge=1)
    metrics_host: str = "0.0.0.0"  # noqa: S104 - the pod's port, for probes and scrapes
    metrics_port: int = Field(default=9100, ge=0, le=65535)
    lag_interval_s: float = Field(default=5.0, gt=0)
    apply_timeout_s: float = Field(default=5.0, gt=0, le=300)
    retry_min_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def stream_key(self, prefix: str) -> str:
        """The stream the group reads."""
        return stream_key(prefix, self.stream)

    def dead_letter_key(self, prefix: str) -> str:
        """The stream rejected events go to."""
        return self.dead_letter or f"{self.stream_key(prefix)}:dead"


def stream_key(prefix: str, stream: str | None = None) -> str:
    """The outcome stream: ``stream`` when given, else ``<prefix>:outcomes``."""
    return stream or f"{prefix}:outcomes"
