"""End to end through the console script: simulate, train, evaluate, predict, policy-eval, gate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from approvals.cli.exits import ExitCode
from approvals.cli.main import main

SCRIPT = Path(sys.executable).with_name("approvals")
# The console entry point with one fault planted: the gate's comparison raises, as a bug would.
CRASHING = (
    "import approvals.evaluation.gate as gate\n"
    "def compare(*args, **kwargs):\n"
    "    raise RuntimeError('planted bug')\n"
    "gate.compare = compare\n"
    "from approvals.cli.main import main\n"
    "main()\n"
)


def approvals(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script in a subprocess."""
    assert SCRIPT.exists(), f"the console script is installed beside python: {SCRIPT}"
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    sim = root / "sim"
    done = approvals(
        "simulate", "--payments", "6000", "--seed", "3", "--days", "21", "--out", str(sim)
    )
    assert done.returncode == 0, done.stderr
    config = root / "train.yaml"
    config.write_text("learning_rate: 0.1\nmax_rounds: 200\nmin_data_in_leaf: 50\n")
    done = approvals("train", "--data", str(sim / "attempts.parquet"), "--out", str(root / "model"),
                     "--config", str(config))  # fmt: skip
    assert done.returncode == 0, done.stderr
    weak = root / "weak.yaml"
    weak.write_text("max_rounds: 1\nnum_leaves: 2\nstack: false\nrefit: false\n")
    done = approvals("train", "--data", str(sim / "attempts.parquet"), "--out", str(root / "worse"),
                     "--config", str(weak))  # fmt: skip
    assert done.returncode == 0, done.stderr
    return root


