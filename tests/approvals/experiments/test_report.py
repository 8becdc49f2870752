"""The experiment report on simulated experiments whose true uplift is known."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from approvals.cli.exits import ExitCode
from approvals.cli.main import main
from approvals.errors import UserError
from approvals.experiments.assignment import Split, assign
from approvals.experiments.log import validate_log
from approvals.experiments.report import experiment_report, parse_shares, write_report
from approvals.experiments.simulated import simulate_experiment
from approvals.simulate import Simulation
from tests.approvals.experiments.conftest import SHARES

# the challenger routes by the true probabilities (noise 0): a large, known uplift
STRONG = {"champion": 0.5, "challenger": 0.0, "holdout": None}


EVEN = {"champion": 1.0, "challenger": 1.0, "holdout": 1.0}


def _report(
    sim: Simulation, start: datetime, policies: dict, shares: dict = SHARES, seed: int = 3,
    **kwargs: object,
) -> tuple[dict, dict]:  # fmt: skip
    played = simulate_experiment(sim, start, policies, shares, seed=seed, **kwargs)  # type: ignore[arg-type]
    return experiment_report(validate_log(played.log), shares=shares, start=start), played.truth


def test_the_report_finds_a_real_uplift_and_its_interval_holds_the_truth(
    experiment_sim: Simulation, experiment_start: datetime
) -> None:
    # given an experiment whose challenger routes to the truly best route, arms a third each
    report, truth = _report(experiment_sim, experiment_start, STRONG, EVEN)
    # then every arm is reported with the documented fields
    assert set(report["arms"]) == {"champion", "challenger", "holdout"}
    for arm in report["arms"].values():
        assert {"attempts", "approval_rate", "approved_value"} <= set(arm)
    # and the challenger's uplift over holdout is significant and its interval holds the truth
    uplift = {(u["arm"], u["versus"], u["metric"]): u for u in report["uplift"]}
    got = uplift["challenger", "holdout", "approval_rate"]
    true = truth["challenger"]["approval_rate"] - truth["holdout"]["approval_rate"]
    assert got["ci95"][0] <= true <= got["ci95"][1], f"{true:.4f} outside {got['ci95']}"
    assert got["significant"] and got["estimate"] > 0, got
    # and champion vs holdout, challenger vs champion are there for every metric, no more
    pairs = {(a, v) for a, v, _ in uplift}
    assert pairs == {("champion", "holdout"), ("challenger", "holdout"), ("challenger", "champion")}
    assert {m for _, _, m in uplift} == {"approval_rate", "payment_approval_rate", "approved_value"}
    assert not report["srm"]["flagged"]
    assert "CUPED" in report["method"]["variance_reduction"]


def test_a_a_experiments_hold_zero_in_most_runs(
    experiment_sim: Simulation, experiment_start: datetime
) -> None:
    # given 20 A/A experiments: champion and challenger the same model
    same = {"champion": 0.5, "challenger": 0.5, "holdout": None}
    held = []
    for seed in range(20):
        report, truth = _report(experiment_sim, experiment_start, same, seed=seed)
        assert truth["champion"] == truth["challenger"]
        held += [
            u["ci95"][0] <= 0 <= u["ci95"][1] for u in report["uplift"]
            if (u["arm"], u["versus"]) == ("challenger", "champion")
        ]  # fmt: skip
    # then their difference's 95% interval holds 0 in about 95% of them
    assert np.mean(held) >= 0.85, f"0 held in {np.mean(held):.0%} of A/A intervals"


def test_a_broken_split_is_flagged(experiment_sim: Simulation, experiment_start: datetime) -> None:
    # given a log that lost a fifth of the challenger's payments
    report, _ = _report(experiment_sim, experiment_start, STRONG, lose={"challenger": 0.2})
    # then the sample-ratio test flags it
    assert report["srm"]["flagged"] and report["srm"]["p_value"] < 0.001


def test_payments_in_two_arms_are_counted_and_left_out(
    experiment_sim: Simulation, experiment_start: datetime
) -> None:
    # given a log where 5 payments have a retry logged in another arm
    played = simulate_experiment(experiment_sim, experiment_start, STRONG, SHARES, seed=3)
    log = validate_log(played.log)
    period = log[log["decided_at"] >= np.datetime64(experiment_start)]
    moved = period.iloc[:5].assign(
        attempt_id=lambda f: f["attempt_id"] + "-r", attempt_number=2, previous_response_code="05",
        variant=lambda f: np.where(f["variant"] == "holdout", "champion", "holdout"),
    )  # fmt: skip
    report = experiment_report(validate_log(pd.concat([log, moved])), start=experiment_start)
    # then they are counted as broken assignments and not in any arm
    assert report["assignment"]["payments_in_several_arms"] == 5
    total = sum(arm["payments"] for arm in report["arms"].values())
    assert total == period["payment_id"].nunique() - 5


def test_unlabelled_attempts_are_counted_not_scored(
    experiment_sim: Simulation, experiment_start: datetime
) -> None:
    played = simulate_experiment(experiment_sim, experiment_start, STRONG, SHARES, seed=3)
    log = validate_log(played.log)
    pending = log.index[-50:]
    log.loc[pending, "approved"] = pd.NA
    log.loc[pending, "response_code"] = None
    report = experiment_report(log, start=experiment_start)
    assert sum(a["unlabelled_attempts"] for a in report["arms"].values()) == 50


def test_shares_are_parsed_and_bad_ones_named() -> None:
    assert parse_shares("champion=0.45, challenger=0.45,holdout=0.1") == pytest.approx(SHARES)
    for bad in ("champion", "champion=x", "champion=-1", "a=1,a=2", "a=0"):
        with pytest.raises(UserError, match="--shares"):
            parse_shares(bad)


def test_assignment_is_stable_and_follows_the_shares() -> None:
    ids = [f"pay-{i}" for i in range(20_000)]
    arms = assign(ids, SHARES, salt="s")
    assert (assign(ids, SHARES, salt="s") == arms).all(), "the same ids, the same arms"
    assert not (assign(ids, SHARES, salt="t") == arms).all(), "another salt, another split"
    share = {a: float(np.mean(arms == a)) for a in SHARES}
    assert share == pytest.approx(SHARES, abs=0.01)
    split = Split(SHARES, salt="s")
    assert [split.arm(i) for i in ids[:2000]] == arms[:2000].tolist(), "one at a time, the same"


def test_the_cli_writes_the_report_and_refuses_a_bad_log(
    experiment_sim: Simulation, experiment_start: datetime, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    played = simulate_experiment(experiment_sim, experiment_start, STRONG, SHARES, seed=3)
    played.log.to_parquet(tmp_path / "log.parquet")
    # when reported through the command line
    main([
        "experiment", "report", "--log", str(tmp_path / "log.parquet"), "--out",
        str(tmp_path / "out"), "--shares", "champion=0.45,challenger=0.45,holdout=0.10",
        "--start", experiment_start.isoformat() + "Z",
    ])  # fmt: skip
    # then report.json has the documented shape and a PNG is beside it
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {"arms", "uplift", "srm"} <= set(report)
    assert {"arm", "versus", "metric", "estimate", "ci95"} <= set(report["uplift"][0])
    assert {"p_value", "flagged"} <= set(report["srm"])
    assert (tmp_path / "out" / "uplift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "challenger vs holdout approval_rate" in capsys.readouterr().out
    # and a log without p_approve exits 2 naming the column
    played.log.drop(columns="p_approve").to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(SystemExit) as done:
        main(
            [
                "experiment",
                "report",
                "--log",
                str(tmp_path / "bad.parquet"),
                "--out",
                str(tmp_path / "x"),
            ]
        )
    assert done.value.code == ExitCode.USER_ERROR
    assert "p_approve" in capsys.readouterr().err


def test_a_failed_write_keeps_the_previous_report(tmp_path: Path) -> None:
    good = {"arms": {}, "uplift": [], "srm": {"p_value": 1.0, "flagged": False}}
    write_report(good, tmp_path)
    before = (tmp_path / "report.json").read_text()
    with pytest.raises(TypeError):
        write_report({**good, "arms": {"x": object()}}, tmp_path)
    assert (tmp_path / "report.json").read_text() == before
