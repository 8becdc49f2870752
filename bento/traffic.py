"""BentoML's per-request HTTP timeout, without keeping every answered request alive.

BentoML 1.4's ``TimeoutMiddleware`` schedules ``loop.call_later(timeout, ...)`` for each HTTP
request and never cancels it, so the timer, and through its callback the request's whole
object graph (scope, send channel, tracing span), lives ``traffic.timeout`` seconds after the
answer (10 s here, 60 s by default). At a few hundred calls per second that is ~150k
long-lived objects, which the collector's full passes walk: measured as 40-120 ms stalls in the
HTTP p99 (``docs/serving.md``). This subclass keeps the behaviour (HTTP 504 after ``timeout``)
and cancels the timer as soon as the request is done, which releases the graph at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse

Scope = dict[str, Any]
Receive = Any
Send = Any


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
