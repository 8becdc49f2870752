"""``approvals monitor`` end to end: files written, exit codes, a real Pushgateway exchange."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from approvals.cli.exits import ExitCode
from approvals.cli.main import main
from approvals.cli.monitor import ALERTED
from approvals.model.reference import REFERENCE_FILE
from approvals.monitoring import simulated
from tests.approvals.monitoring.conftest import Monitored, served


def _run(*args: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(["monitor", *args])
        raise SystemExit(0)
    return int(done.value.code or 0)


@pytest.fixture(scope="module")
def logs(monitored: Monitored, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two days of log as Parquet: clean, and with a route outage on the second day."""
    root = tmp_path_factory.mktemp("logs")
    head = monitored.month[monitored.month["event_time"]
                           < pd.Timestamp(monitored.t0 + timedelta(days=2))]  # fmt: skip
    route = head["route_id"].value_counts().index[0]
    outage = simulated.route_outage(head, route, monitored.t0 + timedelta(days=1), 12.0, 0.9, 1)
    paths = {"clean": root / "clean.parquet", "outage": root / "outage.parquet"}
    served(head, monitored.package).to_parquet(paths["clean"])
    served(outage, monitored.package).to_parquet(paths["outage"])
    return paths


def _window(monitored: Monitored, day: int) -> list[str]:
    start, end = monitored.day(day)
    return ["--start", start.isoformat(), "--end", end.isoformat()]


