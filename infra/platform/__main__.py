"""The approvals platform of one environment: everything AWS, stood up by an administrator.

Network, EKS (cluster admins from the stack file), ElastiCache, the artifact bucket, ECR, the
IRSA roles of the service and of the decision sink and, when a GitHub repository is
configured, the release pipeline's deploy role and its in-VPC runner. No Kubernetes object is
created here: the application stack (infra/application) owns those and reads this stack's
outputs through a StackReference.
"""

import sys
from pathlib import Path

# Pulumi runs this file from infra/platform; make the `infra` package importable by its name.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pulumi
import pulumi_aws as aws

from infra.components.artifact_store import (
    ArtifactStore,
    ArtifactStoreArgs,
    artifact_bucket_name,
)
from infra.components.cluster import Cluster, ClusterArgs
from infra.components.deploy_identity import DeployIdentity, DeployIdentityArgs
from infra.components.feature_store import FeatureStore, FeatureStoreArgs
from infra.components.image_registry import ImageRegistry, ImageRegistryArgs
from infra.components.network import Network, NetworkArgs
from infra.components.runner import Runner, RunnerArgs
from infra.components.service_identity import ServiceIdentity, ServiceIdentityArgs
from infra.components.sink_identity import SinkIdentity, SinkIdentityArgs
from infra.settings import PlatformSettings, load_settings

s = load_settings(PlatformSettings)
env = s.environment
aws_provider = aws.Provider("aws", region=s.region, default_tags={"tags": s.tags})
opts = pulumi.ResourceOptions(providers=[aws_provider])
account = aws.get_caller_identity(opts=pulumi.InvokeOptions(provider=aws_provider)).account_id

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
    ArtifactStoreArgs(
        bucket_name=artifact_bucket_name(env, account, s.region),
        **s.artifact_store.model_dump(),
    ),
    opts,
)
registry = ImageRegistry(
    f"approvals-{env}-images",
    ImageRegistryArgs(repository_name=f"approvals/{env}/service", **s.image_registry.model_dump()),
    opts,
)
service = ServiceIdentity(
    f"approvals-{env}-service",
    ServiceIdentityArgs(
        namespace=s.namespace,
        region=s.region,
        oidc_provider_arn=cluster.oidc_provider_arn,
        oidc_issuer=cluster.oidc_issuer,
        bucket_arn=store.bucket_arn,
        artifact_key_arn=store.key_arn,
        redis_secret_arn=feature_store.secret_arn,
        redis_key_arn=feature_store.key_arn,
    ),
    opts,
)
sink = SinkIdentity(
    f"approvals-{env}-sink",
    SinkIdentityArgs(
        namespace=s.namespace,
        region=s.region,
        oidc_provider_arn=cluster.oidc_provider_arn,
        oidc_issuer=cluster.oidc_issuer,
        bucket_arn=store.bucket_arn,
        artifact_key_arn=store.key_arn,
    ),
    opts,
)
if s.github is not None:
    deploy = DeployIdentity(
        f"approvals-{env}-deploy",
        DeployIdentityArgs(
            repository=s.github.repository,
            environment=env,
            existing_provider_arn=s.github.oidc_provider_arn,
            ecr_repository_arn=registry.repository_arn,
            cluster_name=cluster.cluster_name,
            cluster_arn=cluster.cluster_arn,
            bucket_arn=store.bucket_arn,
            artifact_key_arn=store.key_arn,
            namespace=s.namespace,
            state_bucket=s.state.bucket,
            state_key_arn=s.state.key_arn,
        ),
        opts,
    )
    runner = Runner(
        f"approvals-{env}-runner",
        RunnerArgs(
            project_name=f"approvals-{env}-runner",
            repository=s.github.repository,
            connection_arn=s.github.connection_arn,
            compute_type=s.github.runner_compute_type,
            region=s.region,
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            cluster_security_group_id=cluster.node_security_group_id,
            log_retention_days=s.cluster.log_retention_days,
        ),
        opts,
    )
    pulumi.export("deployRoleArn", deploy.role_arn)
    pulumi.export("runnerLabel", runner.label)

pulumi.export("environment", env)
pulumi.export("region", s.region)
pulumi.export("namespace", s.namespace)
pulumi.export("clusterName", cluster.cluster_name)
pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("bucketName", store.bucket_name)
pulumi.export("ecrRepositoryUrl", registry.repository_url)
pulumi.export("redisEndpoint", feature_store.endpoint)
pulumi.export("redisUrl", feature_store.url)
pulumi.export("redisAuthToken", feature_store.auth_token)
pulumi.export("redisSecretArn", feature_store.secret_arn)
pulumi.export("serviceRoleArn", service.role_arn)
pulumi.export("sinkRoleArn", sink.role_arn)
