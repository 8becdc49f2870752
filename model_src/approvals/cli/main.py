"""The ``approvals`` command line: one subcommand per stage.

Exit codes (:class:`approvals.cli.exits.ExitCode`): 0 done, 2 a user mistake (bad files, bad
options, missing paths: one line on stderr, no traceback), 3 the gate refused the candidate,
1 anything unexpected (with its traceback). Stage modules are imported inside each command so
that ``approvals --help`` stays fast.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from approvals.cli.exits import ExitCode
from approvals.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from approvals.features.materialize import MaterializeResult
    from approvals.features.redis_settings import RedisSettings

app = typer.Typer(
    name="approvals",
    help="Calibrated card authorization approval: simulate, train, evaluate, decide, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

__all__ = ["ExitCode", "UserError", "app", "main"]


def _user_errors() -> tuple[type[BaseException], ...]:
    from pydantic import ValidationError

    from approvals.errors import ConfigError, ContractError, PackageError

    return (
        UserError, ContractError, ConfigError, PackageError, FileNotFoundError,
        ValidationError, NotADirectoryError,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: runs a command, exits with an :class:`ExitCode`."""
    try:
        code = app(args=argv, standalone_mode=False)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)  # the shell's code for an interrupt (Ctrl-C)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.TyperException as exc:  # usage errors: unknown option, missing value, ...
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"error: {exc}", err=True)
        sys.exit(ExitCode.USER_ERROR)
    except Exception as exc:  # the one place that sorts failures into exit codes
        if isinstance(exc, _user_errors()):
            typer.echo(f"error: {_one_line(exc)}", err=True)
            sys.exit(ExitCode.USER_ERROR)
        traceback.print_exc()
        sys.exit(ExitCode.UNEXPECTED)
    if isinstance(code, int) and code:
        sys.exit(code)


def _one_line(exc: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']} ({exc.error_count()} problem(s))"
    return " ".join(str(exc).split())


PathArg = Annotated[Path, typer.Option(help="path")]


@app.command()
def simulate(
    payments: Annotated[int, typer.Option(min=1, help="number of payments (retries come on top)")],
    out: Annotated[Path, typer.Option(help="directory to write (replaced atomically)")],
    seed: Annotated[int, typer.Option(min=0, help="random seed; same seed, same data")] = 0,
    days: Annotated[int, typer.Option(min=1, help="length of the simulated period")] = 60,
) -> None:
    """Simulate attempts and their true approval probabilities, with counterfactual truth."""
    from approvals.simulate import simulate as run_simulation
    from approvals.simulate import write

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    step = _progress()
    step(f"simulating {payments:,} payments over {days} days (seed {seed})")
    sim = run_simulation(payments, seed, days, progress=step)
    write(sim, out)
    counts, rates = sim.manifest["counts"], sim.manifest["approval_rate"]
    step(
        f"wrote {counts['attempts']:,} attempts to {out}: first-attempt approval "
        f"{rates['first_attempt']:.1%}, {counts['retries']:,} retries"
    )


def _progress() -> Callable[[str], None]:
    """A callback that logs one timed line per stage on stderr (rich)."""
    import time

    from rich.console import Console

    console = Console(stderr=True)
    start = time.monotonic()

    def step(message: str) -> None:
        console.log(f"[{time.monotonic() - start:6.1f}s] {message}")

    return step


def _read(path: Path, *, labels: bool) -> pd.DataFrame:
    from approvals.contract import read_attempts

    return read_attempts(path, labels=labels)


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="labelled attempts (Parquet or CSV)")],
    out: Annotated[Path, typer.Option(help="model package directory to write")],
    config: Annotated[Path | None, typer.Option(help="training config (YAML)")] = None,
    costs: Annotated[Path | None, typer.Option(help="costs config (YAML)")] = None,
) -> None:
    """Train and calibrate an approval model; write a model package."""
    from approvals.decisions.costs import load_costs
    from approvals.model.train import TrainConfig, save_result, train

    step = _progress()
    settings = TrainConfig.load(config)
    cost_config = load_costs(costs)
    step(f"reading {data}")
    frame = _read(data, labels=True)
    result = train(frame, settings, cost_config, progress=step)
    step("writing package (feature state, booster, calibrator, card)")
    save_result(result, out)
    test = result.package.manifest["metrics"]["test"]
    typer.echo(
        f"model {result.package.model_version} -> {out}\n"
        f"test: log_loss={test['log_loss']:.4f} ece={test['ece']:.4f} "
        f"roc_auc={test['roc_auc']:.4f} calibration={result.package.calibrator.method}"
    )


