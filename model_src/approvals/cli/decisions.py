"""``approvals decisions sink``: the decision stream to hourly Parquet (docs/decisions.md).

Runs until SIGTERM or Ctrl-C, then flushes what it holds and exits 0; ``--once`` drains what
the stream holds, flushes and exits 0. Exit codes as every command's: 0 done, 2 a mistake the
user can fix (a bad option or URL, a metrics port in use; with ``--once``, an unreachable Redis
or a failed write), 1 anything unexpected.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from approvals.errors import UserError

if TYPE_CHECKING:
    from approvals.features.redis_settings import RedisSettings

app = typer.Typer(
    help="The decision log: the service's decision stream written as hourly Parquet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def sink(
    redis_url: Annotated[
        str, typer.Option(help="redis:// or rediss:// (TLS); AUTH token from env only")
    ],
    out: Annotated[str, typer.Option(help="output directory, or s3://bucket/prefix")],
    prefix: Annotated[str, typer.Option(help="key prefix shared with the service")] = "approvals",
    group: Annotated[str | None, typer.Option(help="consumer group (default sink)")] = None,
    consumer: Annotated[
        str | None, typer.Option(help="name in the group (default: the host name)")
    ] = None,
    max_rows: Annotated[
        int | None, typer.Option(help="entries buffered before a flush (default 50000)")
    ] = None,
    flush_seconds: Annotated[
        float | None, typer.Option(help="longest wait of an entry before a flush (default 60)")
    ] = None,
    claim_idle_ms: Annotated[
        int | None, typer.Option(help="take over entries pending this long (default 300000)")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="/metrics, /livez, /readyz (default 9100, 0: off)")
    ] = None,
    once: Annotated[bool, typer.Option(help="drain the stream, flush and exit")] = False,
) -> None:
    """Write the stream's decisions and outcomes as Parquet files, one per kind and UTC hour.

    The AUTH token comes from APPROVALS_REDIS_PASSWORD, never from a flag.
    """
    from botocore.exceptions import BotoCoreError, ClientError
    from redis.exceptions import RedisError

    from approvals.experiments.sink import SinkSettings, serve
    from approvals.experiments.sink_files import open_destination
    from approvals.experiments.sink_settings import checked

    store = checked(lambda: _store(redis_url, prefix))
    given: dict[str, Any] = {
        "group": group, "consumer": consumer, "max_rows": max_rows,
        "flush_seconds": flush_seconds, "claim_idle_ms": claim_idle_ms,
        "metrics_port": metrics_port,
    }  # fmt: skip
    settings = checked(lambda: SinkSettings(**{k: v for k, v in given.items() if v is not None}))
    try:
        destination = open_destination(out)
    except UserError as exc:
        raise UserError(f"--out {exc}") from None
    _log_to_stderr()
    try:
        totals = serve(settings, store, destination, once=once)
    except RedisError as exc:  # with --once: the first failure ends the run
        raise UserError(f"Redis at {store.url}: {type(exc).__name__}: {exc}") from exc
    except (OSError, BotoCoreError, ClientError) as exc:
        raise UserError(f"--out {destination}: {type(exc).__name__}: {exc}") from exc
    typer.echo(
        f"{totals.entries:,} entries: {totals.rows:,} rows in {totals.files:,} files, "
        f"{totals.bad:,} bad (dead-lettered), {totals.unnamed_features:,} unnamed feature vectors"
    )


def _store(url: str, prefix: str) -> RedisSettings:
    from approvals.features.redis_settings import RedisSettings

    return RedisSettings(url=url, prefix=prefix)


def _log_to_stderr() -> None:
    """The sink's log lines (one per flush) on stderr, unless logging is configured."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )  # fmt: skip
    logging.getLogger("approvals.experiments.sink").setLevel(logging.INFO)
