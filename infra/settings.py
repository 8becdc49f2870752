"""Stack configuration, read once into a typed, validated, frozen settings object.

Stack files (``environments/<project>/Pulumi.<stack>.yaml``, project ``platform`` or
``application``) hold every difference between environments; components receive plain values
from here and never read configuration themselves.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

NAMESPACE = "approvals"
_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi)?$"
_LOG_RETENTION = {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653}


class SettingsError(ValueError):
    """A stack file holds a missing or invalid value; the message names each key."""


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )


class NetworkSettings(_Model):
    """VPC layout: one private and one public subnet per availability zone."""

    cidr_block: str
    availability_zones: tuple[str, ...] = Field(min_length=2, max_length=6)
    nat_gateways: int = Field(ge=1, le=6)
    flow_log_retention_days: int

    @field_validator("cidr_block")
    @classmethod
    def _cidr(cls, value: str) -> str:
        network = ipaddress.IPv4Network(value)
        if not network.is_private or network.prefixlen > 20:
            raise ValueError("must be a private IPv4 range of /20 or larger")
        return value

    @field_validator("flow_log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        return _log_retention(value)

    @model_validator(mode="after")
    def _nat_fits(self) -> NetworkSettings:
        if self.nat_gateways > len(self.availability_zones):
            raise ValueError("natGateways cannot exceed the number of availabilityZones")
        if len(set(self.availability_zones)) != len(self.availability_zones):
            raise ValueError("availabilityZones must be distinct")
        return self


class ClusterSettings(_Model):
    """EKS control plane and its managed node group."""

    kubernetes_version: str = Field(pattern=r"^1\.[0-9]{2}$")
    instance_types: tuple[str, ...] = Field(min_length=1)
    capacity_type: Literal["ON_DEMAND", "SPOT"]
    min_size: int = Field(ge=1)
    desired_size: int = Field(ge=1)
    max_size: int = Field(ge=1, le=100)
    disk_size_gib: int = Field(ge=20, le=1000)
    endpoint_public_access: bool
    public_access_cidrs: tuple[str, ...] = ()
    log_retention_days: int
    deletion_protection: bool
    # Roles given cluster-admin through EKS access entries (at least one: the administrators).
    admin_role_arns: tuple[str, ...] = Field(min_length=1)

    @field_validator("admin_role_arns")
    @classmethod
    def _roles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for arn in value:
            if not re.fullmatch(r"arn:aws[\w-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}", arn):
                raise ValueError(f"{arn!r} is not an IAM role ARN")
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        return _log_retention(value)

    @field_validator("public_access_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            if ipaddress.IPv4Network(cidr).prefixlen == 0:
                raise ValueError("0.0.0.0/0 would open the API endpoint to the internet")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ClusterSettings:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError("need minSize <= desiredSize <= maxSize")
        if self.endpoint_public_access and not self.public_access_cidrs:
            raise ValueError("endpointPublicAccess needs publicAccessCidrs (no open endpoint)")
        if not self.endpoint_public_access and self.public_access_cidrs:
            raise ValueError("publicAccessCidrs is set but endpointPublicAccess is false")
        return self


class FeatureStoreSettings(_Model):
    """ElastiCache for Redis replication group (the online feature store)."""

    node_type: str = Field(pattern=r"^cache\.[a-z0-9]+\.[a-z0-9]+$")
    engine_version: str = Field(pattern=r"^[0-9]+\.[0-9]+$")
    num_cache_clusters: int = Field(ge=1, le=6)
    multi_az: bool
    snapshot_retention_days: int = Field(ge=0, le=35)

    @model_validator(mode="after")
    def _failover(self) -> FeatureStoreSettings:
        if self.multi_az and self.num_cache_clusters < 2:
            raise ValueError("multiAz needs numCacheClusters >= 2 (a replica to fail over to)")
        return self


class ArtifactStoreSettings(_Model):
    """S3 bucket for model packages, data and registry aliases."""

    noncurrent_version_days: int = Field(ge=1, le=3650)
    kms_deletion_window_days: int = Field(ge=7, le=30)
    force_destroy: bool


class ImageRegistrySettings(_Model):
    """ECR repository for the bento image."""

    untagged_expiry_days: int = Field(ge=1, le=365)
    max_tagged_images: int = Field(ge=1, le=10000)
    force_delete: bool


class ServiceSettings(_Model):
    """The inference service on the cluster."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"]
    min_replicas: int = Field(ge=1)
    max_replicas: int = Field(ge=1, le=100)
    target_cpu_utilization: int = Field(ge=10, le=95)
    pdb_min_available: int = Field(ge=0)
    cpu_request: str = Field(pattern=_QUANTITY)
    cpu_limit: str = Field(pattern=_QUANTITY)
    memory_request: str = Field(pattern=_QUANTITY)
    memory_limit: str = Field(pattern=_QUANTITY)
    service_type: Literal["ClusterIP", "LoadBalancer"]
    # Not Ready while the served model's Redis features are absent (APPROVALS_REQUIRE_FEATURES).
    require_features: bool

    @model_validator(mode="after")
    def _consistent(self) -> ServiceSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError("need minReplicas <= maxReplicas")
        if self.min_replicas > 1 and self.pdb_min_available >= self.min_replicas:
            raise ValueError("pdbMinAvailable must be below minReplicas or nodes cannot drain")
        return self