@app.command()
def predict(
    model: Annotated[Path, typer.Option(help="model package directory")],
    data: Annotated[Path, typer.Option(help="attempts to score (labels ignored)")],
    out: Annotated[Path, typer.Option(help="output file (.parquet or .csv)")],
    history: Annotated[
        Path | None, typer.Option(help="labelled attempts known before the scored ones")
    ] = None,
) -> None:
    """Write attempt_id and the calibrated p_approve for every input row, in input order."""
    from approvals.contract import write_frame_atomic
    from approvals.model.package import ModelPackage
    from approvals.model.predict import predictions_frame, score

    step = _progress()
    package = ModelPackage.load(model)
    frame = _read(data, labels=False)
    past = _read(history, labels=True) if history else None
    step(f"scoring {len(frame)} attempts with {package.model_version}")
    p = score(package, frame, past)
    write_frame_atomic(predictions_frame(frame, p), out)
    typer.echo(f"{len(p)} predictions -> {out}")


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option(help="model package directory")],
    data: Annotated[Path, typer.Option(help="labelled attempts")],
    out: Annotated[Path, typer.Option(help="report directory (metrics.json + PNG plots)")],
    truth: Annotated[Path | None, typer.Option(help="true probabilities (oracle)")] = None,
    costs: Annotated[Path | None, typer.Option(help="costs config (YAML)")] = None,
    replay: Annotated[
        bool, typer.Option(help="replay the labelled data as history (point-in-time)")
    ] = True,
) -> None:
    """Metrics per segment, reliability and precision-recall plots, oracle ratio."""
    from approvals.decisions.costs import load_costs
    from approvals.evaluation.evaluate import evaluate as run
    from approvals.model.package import ModelPackage

    step = _progress()
    package = ModelPackage.load(model)
    frame = _read(data, labels=True)
    step(f"evaluating {package.model_version} on {len(frame)} attempts")
    report = run(
        package, frame, out, truth=truth, history=frame if replay else None,
        costs=load_costs(costs),
    )  # fmt: skip
    overall = report["overall"]
    line = (
        f"log_loss={overall['log_loss']:.4f} ece={overall['ece']:.4f} auc={overall['roc_auc']:.4f}"
    )
    if "oracle" in report:
        line += f" oracle_ratio={report['oracle']['ratio']:.4f}"
    typer.echo(f"{line}\nreport -> {out}/metrics.json (+ PNG plots)")


@app.command("policy-eval")
def policy_eval(
    model: Annotated[Path, typer.Option(help="model package directory")],
    data: Annotated[Path, typer.Option(help="simulated attempts (labelled)")],
    truth: Annotated[
        Path, typer.Option(help="truth.parquet; routes.parquet and retries.parquet beside it")
    ],
    costs: Annotated[Path | None, typer.Option(help="costs config (YAML)")] = None,
    out: Annotated[Path | None, typer.Option(help="write the report as JSON here")] = None,
) -> None:
    """Compare routing and retry policies against the oracle on counterfactual truth."""
    from approvals.decisions.costs import load_costs
    from approvals.evaluation.evaluate import write_json
    from approvals.evaluation.policies import evaluate_policies, render
    from approvals.model.package import ModelPackage

    step = _progress()
    package = ModelPackage.load(model)
    frame = _read(data, labels=True)
    step(f"scoring counterfactual routes and retries with {package.model_version}")
    report = evaluate_policies(package, frame, truth, load_costs(costs))
    if out is not None:
        write_json(report, out)
    typer.echo(render(report))


