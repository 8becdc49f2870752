"""``approvals outcomes ...``: the stream path of live outcomes (docs/outcomes.md).

``consume`` runs the worker of ``python -m approvals.features.consumer`` (flags override its
``APPROVALS_OUTCOMES_*`` settings) until SIGTERM or Ctrl-C. ``publish`` validates a JSON-lines
file of reports in the API's shape, all of it first, then adds one stream entry per line: a
demo's producer, and a way to replay a dead-lettered event once it is fixed.

Exit codes as every command's: 0 done, 2 a mistake the user can fix (a bad line, option or
URL, an unreachable Redis), 1 anything unexpected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from approvals.errors import UserError

app = typer.Typer(
    help="Live outcomes: publish events to the Redis stream, consume them into the online store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RedisUrl = Annotated[
    str, typer.Option(help="redis:// or rediss:// (TLS); AUTH token from env only")
]
Prefix = Annotated[str, typer.Option(help="key prefix shared with the service")]
Stream = Annotated[str | None, typer.Option(help="stream key (default <prefix>:outcomes)")]


@app.command()
def consume(
    redis_url: RedisUrl,
    prefix: Prefix = "approvals",
    stream: Stream = None,
    group: Annotated[str | None, typer.Option(help="consumer group (default features)")] = None,
    consumer: Annotated[str | None, typer.Option(help="name in the group (host name)")] = None,
    batch: Annotated[
        int | None, typer.Option(min=1, max=1000, help="entries per apply (default 500)")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="/metrics, /livez, /readyz (0: off)")
    ] = None,
) -> None:
    """Apply the stream's outcome events to the live feature version until SIGTERM.

    The AUTH token comes from APPROVALS_REDIS_PASSWORD, never from a flag.
    """
    from approvals.features.consumer import ConsumerSettings, run
    from approvals.features.redis_settings import RedisSettings

    store = RedisSettings(url=redis_url, prefix=prefix)
    given: dict[str, Any] = {"stream": stream, "group": group, "consumer": consumer,
                             "batch": batch, "metrics_port": metrics_port}  # fmt: skip
    run(ConsumerSettings(**{k: v for k, v in given.items() if v is not None}), store)


@app.command()
def publish(
    redis_url: RedisUrl,
    file: Annotated[Path, typer.Option(help="JSON lines: one report (API shape) per line")],
    prefix: Prefix = "approvals",
    stream: Stream = None,
    maxlen: Annotated[
        int | None, typer.Option(min=1, help="trim the stream to about this many entries")
    ] = None,
) -> None:
    """Validate every line of FILE, then add one stream entry per line (field ``outcome``).

    Nothing is published when a line is bad: the error names its line and field.
    """
    from redis.exceptions import RedisError

    from approvals.features.consumer_settings import stream_key
    from approvals.features.redis_settings import RedisSettings
    from approvals.features.versions import client

    lines = _checked_lines(file)
    store = RedisSettings(url=redis_url, prefix=prefix)
    key = stream_key(prefix, stream)
    conn = client(store, max(store.timeout_ms / 1000, 5.0))
    try:
        for start in range(0, len(lines), 1000):
            pipe = conn.pipeline(transaction=False)
            for text in lines[start : start + 1000]:
                pipe.xadd(key, {"outcome": text}, maxlen=maxlen)
            pipe.execute()
    except RedisError as exc:
        raise UserError(f"Redis at {store.url}: {type(exc).__name__}: {exc}") from exc
    finally:
        conn.close()
    typer.echo(f"published {len(lines):,} outcomes to {key}")


def _checked_lines(file: Path) -> list[str]:
    """The file's non-blank lines, each the JSON of a valid report.

    Raises:
        UserError: naming the first bad line (1-based), its field, and how many are bad.
    """
    from approvals.features.outcome_events import DecodeError, Rejected, check_reports, decode_event
    from approvals.features.outcomes import MAX_BATCH

    if not file.is_file():
        raise UserError(f"--file {file} is not a file")
    numbered = [(n, line.strip()) for n, line in enumerate(file.read_text().splitlines(), 1)]
    numbered = [(n, text) for n, text in numbered if text]
    bad: list[Rejected[int]] = []
    items: list[tuple[int, Any]] = []
    for n, text in numbered:
        try:
            items.append((n, decode_event(text)))
        except DecodeError as exc:
            bad.append(Rejected(n, str(exc)))
    for start in range(0, len(items), MAX_BATCH):
        bad.extend(check_reports(items[start : start + MAX_BATCH])[2])
    if bad:
        first = min(bad, key=lambda r: r.ref)
        raise UserError(f"{file} line {first.ref}: {first.error} ({len(bad)} bad line(s))")
    if not numbered:
        raise UserError(f"{file} holds no outcomes")
    return [text for _, text in numbered]