class OutcomeConsumerSettings(_Model):
    """The outcome stream's consumer (``python -m approvals.features.consumer``).

    Workers of one consumer group share the stream: more replicas apply more outcomes per
    second (each batch is one atomic call in Redis, so Redis, not the pods, is the limit).
    """

    # None: one in dev, two beyond (a second consumer takes over a dead one's entries).
    replicas: int | None = Field(default=None, ge=1, le=20)
    batch: int = Field(default=500, ge=1, le=1000)
    cpu_request: str = Field(default="100m", pattern=_QUANTITY)
    cpu_limit: str = Field(default="500m", pattern=_QUANTITY)
    memory_request: str = Field(default="192Mi", pattern=_QUANTITY)
    memory_limit: str = Field(default="384Mi", pattern=_QUANTITY)


class DecisionSinkSettings(_Model):
    """The decision log's sink (``python -m approvals.experiments.sink``, docs/decisions.md).

    Its pods share one consumer group: one is enough for the stream of one service (a second
    shares the entries, or takes over a dead one's after ``claimIdleMs``). A flush comes every
    ``flushSeconds`` or once ``maxRows`` entries are buffered; memory scales with ``maxRows``.
    """

    replicas: int = Field(default=1, ge=1, le=10)
    flush_seconds: float = Field(default=60.0, ge=1, le=3600)
    max_rows: int = Field(default=50_000, ge=100, le=1_000_000)
    cpu_request: str = Field(default="100m", pattern=_QUANTITY)
    cpu_limit: str = Field(default="500m", pattern=_QUANTITY)
    memory_request: str = Field(default="512Mi", pattern=_QUANTITY)
    memory_limit: str = Field(default="1Gi", pattern=_QUANTITY)

    @property
    def claim_idle_ms(self) -> int:
        """When a replica takes over another's entries: never from a live buffer (the sink
        requires at least twice ``flushSeconds``), and not before five minutes."""
        return max(300_000, int(4_000 * self.flush_seconds))


