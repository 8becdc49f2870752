"""The HTTP timeout middleware: 504 on time-out, and nothing of an answered request kept alive."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref
from typing import Any

import pytest
from bentoml._internal.server.http import traffic as bentoml_traffic
from traffic import PromptTimeoutMiddleware

REQUEST: contextvars.ContextVar[object] = contextvars.ContextVar("request")


class Payload:
    """Stands for a request's object graph (BentoML's context vars hold request and span)."""


async def answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def never(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await asyncio.sleep(60)


async def call(middleware: Any) -> tuple[list[dict[str, Any]], weakref.ref[Payload]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    payload = Payload()
    REQUEST.set(payload)
    await middleware({"type": "http"}, receive, send)
    ref = weakref.ref(payload)
    del payload
    REQUEST.set(None)
    return sent, ref


@pytest.mark.parametrize(("cls", "kept"), [(bentoml_traffic.TimeoutMiddleware, True),
                                           (PromptTimeoutMiddleware, False)])  # fmt: skip
def test_an_answered_request_is_released_at_once(cls: type, kept: bool) -> None:
    async def main() -> tuple[list[dict[str, Any]], bool]:
        sent, ref = await asyncio.create_task(call(cls(answer, timeout=30)))
        gc.collect()
        return sent, ref() is not None

    sent, alive = asyncio.run(main())
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    # BentoML's own middleware keeps it for `timeout` seconds (the reason for the subclass)
    assert alive is kept


def test_a_request_past_the_timeout_gets_504() -> None:
    async def main() -> list[dict[str, Any]]:
        sent, _ = await call(PromptTimeoutMiddleware(never, timeout=0.05))
        return sent

    sent = asyncio.run(main())
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 504


def test_install_makes_bentoml_build_the_prompt_middleware() -> None:
    import service  # noqa: F401  (importing the service installs it)
    from bentoml._internal.server.base_app import BaseAppFactory

    class Factory(BaseAppFactory):
        name = "t"

        @property
        def on_startup(self) -> list[Any]:
            return []

        @property
        def on_shutdown(self) -> list[Any]:
            return []

    classes = [m.cls for m in Factory(timeout=5).middlewares]
    assert classes == [PromptTimeoutMiddleware]
