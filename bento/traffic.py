"""The HTTP front of the service: what every request meets before and after an endpoint.

- :class:`PromptTimeoutMiddleware`: BentoML's per-request timeout without its retention of
  every answered request. BentoML 1.4's ``TimeoutMiddleware`` schedules
  ``loop.call_later(timeout, ...)`` for each HTTP request and never cancels it, so the timer,
  and through its callback the request's whole object graph (scope, send channel, tracing
  span), lives ``traffic.timeout`` seconds after the answer. At a few hundred calls per second
  that is ~150k long-lived objects, which the collector's full passes walk: measured as
  40-120 ms stalls in the HTTP p99 (``docs/serving.md``). The subclass keeps the behaviour
  (HTTP 504 after ``timeout``) and cancels the timer once the request is answered.
- :class:`JsonBodies`: a POST must carry a non-empty body declared as JSON (or undeclared, as
  BentoML reads it as JSON), else it is refused with 415 or 400 before BentoML parses it:
  BentoML picks a parser by ``Content-Type``, and its form parser's errors (a
  ``multipart/form-data`` without a boundary) escape as HTTP 500. It also answers BentoML's
  4xx errors as the JSON object they are declared as, not the one-element list BentoML 1.4
  sends for a ``BentoMLException`` (our 429).
- :class:`OpenApiErrors`: ``/docs.json`` with the error answers declared as they are sent
  (BentoML documents ``detail`` of a 400 as a string; it is pydantic's list of errors) and the
  refusals above (415, 429, 504) declared at all.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
JSON_TYPE = "application/json"
SHOWN = 80  # characters of a refused Content-Type repeated in the error


class PromptTimeoutMiddleware(traffic.TimeoutMiddleware):
    """``TimeoutMiddleware`` whose timer is cancelled once the request is answered."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; answer 504 if it has not started answering within ``timeout``."""
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message: Any) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        app = asyncio.ensure_future(self.app(scope, receive, _send))
        try:
            await waiter
        except TimeoutError:
            if app.cancel():
                answer = JSONResponse(
                    {"error": f"Not able to process the request in {self.timeout} seconds"},
                    status_code=504,
                )
                await answer(scope, receive, send)
        else:
            timer.cancel()  # answering started: the timeout no longer applies
            await app
        finally:
            timer.cancel()
        return None


def install() -> None:
    """Make BentoML's app factory build :class:`PromptTimeoutMiddleware` (before serving)."""
    traffic.TimeoutMiddleware = PromptTimeoutMiddleware  # type: ignore[misc]


def refusal(headers: Iterable[tuple[bytes, bytes]]) -> tuple[int, str] | None:
    """Why a POST with these (ASGI, lower-case) headers cannot hold a JSON body, or None.

    Returns:
        ``(415, message)`` for a media type other than JSON or a charset other than UTF-8,
        ``(400, message)`` for a body declared empty (``Content-Length: 0``, or neither a
        length nor chunked encoding), None when the body may be JSON.
    """
    found = dict(headers)
    declared = found.get(b"content-type")
    if declared is not None:
        media, _, params = declared.decode("latin-1").partition(";")
        media = media.strip().lower()
        if media != JSON_TYPE:
            return 415, f"Content-Type {media[:SHOWN]!r} is not supported: send {JSON_TYPE}"
        charset = _charset(params)
        if charset not in (None, "utf-8", "utf8"):
            return 415, f"charset {charset[:SHOWN]!r} is not supported: send UTF-8 JSON"
    length = found.get(b"content-length")
    chunked = b"chunked" in found.get(b"transfer-encoding", b"").lower()
    if length == b"0" or (length is None and not chunked):
        return 400, "the request body is empty: send a JSON object"
    return None


def _charset(params: str) -> str | None:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


class JsonBodies:
    """ASGI middleware: refuse POSTs that cannot hold JSON; answer 4xx errors as objects."""

    def __init__(self, app: App) -> None:
        """Wrap ``app`` (BentoML passes the inner ASGI app)."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse the request, or run it with 4xx list bodies unwrapped."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        refused = refusal(scope["headers"])
        if refused is not None:
            status, message = refused
            return await JSONResponse({"error": message}, status)(scope, receive, send)
        return await self.app(scope, receive, _ErrorObjects(send))


class _ErrorObjects:
    """A ``send`` that rewrites a 4xx JSON body ``[{...}]`` as ``{...}``; passes the rest."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.held: Message | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
            self.held = message  # wait for the body (one message for a JSONResponse)
            return
        if self.held is not None and message["type"] == "http.response.body":
            start, self.held = self.held, None
            body = message.get("body", b"")
            if body.startswith(b"[") and not message.get("more_body", False):
                body = _unwrapped(body)
                headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
                start = {**start, "headers": [*headers, (b"content-length", b"%d" % len(body))]}
                message = {**message, "body": body}
            await self.send(start)
        await self.send(message)


def _unwrapped(body: bytes) -> bytes:
    try:
        parsed = json.loads(body)
    except ValueError:
        return body
    if isinstance(parsed, list) and len(parsed) == 1 and isinstance(parsed[0], dict):
        return json.dumps(parsed[0]).encode()
    return body


def _error(description: str, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    properties: dict[str, Any] = {"error": {"type": "string", "title": "Message"}}
    if detail is not None:
        properties["detail"] = detail
    return {
        "type": "object", "title": description, "description": description,
        "required": ["error"], "properties": properties,
    }  # fmt: skip


# What a 400 carries: pydantic's errors (``include_input=False``), or only the error line.
VALIDATION_DETAIL = {
    "type": "array",
    "title": "Error Detail",
    "items": {
        "type": "object",
        "required": ["loc", "msg", "type"],
        "properties": {
            "loc": {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]}},
            "msg": {"type": "string"},
            "type": {"type": "string"},
        },
    },
}
ERRORS = {
    "400": ("InvalidArgument", _error("Bad Request", VALIDATION_DETAIL)),
    "415": ("UnsupportedMediaType", _error("Unsupported Media Type")),
    "429": ("TooManyRequests", _error("Too Many Requests: retry with backoff")),
    "504": ("GatewayTimeout", _error("Gateway Timeout")),
}
# Answers only some operations give, by path.
PATH_ERRORS = {
    "/report_outcomes": {
        "503": (
            "ServiceUnavailable",
            _error("Service Unavailable: the online store cannot take outcomes now; retry"),
        ),
    },
}


def declare_errors(spec: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with every POST's error answers declared as they are sent."""
    spec = copy.deepcopy(spec)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for path, item in spec.get("paths", {}).items():
        operation = item.get("post")
        if operation is None:
            continue
        errors = {**ERRORS, **PATH_ERRORS.get(path, {})}
        for status, (name, schema) in errors.items():
            schemas[name] = schema
            operation["responses"][status] = {
                "description": schema["description"],
                "content": {JSON_TYPE: {"schema": {"$ref": f"#/components/schemas/{name}"}}},
            }
    return spec


class OpenApiErrors:
    """ASGI middleware: answer ``GET /docs.json`` with :func:`declare_errors` applied."""

    def __init__(self, app: App, service: Any) -> None:
        """Wrap ``app``; ``service`` (a ``bentoml.Service``) makes the document, once."""
        self.app, self.service = app, service
        self.document: dict[str, Any] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the corrected document; pass every other request through."""
        if scope["type"] != "http" or scope["path"] != "/docs.json" or scope["method"] != "GET":
            return await self.app(scope, receive, send)
        if self.document is None:
            self.document = declare_errors(self.service.openapi_spec.asdict())
        return await JSONResponse(self.document)(scope, receive, send)