class ExperimentSettings(_Model):
    """Who answers which payments (``bento/arms.py``), as the service's ``APPROVALS_*`` env.

    ``holdout`` works with any release: that share of payments (by a hash of ``payment_id``)
    is answered by the static policy. ``shadow`` and ``ab`` need a release whose image carries
    a challenger (``bento/bundle.py --challenger``); the service refuses to start otherwise,
    so the rollout stops with the old pods serving.
    """

    mode: Literal["off", "shadow", "ab"] = "off"
    challenger_share: float = Field(default=0.0, ge=0.0, lt=1.0)
    holdout_share: float = Field(default=0.0, ge=0.0, le=0.5)
    # not a secret: a new salt reshuffles the arms (start a new experiment)
    salt: str = Field(default="approvals", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")

    @model_validator(mode="after")
    def _shares(self) -> ExperimentSettings:
        if self.mode == "ab" and self.challenger_share <= 0:
            raise ValueError("mode ab needs challengerShare above 0")
        if self.mode != "ab" and self.challenger_share > 0:
            raise ValueError("challengerShare applies to mode ab only")
        if self.challenger_share + self.holdout_share >= 1:
            raise ValueError("challengerShare + holdoutShare must leave the champion a share")
        return self

    def env(self) -> dict[str, str]:
        """The service settings of this experiment (``bento/config.py``)."""
        return {
            "APPROVALS_EXPERIMENT": self.mode,
            "APPROVALS_CHALLENGER_SHARE": repr(self.challenger_share),
            "APPROVALS_HOLDOUT_SHARE": repr(self.holdout_share),
            "APPROVALS_EXPERIMENT_SALT": self.salt,
        }


DEFAULT_CONSUMER_REPLICAS = {"dev": 1, "staging": 2, "prod": 2}
_REGION = r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$"
_NAMESPACE = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class GithubSettings(_Model):
    """The repository whose workflows deploy this environment, and how they reach it."""

    repository: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    # IAM allows one provider per issuer and account: stacks sharing an account reuse it.
    oidc_provider_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[\w-]*:iam::[0-9]{12}:oidc-provider/.+$"
    )
    # A CodeConnections (GitHub App) connection an administrator authorised once per account:
    # CodeBuild uses it to register the in-VPC runner with the repository.
    connection_arn: str = Field(
        pattern=r"^arn:aws[\w-]*:(codeconnections|codestar-connections):[a-z0-9-]+:[0-9]{12}:connection/.+$"
    )
    runner_compute_type: Literal[
        "BUILD_GENERAL1_SMALL", "BUILD_GENERAL1_MEDIUM", "BUILD_GENERAL1_LARGE"
    ] = "BUILD_GENERAL1_MEDIUM"


class StateSettings(_Model):
    """Where Pulumi keeps state and encrypts secrets (made once per account: infra/bootstrap.py)."""

    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    key_arn: str = Field(pattern=r"^arn:aws[\w-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-f-]+$")


class PlatformSettings(_Model):
    """Everything one platform stack needs, validated as a whole."""

    environment: Literal["dev", "staging", "prod"]
    region: str = Field(pattern=_REGION)
    namespace: str = Field(default="approvals", pattern=_NAMESPACE)
    state: StateSettings
    github: GithubSettings | None = None
    network: NetworkSettings
    cluster: ClusterSettings
    feature_store: FeatureStoreSettings
    artifact_store: ArtifactStoreSettings
    image_registry: ImageRegistrySettings

    @model_validator(mode="after")
    def _zones_in_region(self) -> PlatformSettings:
        for zone in self.network.availability_zones:
            if not re.fullmatch(re.escape(self.region) + r"[a-z]", zone):
                raise ValueError(
                    f"network.availabilityZones: {zone!r} is not in aws:region {self.region!r}"
                )
        if self.environment != "dev" and self.cluster.endpoint_public_access:
            raise ValueError(
                "cluster.endpointPublicAccess: staging and prod keep the API private "
                "(the pipeline reaches it from the in-VPC runner)"
            )
        return self

    @property
    def tags(self) -> dict[str, str]:
        """Tags every AWS resource carries (set once on the provider)."""
        return _tags(self.environment)


class ReleaseSettings(_Model):
    """The model version to roll out; its image comes from that version's registry record."""

    model_version: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")