def test_evaluate_writes_metrics_and_plots(run: Path) -> None:
    out = run / "report"
    done = approvals("evaluate", "--model", str(run / "model"), "--data",
                     str(run / "sim" / "attempts.parquet"), "--truth",
                     str(run / "sim" / "truth.parquet"), "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "metrics.json").read_text())
    assert report["oracle"]["ratio"] >= 1.0 - 1e-3, "nothing beats the truth by much"
    for segment in ("issuer_country", "card_brand", "route_id", "attempt_number"):
        assert segment in report["segments"], f"metrics per {segment}"
    for png in ("reliability.png", "precision_recall.png", "approval_by_route_id.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{png} is a PNG"


def test_predict_writes_one_row_per_input_in_order(run: Path) -> None:
    attempts = pd.read_parquet(run / "sim" / "attempts.parquet").tail(500)
    unlabelled = run / "score.csv"
    attempts.drop(columns=["approved", "response_code"]).to_csv(unlabelled, index=False)
    out = run / "pred.parquet"
    history = str(run / "sim" / "attempts.parquet")
    done = approvals("predict", "--model", str(run / "model"), "--data", str(unlabelled),
                     "--out", str(out), "--history", history)  # fmt: skip
    assert done.returncode == 0, done.stderr
    pred = pd.read_parquet(out)
    assert list(pred.columns) == ["attempt_id", "p_approve"]
    assert pred["attempt_id"].tolist() == attempts["attempt_id"].tolist(), "input order kept"
    assert pred["p_approve"].between(0, 1).all()


def test_policy_eval_compares_against_the_oracle(run: Path) -> None:
    out = run / "policies.json"
    done = approvals("policy-eval", "--model", str(run / "model"), "--data",
                     str(run / "sim" / "attempts.parquet"), "--truth",
                     str(run / "sim" / "truth.parquet"), "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    routing, retries = report["routing"], report["retries"]
    assert routing["oracle"]["expected_value"] >= routing["static"]["expected_value"]
    assert routing["oracle"]["expected_value"] >= routing["model"]["expected_value"] - 1e-6
    assert retries["never"]["retries"] == 0
    assert retries["oracle"]["expected_value"] >= retries["model"]["expected_value"] - 1e-6
    assert "uplift/oracle" in done.stdout


def test_gate_refuses_a_worse_candidate_with_exit_3(run: Path, tmp_path: Path) -> None:
    # given a champion and a one-stump candidate trained on the same data
    data = str(run / "sim" / "attempts.parquet")
    # when the gate compares them on the same attempts
    report = tmp_path / "gate.json"
    refused = approvals("gate", "--candidate", str(run / "worse"), "--champion",
                        str(run / "model"), "--data", data, "--report", str(report))  # fmt: skip
    # then the candidate must not ship, and that is told apart from a crash
    assert refused.returncode == ExitCode.GATE_REFUSED, f"refusal is 3: {refused.stderr}"
    assert "FAIL" in refused.stdout and "Traceback" not in refused.stderr, refused.stdout
    assert json.loads(report.read_text())["passed"] is False, "report written"
    same = approvals("gate", "--candidate", str(run / "model"), "--champion", str(run / "model"),
                     "--data", data)  # fmt: skip
    assert same.returncode == ExitCode.OK, f"a model is as good as itself: {same.stdout}"


def test_gate_refuses_below_absolute_thresholds_with_exit_3(run: Path, tmp_path: Path) -> None:
    strict = tmp_path / "gate.yaml"
    strict.write_text(
        "min_rows: 1\nrelative: {max_log_loss_worsening: 0.0, max_ece_worsening: 0.0}\n"
        "absolute: {max_ece: 0.0001, min_roc_auc: 0.999}\n"
        "segments: {columns: null, min_count: 100, max_log_loss_worsening: 0.0}\n"
    )
    failed = approvals("gate", "--candidate", str(run / "model"), "--data",
                       str(run / "sim" / "attempts.parquet"), "--config", str(strict))  # fmt: skip
    assert failed.returncode == ExitCode.GATE_REFUSED, "below the thresholds: must not ship"
    assert "FAIL" in failed.stdout


def test_gate_crash_exits_1_not_3(run: Path) -> None:
    # given the console entry point with a planted bug in the comparison
    argv = ["gate", "--candidate", str(run / "model"), "--data",
            str(run / "sim" / "attempts.parquet")]  # fmt: skip
    # when the gate runs
    done = subprocess.run(
        [sys.executable, "-c", CRASHING, *argv], capture_output=True, text=True, check=False
    )
    # then the exit code says "unexpected", never "refused", and the traceback is kept
    assert done.returncode == ExitCode.UNEXPECTED, f"a crash is 1: {done.returncode}"
    assert "planted bug" in done.stderr and "Traceback" in done.stderr, done.stderr


def test_gate_bad_input_exits_2(run: Path, tmp_path: Path) -> None:
    data = str(run / "sim" / "attempts.parquet")
    cases = {
        "missing candidate": ("--candidate", str(tmp_path / "nope"), "--data", data),
        "missing data": ("--candidate", str(run / "model"), "--data", str(tmp_path / "x.csv")),
        "unknown option": ("--candidate", str(run / "model"), "--data", data, "--bogus"),
    }
    for case, argv in cases.items():
        done = approvals("gate", *argv)
        assert done.returncode == ExitCode.USER_ERROR, f"{case}: exit 2, got {done.returncode}"
        assert "Traceback" not in done.stderr, f"{case}: no traceback for a user mistake"


def test_bad_file_exits_2_naming_the_column(run: Path, tmp_path: Path) -> None:
    bad = pd.read_parquet(run / "sim" / "attempts.parquet").head(50)
    bad.loc[3, "card_bin"] = "12ab"
    path = tmp_path / "bad.parquet"
    bad.to_parquet(path)
    done = approvals("train", "--data", str(path), "--out", str(tmp_path / "m"))
    assert done.returncode == 2
    assert "card_bin" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "m").exists(), "nothing written on bad input"


def test_missing_model_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as info:
        main(
            [
                "predict",
                "--model",
                str(tmp_path),
                "--data",
                str(tmp_path / "x.csv"),
                "--out",
                "o.csv",
            ]
        )
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
