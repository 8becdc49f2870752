"""A do-nothing BentoML service: the HTTP floor the service's CPU per call is compared to.

``POST /score`` takes any JSON object under ``attempt`` and answers a constant for its id, with
the service's own BentoML settings (no access log, one worker). Run by the benchmark from
``bench/``::

    bentoml serve null_service:Null --port 3001
"""

from __future__ import annotations

from typing import Any

import bentoml


@bentoml.service(name="null", workers=1, logging={"access": {"enabled": False}})
class Null:
    """Answers ``/score`` without looking at the attempt beyond its id."""

    @bentoml.api(route="/score")
    async def score(self, attempt: dict[str, Any]) -> dict[str, Any]:
        """A constant answer for the attempt's id."""
        return {
            "attempt_id": attempt.get("attempt_id"), "p_approve": 0.5,
            "model_version": "null", "degraded": False,
        }  # fmt: skip
