"""Typed settings of the serving process, read once from the environment at service start.

A built bento carries ``serving.env`` beside this module (written by ``bundle.py``): it names
the model the bento was built with (``APPROVALS_MODEL_TAG``). Variables of the environment
take precedence over it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BUILT_SETTINGS = Path(__file__).resolve().parent / "serving.env"
MODEL_NAME = "approvals"  # the model's name in BentoML's model store
MAX_BATCH_SIZE = 2000  # rows; measured in docs/serving.md
MAX_LATENCY_MS = 1000  # shedding deadline of the batcher; measured in docs/serving.md


class ServingSettings(BaseSettings):
    """How the service runs.

    Attributes:
        model_dir: model package directory (``APPROVALS_MODEL_DIR``): local serving and tests.
            When set, it is served and ``model_tag`` is not used.
        model_tag: the model in BentoML's model store (``APPROVALS_MODEL_TAG``,
            ``approvals:<model_version>``), declared by the service so that a bento names
            and ships it; a built bento sets it in ``serving.env``.
        grpc_port: gRPC port (``GRPC_PORT``, default 50051).
        grpc_host: gRPC bind address.
        max_inflight: calls admitted at once; beyond, HTTP 429 / gRPC RESOURCE_EXHAUSTED.
        max_batch_size: most attempts (rows) in one batch of the adaptive batcher.
        max_latency_ms: queueing deadline of the batcher: a call still waiting for a batch
            slot after it is shed (HTTP 429 / gRPC RESOURCE_EXHAUSTED), not answered late.
        max_concurrent_batches: batches in progress at once (a batch awaiting Redis lets the
            next one compute).
        costs: cost configuration YAML (default: the one packaged with approvals).
        shutdown_grace_s: time in-flight gRPC calls get to finish on shutdown.
        require_redis: if true, ``/readyz`` fails while the online store is unreachable;
            by default degraded answers are accepted and the pod stays ready.
        require_features: if true (``APPROVALS_REQUIRE_FEATURES``; staging and production,
            where a Job preloads the features before the rollout), ``/readyz`` fails and gRPC
            health reports NOT_SERVING while the online store's live version lacks the served
            model's features: none, of other feature definitions or layout, or ending before
            the model's state end.
        outcomes_timeout_ms: the longest a ReportOutcomes call waits for its write to the
            online store (a batch of 1000 takes tens of milliseconds); beyond, HTTP 503 / gRPC
            UNAVAILABLE, and the batch is applied whole or not at all.
        workers: serving processes (``APPROVALS_WORKERS``, default 1; one per core the
            service may use). HTTP connections are spread over them by BentoML's shared
            socket, gRPC connections by the kernel (``SO_REUSEPORT`` on the gRPC port, set
            only when there is more than one worker): a connection stays with one process.
        decisions: whether every answer is appended to the decision log stream
            (``docs/decisions.md``).
        decisions_queue: answers waiting to be written at most; beyond, an answer is not
            logged and ``approvals_decisions_total{outcome="queue_full"}`` counts it.
        decisions_maxlen: the stream is trimmed to about this many entries (the sink reads
            them long before).
        decisions_features: whether entries carry the model's feature vector.
        challenger_dir, challenger_tag: the challenger model, as ``model_dir`` and
            ``model_tag`` name the champion (a bento declares and ships both).
        experiment: ``off`` (the champion answers), ``shadow`` (the challenger also scores
            every request, logged, never answered) or ``ab`` (``challenger_share`` of payments
            answered by the challenger); see ``bento/arms.py``.
        challenger_share: share of payments the challenger answers in mode ``ab``.
        holdout_share: share of payments the static policy answers, in every mode.
        experiment_salt: salt of the payment hash; a new salt reshuffles the arms.
    """

    model_config = SettingsConfigDict(
        env_prefix="APPROVALS_", frozen=True, extra="ignore", env_file=BUILT_SETTINGS
    )

    model_dir: Path | None = None
    model_tag: str | None = Field(default=None, pattern=rf"^{MODEL_NAME}:[a-z0-9][-._a-z0-9]*$")
    grpc_port: int = Field(
        default=50051,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("GRPC_PORT", "APPROVALS_GRPC_PORT"),
    )
    grpc_host: str = "[::]"
    max_inflight: int = Field(default=256, ge=1, le=100_000)
    max_batch_size: int = Field(default=MAX_BATCH_SIZE, ge=1, le=100_000)
    max_latency_ms: int = Field(default=MAX_LATENCY_MS, ge=1, le=60_000)
    max_concurrent_batches: int = Field(default=2, ge=1, le=64)
    costs: Path | None = None
    shutdown_grace_s: float = Field(default=10.0, ge=0, le=300)
    require_redis: bool = False
    require_features: bool = False
    workers: int = Field(default=1, ge=1, le=64)
    outcomes_timeout_ms: int = Field(default=5000, ge=10, le=60_000)
    decisions: bool = True
    decisions_queue: int = Field(default=10_000, ge=1, le=1_000_000)
    decisions_maxlen: int = Field(default=200_000, ge=1000, le=100_000_000)
    decisions_features: bool = True
    challenger_dir: Path | None = None
    challenger_tag: str | None = Field(
        default=None, pattern=rf"^{MODEL_NAME}:[a-z0-9][-._a-z0-9]*$"
    )
    experiment: Literal["off", "shadow", "ab"] = "off"
    challenger_share: float = Field(default=0.0, ge=0.0, lt=1.0)
    holdout_share: float = Field(default=0.0, ge=0.0, le=0.5)
    experiment_salt: str = Field(default="approvals", min_length=1, max_length=64)

    @model_validator(mode="after")
    def _experiment_is_possible(self) -> ServingSettings:
        has_challenger = self.challenger_dir is not None or self.challenger_tag is not None
        if self.experiment != "off" and not has_challenger:
            raise ValueError(
                f"experiment={self.experiment} needs a challenger: set APPROVALS_CHALLENGER_DIR "
                "or APPROVALS_CHALLENGER_TAG"
            )
        if self.experiment == "ab" and self.challenger_share <= 0:
            raise ValueError("experiment=ab needs APPROVALS_CHALLENGER_SHARE above 0")
        if self.challenger_share + self.holdout_share >= 1:
            raise ValueError("challenger_share + holdout_share must leave the champion a share")
        return self