@app.command()
def gate(
    candidate: Annotated[Path, typer.Option(help="candidate model package")],
    data: Annotated[Path, typer.Option(help="held-out labelled attempts (after both models)")],
    champion: Annotated[Path | None, typer.Option(help="current champion package")] = None,
    config: Annotated[Path | None, typer.Option(help="gate config (YAML)")] = None,
    report: Annotated[Path | None, typer.Option(help="write the gate report as JSON")] = None,
) -> None:
    """Compare a candidate with the champion on the same data; exit 3 if it must not ship."""
    from approvals.evaluation.evaluate import summary, write_json
    from approvals.evaluation.gate import compare, load_gate_config
    from approvals.model.package import ModelPackage

    step = _progress()
    settings = load_gate_config(config)
    frame = _read(data, labels=True)
    step(f"scoring candidate on {len(frame)} attempts")
    cand, _ = summary(ModelPackage.load(candidate), frame, frame)
    champ = None
    if champion is not None:
        step("scoring champion on the same attempts")
        champ, _ = summary(ModelPackage.load(champion), frame, frame)
    verdict = compare(cand, champ, settings)
    if report is not None:
        write_json(verdict.to_dict(), report)
    typer.echo(verdict.render())
    if not verdict.passed:
        raise typer.Exit(ExitCode.GATE_REFUSED)


from approvals.cli.registry import app as registry_app  # noqa: E402

app.add_typer(registry_app, name="registry")


@app.command()
def materialize(
    redis_url: Annotated[
        str, typer.Option(help="redis:// or rediss:// (TLS); AUTH token from env only")
    ],
    data: Annotated[
        Path | None, typer.Option(help="labelled attempts (Parquet or CSV); or --model")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="model package whose feature state to load; or --data")
    ] = None,
    ttl_days: Annotated[int, typer.Option(min=1, max=365, help="lifetime of the keys")] = 8,
    prefix: Annotated[str, typer.Option(help="key prefix shared with the service")] = "approvals",
    allow_older: Annotated[
        bool, typer.Option(help="replace a live version whose data ends later (rollback)")
    ] = False,
) -> None:
    """Load the feature state of DATA (or of the MODEL package) into Redis as a new version,
    then switch readers to it.

    The AUTH token comes from APPROVALS_REDIS_PASSWORD, never from a flag.
    """
    from redis.exceptions import RedisError

    from approvals.features.redis_settings import RedisSettings

    if (data is None) == (model is None):
        raise UserError("give exactly one of --data and --model")
    settings = RedisSettings(url=redis_url, prefix=prefix)
    step = _progress()
    try:
        done = _materialize(data, model, settings, ttl_days, allow_older, step)
    except RedisError as exc:
        raise UserError(f"Redis at {settings.url}: {type(exc).__name__}: {exc}") from exc
    typer.echo(
        f"materialized {done.keys:,} keys ({done.records:,} records) as {prefix}:{done.version} "
        f"in {done.seconds:.1f}s; state ends {done.end.isoformat()}; previous: {done.previous}"
    )


def _materialize(
    data: Path | None,
    model: Path | None,
    settings: RedisSettings,
    ttl_days: int,
    allow_older: bool,
    step: Callable[[str], None],
) -> MaterializeResult:
    """``materialize`` of the attempts file ``data``, or of the package ``model``'s state."""
    from datetime import timedelta

    from approvals.features.materialize import materialize, materialize_file
    from approvals.features.versions import check_reachable
    from approvals.model.package import ModelPackage

    ttl = timedelta(days=ttl_days)
    if data is not None:
        return materialize_file(data, settings, ttl=ttl, progress=step, allow_older=allow_older)
    assert model is not None
    check_reachable(settings)  # before reading the state, as for --data
    package = ModelPackage.load(model)
    if not (model / "state").is_dir():
        raise UserError(
            f"--model {model} has no feature state (state/); a registered model's packed "
            "state loads with python -m approvals.features.preload"
        )
    step(f"feature state of model {package.model_version} up to {package.spec.state_end}")
    return materialize(package.state(), settings, ttl=ttl, progress=step, allow_older=allow_older)


from approvals.cli.outcomes import app as outcomes_app  # noqa: E402

app.add_typer(outcomes_app, name="outcomes")

from approvals.cli.experiment import app as experiment_app  # noqa: E402

app.add_typer(experiment_app, name="experiment")

from approvals.cli.decisions import app as decisions_app  # noqa: E402

app.add_typer(decisions_app, name="decisions")

from approvals.cli.monitor import app as monitor_app  # noqa: E402

app.add_typer(monitor_app, name="monitor")
