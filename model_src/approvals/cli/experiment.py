"""``approvals experiment report``: arms of a decision log compared in approvals and money.

Exit codes as every command's: 0 done, 2 a mistake the user can fix (a log that breaks its
schema, naming the column; bad shares or times), 1 anything unexpected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from approvals.cli.options import iso_time

app = typer.Typer(
    help="Experiments on live traffic: compare the arms of a decision log.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def report(
    log: Annotated[
        str,
        typer.Option(
            help="decision log: Parquet file or folder, CSV, or the sink's folder or s3:// prefix"
        ),
    ],
    out: Annotated[Path, typer.Option(help="report directory (report.json + uplift.png)")],
    shares: Annotated[
        str | None,
        typer.Option(help="configured shares, e.g. champion=0.45,challenger=0.45,holdout=0.10"),
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="experiment start (ISO 8601, UTC); earlier rows: pre-period")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="experiment end (ISO 8601, UTC), exclusive")
    ] = None,
    pre: Annotated[
        Path | None, typer.Option(help="labelled attempts of a pre-period (e.g. training data)")
    ] = None,
) -> None:
    """Per arm attempts, approval rate and approved value; uplift over holdout and champion
    with 95% intervals (delta method, CUPED); a sample-ratio-mismatch test."""
    from approvals.contract import read_attempts
    from approvals.experiments.log import read_log
    from approvals.experiments.report import experiment_report, parse_shares, write_report

    frame = read_log(log)
    result = experiment_report(
        frame, shares=parse_shares(shares) if shares is not None else None,
        start=iso_time(start, "--start"), end=iso_time(end, "--end"),
        pre=read_attempts(pre, labels=True) if pre is not None else None,
    )  # fmt: skip
    write_report(result, out)
    typer.echo(_summary(result))
    typer.echo(f"report -> {out}/report.json (+ uplift.png)")


def _summary(result: dict[str, Any]) -> str:
    lines = []
    for name, arm in result["arms"].items():
        rate = arm["approval_rate"]
        lines.append(
            f"{name:<12} {arm['payments']:>8} payments {arm['attempts']:>8} attempts  "
            f"approval {rate:.4f}  approved value {arm['approved_value']:,.2f}"
            if rate is not None else f"{name:<12} no labelled attempt"
        )  # fmt: skip
    for u in result["uplift"]:
        lo, hi = u["ci95"]
        lines.append(
            f"{u['arm']} vs {u['versus']} {u['metric']}: {u['estimate']:+.5f} "
            f"[{lo:+.5f}, {hi:+.5f}] p={u['p_value']:.3g}"
        )
    srm = result["srm"]
    lines.append(f"sample ratio p={srm['p_value']:.3g}" + (" FLAGGED" if srm["flagged"] else " ok"))
    return "\n".join(lines)
