"""``make demo``: the whole offline loop on embedded defaults, end to end.

simulate -> train -> evaluate (with the simulator's truth) -> policy-eval -> gate, each through
the same CLI a user runs; then build the bento, materialize the features into a local Redis,
serve the built bento and call it over HTTP and gRPC (``DEMO_SERVE=0`` skips this part), and
run a short live experiment: a challenger model (trained with another config) in shadow, then
A/B against the champion with a holdout, payments replayed with outcomes from the simulator's
truth, the decision log sunk to Parquet and read by ``approvals experiment report``
(``dev/experiment_demo.py``); finally print the key figures and where the plots are.
Settings come from the environment: ``DEMO_DIR`` (default ``.demo``), ``DEMO_PAYMENTS``
(default 150000), ``DEMO_SEED`` (default 7), ``DEMO_EXPERIMENT_PAYMENTS`` (per phase, default
3000).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from approvals.cli.main import app

if TYPE_CHECKING:
    from dev.stack import LocalStack


def _run(title: str, args: list[str]) -> None:
    print(f"\n== {title}: approvals {' '.join(args)}", flush=True)
    start = time.monotonic()
    code = app(args=args, standalone_mode=False)
    if isinstance(code, int) and code:
        raise SystemExit(f"demo step '{title}' failed with exit code {code}")
    print(f"   ({time.monotonic() - start:.1f}s)", flush=True)


def offline(root: Path, payments: int, seed: int) -> dict[str, Path]:
    """Simulate, train, evaluate on the test period, compare policies, gate the model."""
    sim, model, report = root / "sim", root / "model", root / "report"
    _run(
        "simulate",
        ["simulate", "--payments", str(payments), "--seed", str(seed), "--out", str(sim)],
    )
    _run("train", ["train", "--data", str(sim / "attempts.parquet"), "--out", str(model)])
    test_rows = _test_period(sim / "attempts.parquet", model, root / "test.parquet")
    _run(
        "evaluate",
        ["evaluate", "--model", str(model), "--data", str(test_rows),
         "--truth", str(sim / "truth.parquet"), "--out", str(report)],
    )  # fmt: skip
    _run(
        "policy-eval",
        ["policy-eval", "--model", str(model), "--data", str(sim / "attempts.parquet"),
         "--truth", str(sim / "truth.parquet"), "--out", str(report / "policies.json")],
    )  # fmt: skip
    _run("gate (first model: absolute thresholds)",
         ["gate", "--candidate", str(model), "--data", str(test_rows)])  # fmt: skip
    return {"sim": sim, "model": model, "report": report, "test": test_rows}


def _test_period(attempts: Path, model: Path, out: Path) -> Path:
    """Attempts after the model's feature state: the held-out test period."""
    import pandas as pd

    spec = json.loads((model / "features.json").read_text())
    frame = pd.read_parquet(attempts)
    end = pd.Timestamp(spec["state_end"])
    times = pd.to_datetime(frame["event_time"], utc=True).dt.tz_convert(None)
    frame.loc[times > end].to_parquet(out, index=False)
    return out


def summary(paths: dict[str, Path]) -> str:
    """The figures worth reading, and where the plots are."""
    report = json.loads((paths["report"] / "metrics.json").read_text())
    policies = json.loads((paths["report"] / "policies.json").read_text())
    overall, oracle = report["overall"], report.get("oracle", {})
    routing, retries = policies["routing"], policies["retries"]
    lines = [
        "",
        "== demo summary",
        f"model {report['model_version']} on {report['rows']:,} held-out attempts:",
        f"  log loss {overall['log_loss']:.4f} (oracle {oracle.get('log_loss', float('nan')):.4f},"
        f" ratio {oracle.get('ratio', float('nan')):.3f}), ECE {overall['ece']:.4f},"
        f" ROC-AUC {overall['roc_auc']:.3f}",
        f"  routing approval: static {routing['static']['approval_rate']:.2%}, model "
        f"{routing['model']['approval_rate']:.2%}, oracle {routing['oracle']['approval_rate']:.2%}",
        "  retries recovered: always-on-soft "
        f"{retries['always_on_soft']['recovered_payments']:.0f},"
        f" model {retries['model']['recovered_payments']:.0f},"
        f" oracle {retries['oracle']['recovered_payments']:.0f}",
        f"plots: {paths['report']}/*.png   metrics: {paths['report']}/metrics.json",
    ]
    return "\n".join(lines)


