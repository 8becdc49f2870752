"""``approvals monitor``: a window of the decision log against the model's training reference.

Exit codes as every command's: 0 the monitor ran (with or without alerts), 2 a mistake the
user can fix (a log that breaks its schema, naming the column; a package without a training
reference; bad times), 1 anything unexpected (a Pushgateway that did not take the metrics:
the report is written first). With ``--fail-on-alert``, 4 when the run raised an alert.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from approvals.cli.options import iso_time
from approvals.errors import PackageError, UserError

if TYPE_CHECKING:
    pass

ALERTED = 4  # the exit code of a run that alerted, with --fail-on-alert

app = typer.Typer(
    help="Monitor a decision log: drift, calibration, approval-rate anomalies, skew.",
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback(invoke_without_command=True)
def monitor(
    model: Annotated[Path, typer.Option(help="model package directory (with reference.json)")],
    log: Annotated[Path, typer.Option(help="decision log: Parquet file or directory, or CSV")],
    out: Annotated[Path, typer.Option(help="output directory (monitor.json, monitor.prom, PNGs)")],
    start: Annotated[
        str | None, typer.Option(help="window start (ISO 8601, UTC), by decided_at; default: all")
    ] = None,
    end: Annotated[str | None, typer.Option(help="window end (ISO 8601, UTC), exclusive")] = None,
    push_gateway: Annotated[
        str | None, typer.Option(help="Pushgateway URL to push the metrics to (host:port or URL)")
    ] = None,
    push_job: Annotated[str, typer.Option(help="the Pushgateway job (one group per job)")] = (
        "approvals_monitor"
    ),
    config: Annotated[Path | None, typer.Option(help="thresholds (YAML), see docs")] = None,
    fail_on_alert: Annotated[
        bool, typer.Option(help=f"exit {ALERTED} when the run raised an alert")
    ] = False,
) -> None:
    """Feature, input and prediction drift (PSI), calibration and approval rates by issuer and
    route (tests adjusted over segments), training-serving skew of logged features."""
    from approvals.experiments.log import read_log
    from approvals.model.package import ModelPackage
    from approvals.monitoring.export import push, write_outputs
    from approvals.monitoring.monitor import monitor_window, recompute_features, select_window
    from approvals.monitoring.settings import load_settings

    settings = load_settings(config)
    since, until = iso_time(start, "--start"), iso_time(end, "--end")
    package = ModelPackage.load(model)
    reference = package.reference()
    if reference is None:
        raise PackageError(
            f"--model {model}: the package has no training reference (reference.json): it was "
            "trained before monitoring existed; train it again to monitor it"
        )
    frame = read_log(log)  # a file, a folder, or the sink's layout (outcomes joined)
    rows = select_window(frame, since, until)
    if rows.empty:
        raise UserError(f"--log {log}: no decision in the window [{start or '-'}, {end or '-'})")
    recomputed = recompute_features(package, rows, frame)
    report = monitor_window(
        rows, reference, model_version=package.model_version, feature_names=package.spec.names,
        recomputed=recomputed, settings=settings, start=since, end=until,
    )  # fmt: skip
    write_outputs(report, out)
    typer.echo(_summary(report))
    typer.echo(f"report -> {out}/monitor.json (+ monitor.prom, psi.png, calibration.png)")
    if push_gateway:
        push(report, push_gateway, push_job)
        typer.echo(f"metrics pushed to {push_gateway} (job {push_job})")
    if fail_on_alert and report["alerts"]:
        raise typer.Exit(ALERTED)


def _summary(report: dict[str, Any]) -> str:
    window = report["metrics"]["window"]
    lines = [
        f"window {window['start']} to {window['end']}: {window['rows']:,} rows, "
        f"{window['scored']:,} answered by the model, {window['labelled']:,} labelled",
        f"{len(report['alerts'])} alert(s)",
    ]
    lines += [
        f"  {a['kind']:<16} {a['segment']}: {a['value']:.4g} (threshold {a['threshold']:.4g})"
        for a in report["alerts"]
    ]
    return "\n".join(lines)