class ApplicationSettings(_Model):
    """Everything one application stack needs."""

    environment: Literal["dev", "staging", "prod"]
    region: str = Field(pattern=_REGION)
    # The platform stack of the same environment (DIY backends name it organization/...).
    platform_stack: str = Field(pattern=r"^[\w.-]+/[\w.-]+/[\w.-]+$")
    service: ServiceSettings
    outcomes: OutcomeConsumerSettings = Field(default_factory=OutcomeConsumerSettings)
    experiment: ExperimentSettings = Field(default_factory=ExperimentSettings)
    decisions: DecisionSinkSettings = Field(default_factory=DecisionSinkSettings)
    # Set only by the pipeline for one `pulumi up`; without it the stack deploys the version
    # the registry's champion alias names, so a manual `pulumi up` never reverts a release.
    release: ReleaseSettings | None = None

    @property
    def tags(self) -> dict[str, str]:
        """Tags every AWS resource carries (set once on the provider)."""
        return _tags(self.environment)

    @property
    def consumer_replicas(self) -> int:
        """Outcome consumers to run: the stack's ``outcomes.replicas``, else the default."""
        return self.outcomes.replicas or DEFAULT_CONSUMER_REPLICAS[self.environment]


def _tags(environment: str) -> dict[str, str]:
    return {"project": "approvals", "environment": environment, "managed-by": "pulumi"}


SettingsT = TypeVar("SettingsT", PlatformSettings, ApplicationSettings)


def _log_retention(value: int) -> int:
    if value not in _LOG_RETENTION:
        raise ValueError(f"CloudWatch accepts only {sorted(_LOG_RETENTION)} days")
    return value


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        prefix = "aws" if key == "region" else NAMESPACE
        lines.append(f"  {prefix}:{key}: {item['msg']}" if key else f"  {item['msg']}")
    return "invalid stack configuration:\n" + "\n".join(lines)


def parse_settings(raw: Mapping[str, Any], model: type[SettingsT]) -> SettingsT:
    """Validate raw stack configuration (keys without the ``approvals:`` prefix).

    Args:
        raw: Top-level keys such as ``environment`` or ``cluster`` with their values, plus
            ``region`` taken from ``aws:region``.
        model: :class:`PlatformSettings` or :class:`ApplicationSettings`.

    Returns:
        The frozen settings object.

    Raises:
        SettingsError: A key is missing, unknown or has a wrong value; the message names it.
    """
    try:
        return model.model_validate(dict(raw))
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


def stack_file_to_raw(document: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a parsed ``Pulumi.<stack>.yaml`` into the raw mapping :func:`parse_settings` takes.

    Args:
        document: The YAML document with its top-level ``config`` mapping.

    Returns:
        Keys of the ``approvals`` namespace without prefix, plus ``region`` from ``aws:region``.

    Raises:
        SettingsError: The document has no ``config`` mapping.
    """
    config = document.get("config") if isinstance(document, Mapping) else None
    if not isinstance(config, Mapping):
        raise SettingsError("invalid stack configuration: the file has no `config:` mapping")
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith(f"{NAMESPACE}:")}
    if "aws:region" in config:
        raw["region"] = config["aws:region"]
    return raw


def load_settings(model: type[SettingsT]) -> SettingsT:
    """Read this stack's configuration through the Pulumi runtime and validate it.

    Args:
        model: :class:`PlatformSettings` or :class:`ApplicationSettings`.

    Returns:
        The frozen settings object for the running stack.

    Raises:
        SettingsError: A key is missing or has a wrong value; the message names it.
    """
    import pulumi

    config = pulumi.Config(NAMESPACE)
    raw: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key == "region":
            continue
        is_object = any(
            isinstance(kind, type) and issubclass(kind, _Model)
            for kind in (field.annotation, *get_args(field.annotation))
        )
        value = _read_object(config, key) if is_object else config.get(key)
        if value is not None:
            raw[key] = value
    region = pulumi.Config("aws").get("region")
    if region is not None:
        raw["region"] = region
    return parse_settings(raw, model)


def _read_object(config: Any, key: str) -> Any:
    import pulumi

    try:
        return config.get_object(key)
    except pulumi.ConfigTypeError:
        raise SettingsError(
            f"invalid stack configuration:\n  {NAMESPACE}:{key}: must be a mapping"
        ) from None
