"""The demo's real calls to a served model: the same attempts over HTTP and over gRPC."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from dev.stack import Service
from dev.stubs import grpc_stubs

LABELS = ("approved", "response_code")


def request_attempts(data: Path, count: int = 3) -> tuple[list[dict[str, Any]], list[str]]:
    """Recent declined-then-retried style attempts, re-timed to just after the feature state."""
    frame = pd.read_parquet(data)
    end = pd.to_datetime(frame["event_time"], utc=True).max()
    routes = sorted(frame["route_id"].unique().tolist())[:4]
    rows = frame.loc[frame["attempt_number"] == 1].tail(count).drop(columns=list(LABELS))
    attempts: list[dict[str, Any]] = []
    for i, record in enumerate(rows.to_dict("records")):
        row = {str(k): (None if pd.isna(v) else v) for k, v in record.items()}
        row["event_time"] = (end + pd.Timedelta(minutes=1 + i)).isoformat()
        attempts.append(row)
    return attempts, [str(r) for r in routes]


def http_calls(service: Service, attempts: list[dict[str, Any]], routes: list[str]) -> None:
    """Score, RankRoutes and AdviseRetry over HTTP (JSON), printing each answer."""
    import httpx

    with httpx.Client(base_url=service.http, timeout=10) as client:
        _show("HTTP POST /score", client.post("/score", json={"attempt": attempts[0]}).json())
        batch = client.post("/score_batch", json={"attempts": attempts}).json()
        _show("HTTP POST /score_batch", batch)
        ranked = client.post("/rank_routes", json={"attempt": attempts[1], "route_ids": routes})
        _show("HTTP POST /rank_routes", ranked.json())
        for code in ("51", "14"):
            advice = client.post(
                "/advise_retry", json={"attempt": attempts[2], "response_code": code,
                                       "route_ids": routes},
            )  # fmt: skip
            _show(f"HTTP POST /advise_retry (decline {code})", advice.json())


def grpc_calls(service: Service, attempts: list[dict[str, Any]], routes: list[str]) -> None:
    """The same calls over gRPC with the generated ``approval.v1`` stubs."""
    import grpc

    pb, rpc = grpc_stubs()
    with grpc.insecure_channel(service.grpc) as channel:
        stub = rpc.ApprovalServiceStub(channel)
        messages = [_message(pb, a) for a in attempts]
        answers = [
            ("Score", stub.Score(pb.ScoreRequest(attempt=messages[0]), timeout=10)),
            ("ScoreBatch", stub.ScoreBatch(pb.ScoreBatchRequest(attempts=messages), timeout=10)),
            ("RankRoutes", stub.RankRoutes(
                pb.RankRoutesRequest(attempt=messages[1], route_ids=routes), timeout=10)),
            ("AdviseRetry (decline 91)", stub.AdviseRetry(
                pb.AdviseRetryRequest(attempt=messages[2], response_code="91", route_ids=routes),
                timeout=10)),
        ]  # fmt: skip
        for name, answer in answers:
            _show(f"gRPC approval.v1.ApprovalService/{name}", _as_dict(answer))


def outcome_calls(service: Service, attempts: list[dict[str, Any]]) -> None:
    """Report declines of a card's earlier attempts (HTTP, then again over gRPC: duplicates)
    and show the card's next score move."""
    import grpc
    import httpx

    probe = attempts[0]
    when = datetime.fromisoformat(probe["event_time"])
    earlier = []
    for k in range(3):  # three attempts of the same card, in the minute before the probe
        at = when - pd.Timedelta(seconds=45 - 10 * k)
        earlier.append(
            {
                **probe,
                "attempt_id": f"{probe['attempt_id']}-earlier-{k}",
                "event_time": at.isoformat(),
            }
        )
    outcomes = [{"attempt": a, "approved": False, "response_code": "51"} for a in earlier]
    pb, rpc = grpc_stubs()
    with httpx.Client(base_url=service.http, timeout=10) as client:
        before = client.post("/score", json={"attempt": probe}).json()["p_approve"]
        done = client.post("/report_outcomes", json={"outcomes": outcomes}).json()
        _show("HTTP POST /report_outcomes (3 declines, 51, of the card's earlier attempts)", done)
        with grpc.insecure_channel(service.grpc) as channel:
            messages = [pb.Outcome(attempt=_message(pb, a), approved=False, response_code="51")
                        for a in earlier]  # fmt: skip
            again = rpc.ApprovalServiceStub(channel).ReportOutcomes(
                pb.ReportOutcomesRequest(outcomes=messages), timeout=10
            )
            _show("gRPC approval.v1.ApprovalService/ReportOutcomes (the same again)",
                  _as_dict(again))  # fmt: skip
        after = client.post("/score", json={"attempt": probe}).json()["p_approve"]
    print(f"\n-- the card's next attempt: p_approve {before:.4f} before the outcomes, "
          f"{after:.4f} after ({after - before:+.4f})", flush=True)  # fmt: skip


def _message(pb: Any, attempt: dict[str, Any]) -> Any:
    fields = {k: v for k, v in attempt.items() if v is not None and k != "event_time"}
    message = pb.Attempt(**fields)
    message.event_time.FromDatetime(datetime.fromisoformat(attempt["event_time"]).astimezone(UTC))
    return message


def _show(title: str, answer: Any) -> None:
    print(f"\n-- {title}\n{json.dumps(answer, indent=1)}", flush=True)


def _as_dict(message: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
