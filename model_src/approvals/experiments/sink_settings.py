"""Settings of the decision sink (:mod:`approvals.experiments.sink`), checked once at the edge.

The Redis connection's own settings are :class:`~approvals.features.redis_settings.RedisSettings`;
the sink takes both. ``approvals decisions sink`` builds them from its flags.
"""

from __future__ import annotations

import socket

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

__all__ = ["SinkSettings"]

_NAME = r"^[A-Za-z0-9_.:@-]{1,200}$"


class SinkSettings(BaseModel):
    """How the sink reads, flushes and reports.

    Attributes:
        group: the consumer group; every sink of one deployment shares it.
        consumer: this sink's name in the group (default: the host name, i.e. the pod's: a
            restarted container reads its own pending entries again at once).
        max_rows: entries buffered before a flush.
        flush_seconds: the longest an entry waits in the buffer.
        claim_idle_ms: entries pending this long on another consumer are taken over; at least
            twice ``flush_seconds``, so a live sink's buffer is not taken from it.
        claim_interval_s: how often to look for such entries.
        batch: entries per read.
        block_ms: how long one read waits for new entries.
        dead_letter_maxlen: the dead-letter stream is trimmed to about this length.
        metrics_host, metrics_port: where ``/metrics``, ``/livez``, ``/readyz`` listen (0: off).
        lag_interval_s: how often the lag gauges are refreshed.
        retry_min_s, retry_max_s: the backoff after a failed call, doubling between.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    group: str = Field(default="sink", pattern=_NAME)
    consumer: str = Field(default_factory=socket.gethostname, pattern=_NAME)
    max_rows: int = Field(default=50_000, ge=1, le=10_000_000)
    flush_seconds: float = Field(default=60.0, gt=0, le=86_400)
    claim_idle_ms: int = Field(default=300_000, ge=100)
    claim_interval_s: float = Field(default=30.0, gt=0)
    batch: int = Field(default=1000, ge=1, le=100_000)
    block_ms: int = Field(default=1000, ge=1, le=60_000)
    dead_letter_maxlen: int = Field(default=100_000, ge=1)
    metrics_host: str = "0.0.0.0"  # noqa: S104 - the pod's port, for probes and scrapes
    metrics_port: int = Field(default=9100, ge=0, le=65535)
    lag_interval_s: float = Field(default=5.0, gt=0)
    retry_min_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)

    @field_validator("claim_idle_ms")
    @classmethod
    def _claims_spare_live_buffers(cls, value: int, info: ValidationInfo) -> int:
        flush_seconds = info.data.get("flush_seconds")  # absent when itself invalid
        if flush_seconds is not None and value < 2000 * flush_seconds:
            raise ValueError("must be at least twice flush_seconds")
        return value
