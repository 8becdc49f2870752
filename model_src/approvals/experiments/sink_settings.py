"""Settings of the decision sink (:mod:`approvals.experiments.sink`), checked once at the edge.

The Redis connection's own settings are :class:`~approvals.features.redis_settings.RedisSettings`;
the sink takes both. ``approvals decisions sink`` builds them from its flags (typer);
``python -m approvals.experiments.sink``, what the serving image runs, from the same flags
through :func:`parse_command` (argparse: the image has no typer), the Redis URL and AUTH token
also from ``APPROVALS_REDIS_*`` as the outcome consumer reads them.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from approvals.errors import UserError

if TYPE_CHECKING:
    from approvals.features.redis_settings import RedisSettings

__all__ = ["SinkCommand", "SinkSettings", "checked", "parse_command"]

T = TypeVar("T")
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
# settings field -> the flag that sets it (errors name the flag)
OPTION_OF = {"url": "--redis-url", "prefix": "--prefix", "group": "--group",
             "consumer": "--consumer", "max_rows": "--max-rows",
             "flush_seconds": "--flush-seconds", "claim_idle_ms": "--claim-idle-ms",
             "metrics_port": "--metrics-port"}  # fmt: skip

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


@dataclass(frozen=True)
class SinkCommand:
    """One run of ``python -m approvals.experiments.sink``, checked."""

    settings: SinkSettings
    store: RedisSettings
    out: str
    once: bool
    log_level: LogLevel


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m approvals.experiments.sink",
        description="The decision stream to hourly Parquet (docs/decisions.md). The AUTH token "
        "comes from APPROVALS_REDIS_PASSWORD, never from a flag.",
    )
    add = parser.add_argument
    add("--out", required=True, help="output directory, or s3://bucket/prefix")
    add("--redis-url", help="redis:// or rediss:// (default: APPROVALS_REDIS_URL)")
    add("--prefix", help="key prefix shared with the service (default: APPROVALS_REDIS_PREFIX)")
    add("--group", help="consumer group (default sink)")
    add("--consumer", help="name in the group (default: the host name, i.e. the pod's)")
    add("--max-rows", type=int, help="entries buffered before a flush (default 50000)")
    add("--flush-seconds", type=float, help="longest wait of an entry (default 60)")
    add("--claim-idle-ms", type=int, help="take over entries pending this long (default 300000)")
    add("--metrics-port", type=int, help="/metrics, /livez, /readyz (default 9100, 0: off)")
    add("--once", action="store_true", help="drain the stream, flush and exit")
    add("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def parse_command(argv: Sequence[str] | None = None) -> SinkCommand:
    """The sink's flags (and ``APPROVALS_REDIS_*``) as checked settings.

    Args:
        argv: the arguments (default: the process's).

    Returns:
        The command to run.

    Raises:
        UserError: a value breaks the settings; the message names its flag.
        SystemExit: argparse's exit 2 on an unknown or malformed flag (0 for ``--help``).
    """
    args = vars(_parser().parse_args(argv))
    store = checked(lambda: _store(args.pop("redis_url"), args.pop("prefix")))
    out, once, log_level = args.pop("out"), args.pop("once"), args.pop("log_level")
    given = {key: value for key, value in args.items() if value is not None}
    return SinkCommand(checked(lambda: SinkSettings(**given)), store, out, once, log_level)


def _store(url: str | None, prefix: str | None) -> RedisSettings:
    from approvals.features.redis_settings import RedisSettings

    given: dict[str, Any] = {"url": url, "prefix": prefix}
    return RedisSettings(**{key: value for key, value in given.items() if value is not None})


def checked(build: Callable[[], T]) -> T:
    """``build()``, a validation error turned into a :class:`UserError` naming the flag
    (``--redis-url``, ``--max-rows``...: the CLI's and the module entry point's alike)."""
    try:
        return build()
    except ValidationError as exc:
        first = exc.errors(include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "options"
        raise UserError(f"{OPTION_OF.get(where, where)}: {first['msg']}") from None
