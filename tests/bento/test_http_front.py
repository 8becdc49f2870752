"""The HTTP front's middleware (``traffic.py``) on a small Starlette app: no server needed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import traffic
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SPEC = {
    "paths": {
        "/score": {"post": {"responses": {"200": {"description": "ok"}}}},
        "/livez": {"get": {"responses": {"200": {"description": "ok"}}}},
    },
    "components": {"schemas": {"InvalidArgument": {"properties": {"detail": {"type": "string"}}}}},
}


async def answer(request: Request) -> JSONResponse:
    """Answers as BentoML does: a 4xx BentoMLException as a one-element list."""
    status = int(request.query_params.get("status", "200"))
    body: Any = [{"error": "busy"}] if status == 429 else [{"attempt_id": "a"}]
    return JSONResponse(body, status_code=status)


Client = Callable[..., httpx.Response]


@pytest.fixture
def client() -> Client:
    """``client(method, url, **httpx_options)`` against the app behind both middlewares."""
    service = SimpleNamespace(openapi_spec=SimpleNamespace(asdict=lambda: SPEC))
    middleware = [
        Middleware(traffic.JsonBodies),
        Middleware(traffic.OpenApiErrors, service=service),
    ]
    app = Starlette(routes=[Route("/score", answer, methods=["POST"])], middleware=middleware)

    async def call(method: str, url: str, **options: Any) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://front") as http:
            return await http.request(method, url, **options)

    return lambda method, url, **options: asyncio.run(call(method, url, **options))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"content-type", b"application/json"), (b"content-length", b"2")], None),
        ([(b"content-type", b"Application/JSON; charset=UTF-8"), (b"content-length", b"2")], None),
        ([(b"content-length", b"2")], None),  # undeclared: BentoML reads it as JSON
        ([(b"transfer-encoding", b"chunked")], None),
        ([(b"content-type", b"multipart/form-data"), (b"content-length", b"2")], 415),
        ([(b"content-type", b"application/json; charset=utf-16"), (b"content-length", b"2")], 415),
        ([(b"content-type", b"application/json"), (b"content-length", b"0")], 400),
        ([(b"content-type", b"application/json")], 400),  # no length, not chunked: no body
    ],
)
def test_refusal_reads_the_headers_only(
    headers: list[tuple[bytes, bytes]], expected: int | None
) -> None:
    refused = traffic.refusal(headers)
    assert (refused[0] if refused else None) == expected, refused


def test_a_refused_post_never_reaches_the_endpoint(client: Client) -> None:
    answer = client("POST", "/score", content=b"{}", headers={"Content-Type": "text/csv"})
    assert answer.status_code == 415
    assert answer.json() == {
        "error": "Content-Type 'text/csv' is not supported: send application/json"
    }


def test_a_4xx_list_body_is_answered_as_the_object_it_holds(client: Client) -> None:
    busy = client("POST", "/score?status=429", json={})
    assert busy.status_code == 429
    assert busy.json() == {"error": "busy"}, "the declared error object, not a list"
    assert int(busy.headers["content-length"]) == len(busy.content)
    # and answers that are not client errors pass unchanged
    assert client("POST", "/score", json={}).json() == [{"attempt_id": "a"}]


def test_docs_declare_the_errors_as_sent(client: Client) -> None:
    spec = client("GET", "/docs.json").json()
    responses = spec["paths"]["/score"]["post"]["responses"]
    assert {"200", "400", "415", "429", "504"} <= set(responses), sorted(responses)
    assert set(spec["paths"]["/livez"]["get"]["responses"]) == {"200"}, "GETs take no body"
    detail = spec["components"]["schemas"]["InvalidArgument"]["properties"]["detail"]
    assert detail["type"] == "array", "pydantic's list of errors, not a string"
