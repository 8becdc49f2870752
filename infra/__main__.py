"""approvals on AWS: read the stack's settings once, compose the components, export outputs."""

import sys
from pathlib import Path

# Pulumi runs this file from infra/; make the `infra` package importable by its full name.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi
import pulumi_aws as aws

from infra.components.artifact_store import ArtifactStore, ArtifactStoreArgs
from infra.components.cluster import Cluster, ClusterArgs
from infra.components.deploy_identity import DeployIdentity, DeployIdentityArgs
from infra.components.feature_store import FeatureStore, FeatureStoreArgs
from infra.components.image_registry import ImageRegistry, ImageRegistryArgs
from infra.components.inference_service import InferenceService, InferenceServiceArgs
from infra.components.manifests import ServiceSpec
from infra.components.network import Network, NetworkArgs
from infra.settings import load_settings

s = load_settings()
env = s.environment
aws_provider = aws.Provider("aws", region=s.region, default_tags={"tags": s.tags})
opts = pulumi.ResourceOptions(providers=[aws_provider])

network = Network(f"approvals-{env}", NetworkArgs(**s.network.model_dump()), opts)
cluster = Cluster(
    f"approvals-{env}",
    ClusterArgs(
        cluster_name=f"approvals-{env}",
        private_subnet_ids=network.private_subnet_ids,
        region=s.region,
        **s.cluster.model_dump(),
    ),
    opts,
)
feature_store = FeatureStore(
    f"approvals-{env}-features",
    FeatureStoreArgs(
        vpc_id=network.vpc_id,
        private_subnet_ids=network.private_subnet_ids,
        client_security_group_id=cluster.node_security_group_id,
        kms_deletion_window_days=s.artifact_store.kms_deletion_window_days,
        **s.feature_store.model_dump(),
    ),
    opts,
)
store = ArtifactStore(
    f"approvals-{env}-artifacts",
    ArtifactStoreArgs(bucket_prefix=f"approvals-{env}-artifacts-", **s.artifact_store.model_dump()),
    opts,
)
registry = ImageRegistry(
    f"approvals-{env}-images",
    ImageRegistryArgs(repository_name=f"approvals/{env}/service", **s.image_registry.model_dump()),
    opts,
)
spec = ServiceSpec(
    name="approvals",
    environment=env,
    region=s.region,
    image=registry.repository_url.apply(lambda url: f"{url}:{s.service.image_tag}"),
    model_uri=store.bucket_name.apply(lambda b: f"s3://{b}/models/{s.service.model_version}/"),
    **s.service.model_dump(exclude={"image_tag"}),
)
service = InferenceService(
    f"approvals-{env}-service",
    InferenceServiceArgs(
        spec=spec,
        oidc_provider_arn=cluster.oidc_provider_arn,
        oidc_issuer=cluster.oidc_issuer,
        bucket_arn=store.bucket_arn,
        artifact_key_arn=store.key_arn,
        redis_url=feature_store.url,
        redis_password=feature_store.auth_token,
        redis_secret_arn=feature_store.secret_arn,
        redis_key_arn=feature_store.key_arn,
    ),
    pulumi.ResourceOptions(providers=[aws_provider, cluster.provider]),
)
if s.github_repository:
    deploy = DeployIdentity(
        f"approvals-{env}-deploy",
        DeployIdentityArgs(
            repository=s.github_repository,
            environment=env,
            existing_provider_arn=s.github_oidc_provider_arn,
            ecr_repository_arn=registry.repository_arn,
            cluster_name=cluster.cluster_name,
            cluster_arn=cluster.cluster_arn,
            bucket_arn=store.bucket_arn,
            artifact_key_arn=store.key_arn,
            namespace=s.service.namespace,
        ),
        opts,
    )
    pulumi.export("deployRoleArn", deploy.role_arn)

pulumi.export("environment", env)
pulumi.export("clusterName", cluster.cluster_name)
pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("bucketName", store.bucket_name)
pulumi.export("modelUri", spec.model_uri)
pulumi.export("ecrRepositoryUrl", registry.repository_url)
pulumi.export("image", spec.image)
pulumi.export("redisEndpoint", feature_store.endpoint)
pulumi.export("redisSecretArn", feature_store.secret_arn)
pulumi.export("serviceRoleArn", service.role_arn)
pulumi.export("serviceHosts", service.hosts)
