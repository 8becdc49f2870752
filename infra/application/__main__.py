"""The approvals application of one environment: what the release pipeline rolls.

Reads the platform of the same environment through a StackReference (cluster, Redis, bucket,
service and sink roles), resolves the release from the registry (``infra/components/release.py``)
and declares the namespace and the service's Kubernetes objects, with the feature-loading Job
that finishes before the Deployment rolls, the outcome stream's consumer and the decision
log's sink beside them. It creates no AWS resources, so the deploy role that runs it needs no
rights on the platform.
"""

import sys
from pathlib import Path

# Pulumi runs this file from infra/application; make `infra` importable by its full name.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.components.artifact_store import MODELS_PREFIX, artifact_bucket_name
from infra.components.consumer_manifests import ConsumerSpec
from infra.components.decision_sink import DecisionSink, DecisionSinkArgs
from infra.components.inference_service import InferenceService, InferenceServiceArgs
from infra.components.manifests import ServiceSpec
from infra.components.outcome_consumer import OutcomeConsumer, OutcomeConsumerArgs
from infra.components.release import invoke_reader, resolve_release
from infra.components.service_identity import SERVICE_ACCOUNT
from infra.components.sink_manifests import SinkSpec
from infra.settings import ApplicationSettings, load_settings

s = load_settings(ApplicationSettings)
env = s.environment
platform = pulumi.StackReference(s.platform_stack)
aws_provider = aws.Provider("aws", region=s.region, default_tags={"tags": s.tags})
invoke = pulumi.InvokeOptions(provider=aws_provider)
account = aws.get_caller_identity(opts=invoke).account_id
bucket = artifact_bucket_name(env, account, s.region)
release = resolve_release(
    invoke_reader(bucket, invoke), env, s.release.model_version if s.release else None
)


def _same_bucket(name: str) -> str:
    if name != bucket:
        raise ValueError(f"platform stack {s.platform_stack} exports bucket {name}, not {bucket}")
    return name


k8s_provider = k8s.Provider(
    f"approvals-{env}-k8s", kubeconfig=platform.require_output("kubeconfig")
)
spec = ServiceSpec(
    name=SERVICE_ACCOUNT,
    namespace=platform.require_output("namespace"),
    environment=env,
    region=s.region,
    image=release.image if release else None,
    model_version=release.model_version if release else None,
    model_uri=platform.require_output("bucketName").apply(
        lambda b: (
            f"s3://{_same_bucket(b)}/{MODELS_PREFIX}{release.model_version}/" if release else ""
        )
    ),
    experiment=s.experiment.env(),
    **s.service.model_dump(),
)
service = InferenceService(
    f"approvals-{env}-service",
    InferenceServiceArgs(
        spec=spec,
        role_arn=platform.require_output("serviceRoleArn"),
        redis_url=platform.require_output("redisUrl"),
        redis_password=platform.require_output("redisAuthToken"),
    ),
    pulumi.ResourceOptions(providers=[k8s_provider]),
)
sizes = s.outcomes.model_dump(exclude={"replicas"})
consumer = OutcomeConsumer(
    f"approvals-{env}-outcomes",
    OutcomeConsumerArgs(ConsumerSpec(spec, s.consumer_replicas, **sizes), after=[service]),
    pulumi.ResourceOptions(providers=[k8s_provider]),
)
decisions = s.decisions
sink = DecisionSink(
    f"approvals-{env}-sink",
    DecisionSinkArgs(
        SinkSpec(
            spec,
            bucket=platform.require_output("bucketName").apply(_same_bucket),
            claim_idle_ms=decisions.claim_idle_ms,
            **decisions.model_dump(),
        ),
        role_arn=platform.require_output("sinkRoleArn"),
        after=[service],
    ),
    pulumi.ResourceOptions(providers=[k8s_provider]),
)

pulumi.export("environment", env)
pulumi.export("modelVersion", release.model_version if release else None)
pulumi.export("image", release.image if release else None)
pulumi.export("releaseSource", release.source if release else None)
pulumi.export("serviceHosts", service.hosts)
pulumi.export("outcomeConsumer", consumer.deployment)
pulumi.export("decisionSink", sink.deployment)
pulumi.export("kubeconfig", platform.require_output("kubeconfig"))
pulumi.export("bucketName", platform.require_output("bucketName"))
pulumi.export("ecrRepositoryUrl", platform.require_output("ecrRepositoryUrl"))
