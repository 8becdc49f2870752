"""A do-nothing BentoML service: the HTTP floor the service's CPU per call is compared to.

``POST /score`` takes any JSON object under ``attempt`` and answers a constant for its id, with
the service's own BentoML settings (no access log, one worker, BentoML's request timeout
without its 10 s retention of every request: ``bento/traffic.py``, without which the
collector's pauses make this floor's p99 tens of milliseconds). Run by the benchmark from
``bench/`` with ``bento/`` on ``PYTHONPATH``::

    PYTHONPATH=../bento bentoml serve null_service:Null --port 3001
"""

from __future__ import annotations

import gc
from typing import Any

import bentoml
import traffic  # the service's module: bench/cpu.py puts bento/ on PYTHONPATH

traffic.install()


@bentoml.service(name="null", workers=1, logging={"access": {"enabled": False}})
class Null:
    """Answers ``/score`` without looking at the attempt beyond its id."""

    @bentoml.on_startup
    def freeze(self) -> None:
        """As the service does: what startup allocated stays out of the collector's passes."""
        gc.collect()
        gc.freeze()

    @bentoml.api(route="/score")
    async def score(self, attempt: dict[str, Any]) -> dict[str, Any]:
        """A constant answer for the attempt's id."""
        return {
            "attempt_id": attempt.get("attempt_id"), "p_approve": 0.5,
            "model_version": "null", "degraded": False,
        }  # fmt: skip
