"""End to end through the console script: simulate, train, evaluate, predict, policy-eval, gate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from approvals.cli.main import main


def approvals(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a subprocess."""
    code = "from approvals.cli.main import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )


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


def test_gate_passes_or_fails_with_exit_codes(run: Path, tmp_path: Path) -> None:
    data = str(run / "sim" / "attempts.parquet")
    strict = tmp_path / "gate.yaml"
    strict.write_text(
        "min_rows: 1\nrelative: {max_log_loss_worsening: 0.0, max_ece_worsening: 0.0}\n"
        "absolute: {max_ece: 0.0001, min_roc_auc: 0.999}\n"
        "segments: {columns: null, min_count: 100, max_log_loss_worsening: 0.0}\n"
    )
    failed = approvals(
        "gate", "--candidate", str(run / "model"), "--data", data, "--config", str(strict)
    )
    assert failed.returncode == 1, "a candidate below the thresholds must not ship"
    assert "FAIL" in failed.stdout
    same = approvals("gate", "--candidate", str(run / "model"), "--champion", str(run / "model"),
                     "--data", data)  # fmt: skip
    assert same.returncode == 0, f"a model is as good as itself: {same.stdout}"


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
