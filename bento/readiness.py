"""Whether a worker may take traffic: what ``/readyz`` answers and gRPC health reports.

Ready once gRPC is up; with ``APPROVALS_REQUIRE_FEATURES`` also only while the online store's
live version holds the served model's features (same definitions and layout, a state ending at
or after the model's: :meth:`~approvals.features.online.OnlineFeatureStore.afeatures_status`);
with ``APPROVALS_REQUIRE_REDIS`` also only while the Redis breaker is closed.

A Redis that does not answer says nothing about the features, so the last verdict stands:
before any, the worker is not ready; once the features were seen, an outage is judged by the
``require_redis`` rule alone (degraded answers are accepted unless it is set), as without
``require_features``.
"""

from __future__ import annotations

import logging
from datetime import datetime

from config import ServingSettings
from telemetry import log_event

from approvals.features.live import FeaturesStatus, Readiness
from approvals.features.online import OnlineFeatureStore
from approvals.features.tiles import epoch_us


class ReadyCheck:
    """The readiness rule of one worker (call it with whether gRPC serves)."""

    def __init__(
        self, settings: ServingSettings, store: OnlineFeatureStore, state_end: str | None
    ) -> None:
        """Judge readiness for a model whose feature state ends at ``state_end`` (ISO, UTC)."""
        self.settings, self.store = settings, store
        self.model_end_us = epoch_us(datetime.fromisoformat(state_end)) if state_end else None
        self.features: FeaturesStatus | None = None  # the last verdict Redis gave

    async def __call__(self, serving: bool) -> bool:
        """True when the worker may take traffic."""
        if not serving:
            return False
        if self.settings.require_features and not await self._features_ready():
            return False
        return not self.settings.require_redis or self.store.breaker.state == "closed"

    async def _features_ready(self) -> bool:
        status = await self.store.afeatures_status(self.model_end_us)
        if status.readiness is not Readiness.UNREACHABLE:
            if self.features is None or status.readiness != self.features.readiness:
                level = logging.INFO if status.ready else logging.WARNING
                ready = "ready" if status.ready else "not ready"
                log_event(f"online features {ready}", level, reason=status.readiness.value,
                          detail=status.describe())  # fmt: skip
            self.features = status
        return self.features is not None and self.features.ready