def online(paths: dict[str, Path], root: Path) -> None:
    """Build the bento, materialize features into Redis, serve it, call it over HTTP and gRPC."""
    from dev import calls as demo_calls
    from dev.stack import LocalStack, build_bento, state_of

    data = paths["sim"] / "attempts.parquet"
    workdir = root / "serve"
    workdir.mkdir(parents=True, exist_ok=True)
    print("\n== bento: bento/bundle.py (service, model package, serving-only deps)", flush=True)
    start = time.monotonic()
    tag = build_bento(paths["model"], workdir / "bentoml", challenger=paths.get("challenger"))
    print(f"built {tag} in BENTOML_HOME={workdir / 'bentoml'}", flush=True)
    print(f"   ({time.monotonic() - start:.1f}s)", flush=True)
    print(f"\n== serve: redis-server, materialize, bentoml serve {tag} (HTTP + gRPC)", flush=True)
    log = workdir / "serve.log"
    stack = LocalStack(workdir, bento=tag, state=state_of(data), log=log,
                       redis_url=os.environ.get("REDIS_URL") or None)  # fmt: skip
    try:
        service = stack.start().service
        print(f"serving on {service.http} (HTTP) and {service.grpc} (gRPC)", flush=True)
        attempts, routes = demo_calls.request_attempts(data)
        demo_calls.http_calls(service, attempts, routes)
        demo_calls.grpc_calls(service, attempts, routes)
        demo_calls.outcome_calls(service, attempts)
        if "challenger" in paths:
            experiment(paths, root, stack)
    finally:
        code = stack.stop()
        print(f"\nservice stopped gracefully (exit code {code}); log: {log}")


def train_challenger(paths: dict[str, Path], root: Path) -> None:
    """A second model on the same data with another training config: the challenger."""
    import yaml

    from dev.experiment_demo import CHALLENGER_CONFIG

    config = root / "challenger.yaml"
    config.write_text(yaml.safe_dump(CHALLENGER_CONFIG))
    paths["challenger"] = root / "challenger"
    _run("train the challenger (" + ", ".join(f"{k}={v}" for k, v in CHALLENGER_CONFIG.items())
         + ")", ["train", "--data", str(paths["sim"] / "attempts.parquet"), "--out",
                 str(paths["challenger"]), "--config", str(config)])  # fmt: skip


def experiment(paths: dict[str, Path], root: Path, stack: LocalStack) -> None:
    """Shadow, then A/B with a holdout, on replayed payments; sink; the experiment report."""
    from dev import experiment_demo as ex

    count = int(os.environ.get("DEMO_EXPERIMENT_PAYMENTS", "3000"))
    sink = root / "experiment" / "decisions"
    for phase, env, offset in (("shadow", ex.SHADOW, count), ("ab", ex.AB, 0)):
        stack.service.stop()
        ex.clear_stream(stack.url)  # the phase's log holds its own decisions only
        stack.env = {**stack.env, **env}
        print(f"\n== experiment, {phase}: " + " ".join(f"{k}={v}" for k, v in env.items()))
        service = stack.start_service()
        attempts, truth = ex.payments(paths["sim"], count, offset)
        played = ex.play(service, attempts, truth, seed=len(phase))
        print(f"   {len(attempts):,} payments ranked over gRPC, arms {played.arms}; "
              f"{played.applied:,} outcomes reported", flush=True)  # fmt: skip
        stack.service.stop()  # drains the decision log queue into the stream
        out = sink / phase
        _run(f"sink the {phase} decisions",
             ["decisions", "sink", "--redis-url", stack.url, "--out", str(out), "--once",
              "--group", f"demo-{phase}", "--metrics-port", "0"])  # fmt: skip
        if phase == "shadow":
            print(ex.shadow_summary(out), flush=True)
    report = root / "experiment" / "report"
    _run("experiment report",
         ["experiment", "report", "--log", str(sink / "ab"), "--out", str(report),
          "--shares", ex.AB_SHARES])  # fmt: skip
    print("\n".join(ex.report_lines(ex.read_report(report))))
    print(f"report: {report}/report.json, {report}/uplift.png", flush=True)


def main() -> None:
    """Run the demo with settings from the environment."""
    root = Path(os.environ.get("DEMO_DIR", ".demo"))
    payments = int(os.environ.get("DEMO_PAYMENTS", "150000"))
    seed = int(os.environ.get("DEMO_SEED", "7"))
    root.mkdir(parents=True, exist_ok=True)
    paths = offline(root, payments, seed)
    if os.environ.get("DEMO_SERVE", "1") != "0":
        train_challenger(paths, root)
        online(paths, root)
    print(summary(paths))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