def test_monitor_writes_the_report_metrics_and_plots(
    monitored: Monitored, package_dir: Path, logs: dict[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    code = _run("--model", str(package_dir), "--log", str(logs["outage"]), "--out",
                str(tmp_path), *_window(monitored, 1))  # fmt: skip
    assert code == ExitCode.OK, "alerts are not a failure without --fail-on-alert"
    report = json.loads((tmp_path / "monitor.json").read_text())
    assert set(report) == {"alerts", "metrics"}
    assert report["alerts"] and all(set(a) == {"kind", "segment", "value", "threshold"}
                                    for a in report["alerts"])  # fmt: skip
    assert any(a["kind"] == "approval_rate" for a in report["alerts"])
    assert report["metrics"]["skew"]["status"] == "checked", "features recomputed and compared"
    for name in ("psi.png", "calibration.png", "approval.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG", name
    families = {f.name: f for f in text_string_to_metric_families((tmp_path / "monitor.prom")
                                                                    .read_text())}  # fmt: skip
    alerts = [s for s in families["approvals_monitor_alert"].samples if s.value == 1]
    assert len(alerts) == len(report["alerts"])
    assert {"approvals_monitor_psi", "approvals_monitor_ece",
            "approvals_monitor_approval_rate"} <= set(families)  # fmt: skip
    assert "alert(s)" in capsys.readouterr().out


def test_fail_on_alert_exits_4_on_alerts_and_0_without(
    monitored: Monitored, package_dir: Path, logs: dict[str, Path], tmp_path: Path
) -> None:
    args = ["--model", str(package_dir), "--out", str(tmp_path), "--fail-on-alert",
            *_window(monitored, 1)]  # fmt: skip
    assert _run(*args, "--log", str(logs["outage"])) == ALERTED
    assert _run(*args, "--log", str(logs["clean"])) == ExitCode.OK


def test_a_csv_log_is_read_too(
    monitored: Monitored, package_dir: Path, logs: dict[str, Path], tmp_path: Path
) -> None:
    csv = tmp_path / "log.csv"
    pd.read_parquet(logs["clean"]).to_csv(csv, index=False)
    code = _run("--model", str(package_dir), "--log", str(csv), "--out", str(tmp_path / "o"),
                *_window(monitored, 0))  # fmt: skip
    assert code == ExitCode.OK
    assert json.loads((tmp_path / "o" / "monitor.json").read_text())["alerts"] == []


def test_a_log_missing_a_column_exits_2_naming_it(
    package_dir: Path, logs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.parquet"
    pd.read_parquet(logs["clean"]).drop(columns=["p_approve"]).to_parquet(bad)
    code = _run("--model", str(package_dir), "--log", str(bad), "--out", str(tmp_path / "o"))
    assert code == ExitCode.USER_ERROR
    assert "'p_approve'" in capsys.readouterr().err
    assert not (tmp_path / "o" / "monitor.json").exists(), "nothing written on bad input"


def test_a_package_without_a_reference_exits_2_naming_the_file(
    package_dir: Path, logs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    old = tmp_path / "old-model"
    shutil.copytree(package_dir, old)
    (old / REFERENCE_FILE).unlink()
    code = _run("--model", str(old), "--log", str(logs["clean"]), "--out", str(tmp_path / "o"))
    assert code == ExitCode.USER_ERROR
    assert REFERENCE_FILE in capsys.readouterr().err


def test_an_empty_window_and_a_bad_time_exit_2(
    package_dir: Path, logs: dict[str, Path], tmp_path: Path
) -> None:
    args = ["--model", str(package_dir), "--log", str(logs["clean"]), "--out", str(tmp_path)]
    assert _run(*args, "--start", "2030-01-01T00:00:00") == ExitCode.USER_ERROR
    assert _run(*args, "--end", "yesterday") == ExitCode.USER_ERROR


class _Recorder(BaseHTTPRequestHandler):
    """A Pushgateway stand-in: records each request's method, path and body, answers 200."""

    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()

    do_PUT = do_POST = _record  # noqa: N815

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def gateway() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.received
    server.shutdown()
    server.server_close()


def test_metrics_are_pushed_to_the_gateway_with_put(
    monitored: Monitored, package_dir: Path, logs: dict[str, Path], tmp_path: Path,
    gateway: tuple[str, list[tuple[str, str, bytes]]],
) -> None:  # fmt: skip
    url, received = gateway
    code = _run("--model", str(package_dir), "--log", str(logs["outage"]), "--out",
                str(tmp_path), "--push-gateway", url, "--push-job", "monitor_test",
                *_window(monitored, 1))  # fmt: skip
    assert code == ExitCode.OK
    assert [(m, p) for m, p, _ in received] == [("PUT", "/metrics/job/monitor_test")]
    pushed = {f.name: f for f in text_string_to_metric_families(received[0][2].decode())}
    saved = {f.name for f in text_string_to_metric_families((tmp_path / "monitor.prom")
                                                            .read_text())}  # fmt: skip
    assert set(pushed) == saved, "the gateway gets what monitor.prom holds"
    alerts = [s.labels for s in pushed["approvals_monitor_alert"].samples]
    assert any(a["kind"] == "approval_rate" for a in alerts)


def test_an_unreachable_gateway_fails_after_writing_the_report(
    package_dir: Path, logs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    closed = f"http://127.0.0.1:{server.server_address[1]}"
    server.server_close()  # nothing listens on that port any more
    code = _run("--model", str(package_dir), "--log", str(logs["clean"]), "--out",
                str(tmp_path), "--push-gateway", closed)  # fmt: skip
    assert code == ExitCode.UNEXPECTED
    assert (tmp_path / "monitor.json").is_file(), "the report is written before the push"
    assert "Pushgateway" in capsys.readouterr().err


def test_a_window_too_small_to_judge_still_writes_every_file(
    monitored: Monitored, package_dir: Path, logs: dict[str, Path], tmp_path: Path
) -> None:
    start = monitored.t0 + timedelta(hours=30)
    end = start + timedelta(minutes=15)
    code = _run("--model", str(package_dir), "--log", str(logs["clean"]), "--out", str(tmp_path),
                "--start", start.isoformat(), "--end", end.isoformat())  # fmt: skip
    assert code == ExitCode.OK
    report = json.loads((tmp_path / "monitor.json").read_text())
    assert report["alerts"] == [] and report["metrics"]["calibration"]["status"] == "too_few_rows"
    assert all((tmp_path / n).is_file() for n in ("monitor.prom", "psi.png", "calibration.png"))
