"""Both programs per stack under mocks: resources, properties, per-environment differences.

``run`` is a platform stack, ``app`` the application stack on it (deploying its champion).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra_testkit import EXISTING_PROVIDER, GITHUB_REPO, StackRun, image_of, stack_file

from infra.components.manifests import cpu_cores

SERVICE = "approvals"  # the service's Deployment (the outcome consumer's is approvals-outcomes)

COMPONENTS = {
    "Network",
    "Cluster",
    "FeatureStore",
    "ArtifactStore",
    "ImageRegistry",
    "ServiceIdentity",
    "SinkIdentity",
}
EXPECTED = {  # stack: (zones, NAT gateways, Redis nodes, min pods, public endpoint)
    "dev": (2, 1, 1, 1, True),
    "staging": (2, 2, 2, 2, False),
    "prod": (3, 3, 3, 3, False),
}


def _policy(resource: dict[str, Any], key: str = "policy") -> dict[str, Any]:
    return json.loads(resource["inputs"][key])


def _stack_file(name: str, project: str = "platform") -> dict[str, Any]:
    return yaml.safe_load(stack_file(project, name).read_text())["config"]


def test_every_resource_belongs_to_a_component(run: StackRun) -> None:
    tokens = {r["type"].split(":")[-1] for r in run.resources if r["type"].startswith("approvals:")}
    assert tokens == COMPONENTS, f"{run.name}: one component per concern"
    for resource in run.resources:
        if resource["custom"] and resource["type"] != "pulumi:providers:aws":
            assert "approvals:infra:" in resource["parent"], f"{resource['urn']} is parented"
            assert resource["name"].startswith(f"approvals-{run.name}"), (
                f"{resource['name']} is named from its component"
            )
    for urn, outputs in run.components.items():
        if "approvals:infra:" in urn.split("::")[-2]:
            assert outputs and all(v is not None for v in outputs.values()), f"{urn} outputs"


def test_network_spans_zones_with_private_subnets(run: StackRun) -> None:
    zones, nats, *_ = EXPECTED[run.name]
    subnets = run.of_type("aws:ec2/subnet:Subnet")
    private = [s["inputs"] for s in subnets if s["inputs"]["tags"]["tier"] == "private"]
    public = [s["inputs"] for s in subnets if s["inputs"]["tags"]["tier"] == "public"]
    assert len({s["availabilityZone"] for s in private}) == zones, f"{run.name}: private per zone"
    assert len(public) == zones, f"{run.name}: one public subnet per zone"
    assert all(not s["inputs"]["mapPublicIpOnLaunch"] for s in subnets), "no automatic public IPs"
    assert all("kubernetes.io/role/elb" in s["tags"] for s in public), "LBs use public subnets"
    assert len(run.of_type("aws:ec2/natGateway:NatGateway")) == nats, f"{run.name}: NAT count"
    flow = run.one("aws:ec2/flowLog:FlowLog")["inputs"]
    assert flow["trafficType"] == "ALL", "flow logs record accepted and rejected traffic"


def test_cluster_control_plane(run: StackRun) -> None:
    *_, public = EXPECTED[run.name]
    cluster = run.one("aws:eks/cluster:Cluster")["inputs"]
    assert set(cluster["enabledClusterLogTypes"]) >= {"api", "audit", "authenticator"}, "logs"
    assert cluster["encryptionConfig"]["resources"] == ["secrets"], "secrets envelope encryption"
    assert cluster["vpcConfig"]["endpointPrivateAccess"] is True, "private endpoint always on"
    assert cluster["vpcConfig"]["endpointPublicAccess"] is public, f"{run.name}: public endpoint"
    assert "0.0.0.0/0" not in (cluster["vpcConfig"].get("publicAccessCidrs") or []), "no open API"
    assert cluster["deletionProtection"] is (run.name == "prod"), "prod cluster is protected"
    subnet_ids = {
        f"{s['name']}-" for s in run.of_type("aws:ec2/subnet:Subnet") if "-private-" in s["name"]
    }
    assert all(
        any(sid.startswith(p) for p in subnet_ids) for sid in cluster["vpcConfig"]["subnetIds"]
    ), "control plane ENIs sit in private subnets"


def test_node_group_sized_per_stack(run: StackRun) -> None:
    settings = _stack_file(run.name)["approvals:cluster"]
    group = run.one("aws:eks/nodeGroup:NodeGroup")["inputs"]
    assert group["scalingConfig"] == {
        "minSize": settings["minSize"],
        "desiredSize": settings["desiredSize"],
        "maxSize": settings["maxSize"],
    }, f"{run.name}: scaling from the stack file"
    assert group["instanceTypes"] == settings["instanceTypes"], "instance types from config"
    oidc = [p["inputs"] for p in run.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")]
    assert any(p["url"].startswith("https://oidc.eks.") for p in oidc), "IRSA provider exists"
    assert run.outputs["kubeconfig"]["secret"], "kubeconfig output is a secret"
    addons = {a["inputs"]["addonName"]: a["inputs"] for a in run.of_type("aws:eks/addon:Addon")}
    assert json.loads(addons["vpc-cni"]["configurationValues"]) == {
        "enableNetworkPolicy": "true"
    }, "NetworkPolicy is enforced by the CNI"
    assert "metrics-server" in addons, "the HPA has a metrics source"


def test_redis_is_encrypted_authenticated_and_fenced(run: StackRun) -> None:
    _, _, nodes, *_ = EXPECTED[run.name]
    group = run.one("aws:elasticache/replicationGroup:ReplicationGroup")
    redis = group["inputs"]
    assert redis["atRestEncryptionEnabled"] and redis["transitEncryptionEnabled"], "encryption"
    assert redis["transitEncryptionMode"] == "required", "no plaintext clients"
    assert "authToken" in group["secretInputs"] and len(redis["authToken"]) == 64, "AUTH secret"
    assert redis["numCacheClusters"] == nodes, f"{run.name}: node count"
    multi = run.name != "dev"
    assert redis["multiAzEnabled"] is multi and redis["automaticFailoverEnabled"] is multi, "HA"
    rule = run.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")["inputs"]
    assert rule["referencedSecurityGroupId"] == "sg-eks-cluster", "only the cluster's nodes"
    assert (rule["fromPort"], rule["toPort"]) == (6379, 6379), "only the Redis port"
    assert "cidrIpv4" not in rule, "no address range admitted"
    version = run.one("aws:secretsmanager/secretVersion:SecretVersion")
    assert "secretString" in version["secretInputs"], "the stored token stays a Pulumi secret"
    stored = json.loads(version["inputs"]["secretString"])
    assert stored["password"] == redis["authToken"], "Secrets Manager holds the same token"
    assert run.one("aws:secretsmanager/secret:Secret")["inputs"]["kmsKeyId"], "customer key"


def test_bucket_is_private_encrypted_versioned(run: StackRun) -> None:
    days = {"dev": 14, "staging": 30, "prod": 180}[run.name]
    block = run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")["inputs"]
    assert all(block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls")), (
        "full public access block"
    )
    assert block["restrictPublicBuckets"], "public policies are ignored too"
    token = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    sse = run.one(token)["inputs"]["rules"][0]["applyServerSideEncryptionByDefault"]
    assert sse["sseAlgorithm"] == "aws:kms" and sse["kmsMasterKeyId"].startswith("arn:aws:kms"), (
        "SSE-KMS with the customer key"
    )
    versioning = run.one("aws:s3/bucketVersioning:BucketVersioning")["inputs"]
    assert versioning["versioningConfiguration"]["status"] == "Enabled", "versioning on"
    deny = _policy(run.one("aws:s3/bucketPolicy:BucketPolicy"))["Statement"][0]
    assert deny["Effect"] == "Deny", "the bucket policy denies"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}, "non-TLS access"
    rules = run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")["inputs"]
    expiry = rules["rules"][0]["noncurrentVersionExpiration"]["noncurrentDays"]
    assert expiry == days, f"{run.name}: old versions expire after {days} days"
    keys = run.of_type("aws:kms/key:Key")
    assert keys and all(k["inputs"]["enableKeyRotation"] for k in keys), "every key rotates"


def test_image_registry(run: StackRun) -> None:
    repo = run.one("aws:ecr/repository:Repository")["inputs"]
    assert repo["imageTagMutability"] == "IMMUTABLE", "tags cannot be overwritten"
    assert repo["imageScanningConfiguration"]["scanOnPush"], "scan on push"
    lifecycle = _policy(run.one("aws:ecr/lifecyclePolicy:LifecyclePolicy"))
    assert [r["selection"]["tagStatus"] for r in lifecycle["rules"]] == ["untagged", "any"], (
        "untagged images expire first, then only the newest are kept"
    )


def test_irsa_role_reads_only_models_registry_and_secret(run: StackRun) -> None:
    roles = {r["name"]: r for r in run.of_type("aws:iam/role:Role")}
    irsa = roles[f"approvals-{run.name}-service-irsa"]
    trust = _policy(irsa, "assumeRolePolicy")["Statement"][0]
    condition = trust["Condition"]["StringEquals"]
    subs = [v for k, v in condition.items() if k.endswith(":sub")]
    assert subs == ["system:serviceaccount:approvals:approvals"], "only the service's account"
    assert [v for k, v in condition.items() if k.endswith(":aud")] == ["sts.amazonaws.com"], "aud"
    policy = next(
        _policy(p)
        for p in run.of_type("aws:iam/rolePolicy:RolePolicy")
        if p["name"] == f"approvals-{run.name}-service-irsa"
    )
    bucket = run.output("bucketName")
    objects = {
        r for s in policy["Statement"] if "s3:GetObject" in s["Action"] for r in s["Resource"]
    }
    assert objects == {f"arn:aws:s3:::{bucket}/models/*", f"arn:aws:s3:::{bucket}/registry/*"}, (
        "object reads limited to models/ and registry/"
    )
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert not {a for a in actions if a.startswith("s3:Put") or a.endswith("*")}, "read only"
    secret = [s for s in policy["Statement"] if "secretsmanager:GetSecretValue" in s["Action"]]
    assert secret[0]["Resource"] == [run.output("redisSecretArn")], "only the Redis secret"


def test_deployment_runs_the_bento_with_its_contract(app: StackRun) -> None:
    run = app
    deployment = run.named("Deployment", SERVICE)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == image_of(run.name, "v1"), "the champion's recorded image"
    assert container["image"].startswith(f"{run.output('ecrRepositoryUrl')}:v1@sha256:"), (
        "this environment's ECR repository, tag and digest"
    )
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 3000, "grpc": 50051}, "HTTP and gRPC ports"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez", "liveness probe"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness probe"
    env = {e["name"]: e for e in container["env"]}
    for key in ("APPROVALS_REDIS_URL", "APPROVALS_REDIS_PASSWORD"):
        assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "approvals-redis", f"{key} secret"
    bucket = run.output("bucketName")
    assert env["APPROVALS_MODEL_URI"]["value"] == f"s3://{bucket}/models/v1/", "model URI"
    assert env["APPROVALS_MODEL_URI"]["value"].endswith("/models/v1/"), "models/ prefix"
    assert env["APPROVALS_ENVIRONMENT"]["value"] == run.name, "environment name"
    assert env["APPROVALS_MODEL_VERSION"]["value"] == "v1", "the champion's model version"
    assert env["APPROVALS_LOG_LEVEL"]["value"] in {"DEBUG", "INFO"}, "log level from config"
    cores = cpu_cores(container["resources"]["limits"]["cpu"])
    assert env["APPROVALS_WORKERS"]["value"] == str(max(1, int(cores))), "a worker per core"
    context = container["securityContext"]
    assert context["runAsNonRoot"] and context["readOnlyRootFilesystem"], "non-root, read-only"
    assert context["allowPrivilegeEscalation"] is False, "no privilege escalation"
    keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert "topology.kubernetes.io/zone" in keys, "spread across zones"


def test_the_experiment_reaches_the_service_as_settings_it_accepts(
    app: StackRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config import ServingSettings  # bento/config.py, as the pod reads its env

    (container,) = app.named("Deployment", SERVICE)["spec"]["template"]["spec"]["containers"]
    plain = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    for name, value in plain.items():
        monkeypatch.setenv(name, value)
    settings = ServingSettings()
    experiment = _stack_file(app.name, "application")["approvals:experiment"]
    assert settings.experiment == experiment["mode"], "the stack file's mode"
    assert settings.holdout_share == experiment["holdoutShare"], "the stack file's holdout"
    assert settings.challenger_share == 0.0 and settings.experiment_salt == "approvals"


def test_redis_secret_carries_the_generated_token(
    app: StackRun, platform_runs: dict[str, StackRun]
) -> None:
    run = app
    (secret,) = run.kind("Secret")
    platform = platform_runs[run.name]
    redis = platform.one("aws:elasticache/replicationGroup:ReplicationGroup")["inputs"]
    assert secret["stringData"]["redis-password"] == redis["authToken"], "same AUTH token"
    assert platform.outputs["redisAuthToken"]["secret"], "the platform exports it as a secret"
    assert secret["stringData"]["redis-url"].startswith("rediss://master."), "TLS URL"
    assert secret["stringData"]["redis-url"].endswith(":6379/0"), "Redis port and database"
    resource = next(r for r in run.of_type("kubernetes:core/v1:Secret"))
    assert "stringData" in resource["secretInputs"], "the token stays a Pulumi secret"


def test_scaling_disruption_and_network_policy(app: StackRun) -> None:
    run = app
    *_, min_pods, _ = EXPECTED[run.name]
    (hpa,) = run.kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == min_pods, f"{run.name}: HPA minimum"
    (pdb,) = run.kind("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] < min_pods or min_pods == 1, "drains can progress"
    (policy,) = [p for p in run.kind("NetworkPolicy") if p["metadata"]["name"] == "approvals"]
    ports = {p["port"] for p in policy["spec"]["ingress"][0]["ports"]}
    assert ports == {3000, 50051}, "only the served ports are admitted"
    services = {s["metadata"]["name"]: s for s in run.kind("Service")}
    assert set(services) == {"approvals-http", "approvals-grpc"}, "one Service per protocol"
    for service in services.values():
        if service["spec"]["type"] == "LoadBalancer":
            notes = service["metadata"]["annotations"]
            assert notes["service.beta.kubernetes.io/aws-load-balancer-internal"] == "true", (
                "load balancers stay internal"
            )


def test_prod_is_stricter_than_dev(stack_runs: dict[str, StackRun]) -> None:
    dev, prod = stack_runs["dev"], stack_runs["prod"]
    redis = {
        n: r.one("aws:elasticache/replicationGroup:ReplicationGroup")["inputs"]
        for n, r in (("dev", dev), ("prod", prod))
    }
    assert redis["prod"]["nodeType"] != redis["dev"]["nodeType"], "prod Redis is larger"
    assert prod.kind("HorizontalPodAutoscaler")[0]["spec"]["minReplicas"] >= 2, "prod HPA >= 2"
    assert dev.one("aws:s3/bucket:Bucket")["inputs"]["forceDestroy"], "dev buckets can be dropped"
    assert not prod.one("aws:s3/bucket:Bucket")["inputs"]["forceDestroy"], "prod keeps data"


def test_outputs_for_pipeline_and_users(run: StackRun, app_runs: dict[str, StackRun]) -> None:
    for key in ("clusterName", "kubeconfig", "bucketName", "ecrRepositoryUrl", "redisEndpoint"):
        assert run.output(key), f"{run.name}: output {key}"
    assert run.outputs["kubeconfig"]["secret"], "the kubeconfig stays a secret"
    app = app_runs[run.name]
    hosts = app.output("serviceHosts")
    assert hosts["http"] == "approvals-http.approvals.svc.cluster.local:3000", "HTTP host"
    assert hosts["grpc"] == "approvals-grpc.approvals.svc.cluster.local:50051", "gRPC host"
    for key in ("kubeconfig", "bucketName", "ecrRepositoryUrl"):
        assert app.output(key) == run.output(key), f"the pipeline reads {key} from one stack"
    assert app.outputs["kubeconfig"]["secret"], "still a secret when passed on"
    assert (app.output("modelVersion"), app.output("releaseSource")) == ("v1", "champion")
    assert "deployRoleArn" not in run.outputs, "no deploy role without approvals:github"


@pytest.mark.parametrize("variant", ["staging+github", "prod+github-reuse"])
def test_github_deploy_role(platform_runs: dict[str, StackRun], variant: str) -> None:
    run = platform_runs[variant]
    env = variant.split("+", maxsplit=1)[0]
    providers = [
        p["inputs"]["url"]
        for p in run.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    ]
    github = "https://token.actions.githubusercontent.com"
    assert (github in providers) is (variant == "staging+github"), "provider made or reused"
    role = next(r for r in run.of_type("aws:iam/role:Role") if "-deploy-role" in r["name"])
    statement = _policy(role, "assumeRolePolicy")["Statement"][0]
    assert statement["Condition"]["StringEquals"] == {
        "token.actions.githubusercontent.com:sub": f"repo:{GITHUB_REPO}:environment:{env}",
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
    }, "only this repository's environment may assume the role"
    if variant == "prod+github-reuse":
        assert statement["Principal"]["Federated"] == EXISTING_PROVIDER, "reuses the provider"
    assert run.output("deployRoleArn") == role["state"]["arn"], "deploy role ARN is exported"
    scope = next(
        a["inputs"]
        for a in run.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
        if a["inputs"]["principalArn"] == role["state"]["arn"]
    )
    assert scope["accessScope"] == {"type": "namespace", "namespaces": ["approvals"]}, "scoped"
    assert scope["policyArn"].endswith("/AmazonEKSEditPolicy"), "edit, not admin"


def test_bad_stack_file_fails_the_program_with_the_key(tmp_path: Path, run_program: Any) -> None:
    document = yaml.safe_load(stack_file("platform", "dev").read_text())
    document["config"]["approvals:cluster"]["maxSize"] = "many"
    del document["config"]["approvals:featureStore"]
    broken = tmp_path / "Pulumi.dev.yaml"
    broken.write_text(yaml.safe_dump(document))
    result = run_program("platform", broken, tmp_path / "out.json")
    assert result.returncode == 2, f"the program refuses the stack: {result.stderr[-2000:]}"
    assert "approvals:cluster.maxSize" in result.stderr, "names the wrongly typed key"
    assert "approvals:featureStore: Field required" in result.stderr, "names the missing key"
    assert not (tmp_path / "out.json").exists(), "nothing was created"


def test_the_autoscaler_alone_owns_the_replica_count(app: StackRun) -> None:
    run = app
    deployment = run.named("Deployment", SERVICE)
    assert "replicas" not in deployment["spec"], "a release must not reset the HPA's count"
    (hpa,) = run.kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"], "HPA target"


def test_pods_get_no_service_link_variables(app: StackRun) -> None:
    run = app
    deployment = run.named("Deployment", SERVICE)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False, "APPROVALS_GRPC_PORT=tcp://... is not injected"


def test_roles_are_attached_before_the_cluster_and_nodes_use_them(run: StackRun) -> None:
    attachments = {
        r["name"]: r["urn"]
        for r in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    }
    for token, suffix in (
        ("aws:eks/cluster:Cluster", "cluster"),
        ("aws:eks/nodeGroup:NodeGroup", "nodes"),
    ):
        resource = run.one(token)
        mine = {
            urn
            for name, urn in attachments.items()
            if name.startswith(f"approvals-{run.name}-{suffix}-")
        }
        assert mine, f"{run.name}: {suffix} role has managed policies"
        assert mine <= set(resource["dependencies"]), f"{token} waits for its role's policies"


def test_addons_take_over_what_eks_installed(run: StackRun) -> None:
    for addon in run.of_type("aws:eks/addon:Addon"):
        inputs = addon["inputs"]
        assert inputs["resolveConflictsOnCreate"] == "OVERWRITE", f"{inputs['addonName']} on create"
        assert inputs["resolveConflictsOnUpdate"] == "OVERWRITE", f"{inputs['addonName']} on update"


def test_cluster_admins_come_from_the_stack_file(run: StackRun) -> None:
    cluster = run.one("aws:eks/cluster:Cluster")["inputs"]
    assert cluster["accessConfig"]["bootstrapClusterCreatorAdminPermissions"] is False, (
        "no hidden admin for whoever created the cluster"
    )
    admins = _stack_file(run.name)["approvals:cluster"]["adminRoleArns"]
    entries = {e["inputs"]["principalArn"] for e in run.of_type("aws:eks/accessEntry:AccessEntry")}
    assert set(admins) <= entries, "every administrator role has an access entry"
    associations = {
        a["inputs"]["principalArn"]: a["inputs"]
        for a in run.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    }
    for arn in admins:
        assert associations[arn]["policyArn"].endswith("/AmazonEKSClusterAdminPolicy"), arn
        assert associations[arn]["accessScope"] == {"type": "cluster"}, arn


def test_features_are_loaded_before_the_service_rolls(app: StackRun) -> None:
    run = app
    (job,) = run.kind("Job")
    deployment = run.named("Deployment", SERVICE)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (service,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == service["image"], "the release's own image"
    assert container["args"] == [
        "python", "-m", "approvals.features.preload", "--model-tag", "approvals:v1"
    ], "loads the served model's packed feature state"  # fmt: skip
    assert job["metadata"]["name"].endswith("-v1"), "one Job per model version"
    env = {e["name"]: e for e in container["env"]}
    for key in ("APPROVALS_REDIS_URL", "APPROVALS_REDIS_PASSWORD"):
        assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "approvals-redis", key
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] >= 1, "retries, bounded"
    urns = {
        r["inputs"].get("kind"): r["urn"]
        for r in run.resources
        if r["type"].startswith("kubernetes:")
    }
    rollout = next(r for r in run.resources if r["urn"] == run.urn_of("Deployment", SERVICE))
    assert urns["Job"] in rollout["dependencies"], "the Deployment waits for the Job to finish"
    loader = next(
        p for p in run.kind("NetworkPolicy") if p["metadata"]["name"].endswith("-features")
    )
    assert (
        loader["spec"]["podSelector"]["matchLabels"]
        == job["spec"]["template"]["metadata"]["labels"]
    )
    assert "ingress" not in loader["spec"], "the loader takes no traffic"
    assert {p["port"] for p in loader["spec"]["egress"][0]["ports"]} == {53, 6379}, "DNS, Redis"
    serving = deployment["spec"]["selector"]["matchLabels"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert not serving.items() <= labels.items(), "Job pods never join the service's Endpoints"


def test_staging_and_prod_are_not_ready_without_features(app: StackRun) -> None:
    run = app
    deployment = run.named("Deployment", SERVICE)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["APPROVALS_REQUIRE_FEATURES"] == ("false" if run.name == "dev" else "true"), (
        f"{run.name}: readiness on the model's features"
    )


def test_the_platform_declares_no_kubernetes_object(run: StackRun) -> None:
    kinds = {
        r["type"]
        for r in run.resources
        if r["type"].startswith(("kubernetes:", "pulumi:providers:kubernetes"))
    }
    assert kinds == set(), "the platform needs no path to the cluster API"


def test_the_application_declares_no_aws_resource(app: StackRun) -> None:
    aws = {r["type"] for r in app.resources if r["type"].startswith("aws:")}
    assert aws == set(), "the deploy role that runs it needs no AWS write access"
    tokens = {i["token"] for i in app.invokes}
    assert tokens <= {
        "aws:index/getCallerIdentity:getCallerIdentity",
        "aws:s3/getObjects:getObjects",
        "aws:s3/getObject:getObject",
    }, f"it only reads the registry: {tokens}"
    reference = app.one("pulumi:pulumi:StackReference")["inputs"]
    assert reference["name"] == f"organization/approvals-platform/{app.name}", "its own platform"


def test_before_the_first_release_nothing_waits_on_an_image(app_runs: dict[str, StackRun]) -> None:
    first = app_runs["dev+first"]
    kinds = sorted(
        r["inputs"]["kind"]
        for r in first.resources
        if r["type"].startswith("kubernetes:") and "kind" in r["inputs"]
    )
    assert kinds == sorted([
        "Namespace", "ServiceAccount", "ServiceAccount", "Secret", "Service", "Service",
        "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "NetworkPolicy",
        "NetworkPolicy", "NetworkPolicy",
    ]), "no Deployment and no Job: nothing can hang waiting for a missing image"  # fmt: skip
    for kind in ("Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        resource = next(r for r in first.resources if r["inputs"].get("kind") == kind)
        assert not any("Deployment" in d for d in resource["dependencies"]), kind
    assert first.output("modelVersion") is None and first.output("image") is None
    assert first.output("outcomeConsumer") is None, "no consumer before the first image"


def test_the_pipeline_names_the_version_and_the_registry_names_its_image(
    app_runs: dict[str, StackRun],
) -> None:
    release = app_runs["dev+release"]
    deployment = release.named("Deployment", SERVICE)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == image_of("dev", "v2"), "v2's own recorded image"
    (job,) = release.kind("Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == container["image"]
    assert (release.output("modelVersion"), release.output("releaseSource")) == ("v2", "config")


def test_an_unknown_release_stops_the_program_naming_it(
    tmp_path: Path, run_program: Any, platform_runs: dict[str, StackRun]
) -> None:
    document = yaml.safe_load(stack_file("application", "dev").read_text())
    document["config"]["approvals:release"] = {"modelVersion": "v404"}
    stack = tmp_path / "Pulumi.dev.yaml"
    stack.write_text(yaml.safe_dump(document))
    outputs = platform_runs["dev"].outputs
    world = tmp_path / "world.json"
    world.write_text(json.dumps({
        "stacks": {"organization/approvals-platform/dev": {
            "outputs": {k: v["value"] for k, v in outputs.items()},
            "secret": [k for k, v in outputs.items() if v["secret"]],
        }},
        "objects": {outputs["bucketName"]["value"]: {}},
    }))  # fmt: skip
    result = run_program("application", stack, tmp_path / "out.json", world)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "'v404' is not in the dev registry" in result.stderr
    assert not (tmp_path / "out.json").exists(), "nothing was declared"


def test_the_deploy_role_can_run_the_application_stack_and_nothing_more(
    platform_runs: dict[str, StackRun],
) -> None:
    run = platform_runs["staging+github"]
    state = _stack_file("staging")["approvals:state"]
    policy = _policy(
        next(p for p in run.of_type("aws:iam/rolePolicy:RolePolicy") if "-deploy-" in p["name"])
    )
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    forbidden = [
        a
        for a in actions
        if a.split(":")[0] in {"iam", "ec2", "elasticache", "eks"} and a != "eks:DescribeCluster"
    ]
    assert forbidden == [], f"no platform changes: {forbidden}"
    assert not any(a.endswith("*") for a in actions), "no wildcard actions"
    bucket = f"arn:aws:s3:::{state['bucket']}"
    writes = next(s for s in policy["Statement"] if "s3:DeleteObject" in s["Action"])
    assert writes["Resource"] == [
        f"{bucket}/.pulumi/stacks/approvals-application/staging.json*",
        f"{bucket}/.pulumi/history/approvals-application/staging/*",
        f"{bucket}/.pulumi/backups/approvals-application/staging/*",
        f"{bucket}/.pulumi/locks/organization/approvals-application/staging/*",
    ], "its own stack's state, history, backups and locks"
    reads = next(s for s in policy["Statement"] if s["Action"] == ["s3:GetObject"])
    assert f"{bucket}/.pulumi/stacks/approvals-platform/staging.json*" in reads["Resource"], (
        "the platform's state only to read its outputs"
    )
    keys = next(s for s in policy["Statement"] if "kms:Encrypt" in s["Action"])
    assert keys["Resource"] == [state["keyArn"]], "the state key, for both stacks' secrets"


def test_the_in_vpc_runner_reaches_the_private_api_and_nothing_reaches_it(
    platform_runs: dict[str, StackRun],
) -> None:
    run = platform_runs["staging+github"]
    project = run.one("aws:codebuild/project:Project")["inputs"]
    assert project["name"] == "approvals-staging-runner", "runs-on: codebuild-<name>-<run>-<try>"
    private = {s["urn"] for s in run.of_type("aws:ec2/subnet:Subnet") if "-private-" in s["name"]}
    assert len(project["vpcConfig"]["subnets"]) == len(private), "one ENI subnet per private one"
    assert project["source"]["auth"]["type"] == "CODECONNECTIONS", "GitHub through the connection"
    assert project["source"]["location"] == f"https://github.com/{GITHUB_REPO}.git"
    assert project["environment"]["privilegedMode"] is True, "Docker for the image push"
    assert project["environment"]["image"].startswith("aws/codebuild/standard:"), (
        "Ubuntu, which actions/setup-python's interpreters are built for"
    )
    hook = run.one("aws:codebuild/webhook:Webhook")["inputs"]
    assert hook["filterGroups"] == [
        {"filters": [{"type": "EVENT", "pattern": "WORKFLOW_JOB_QUEUED"}]}
    ]
    egress = run.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    assert [(e["inputs"]["fromPort"], e["inputs"]["toPort"]) for e in egress] == [(443, 443)], (
        "HTTPS out only"
    )
    rules = run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    to_api = [r["inputs"] for r in rules if r["inputs"].get("securityGroupId") == "sg-eks-cluster"]
    assert [(r["fromPort"], r["toPort"]) for r in to_api] == [(443, 443)], "only the API port"
    assert all("cidrIpv4" not in r for r in to_api), "from the runner's group, no range"
    assert run.output("runnerLabel") == "codebuild-approvals-staging-runner"
    role = _policy(
        next(p for p in run.of_type("aws:iam/rolePolicy:RolePolicy") if "-runner-" in p["name"])
    )
    actions = {a for s in role["Statement"] for a in s["Action"]}
    assert not any(a.startswith(("s3:", "eks:", "iam:", "ecr:", "kms:")) for a in actions), (
        "the runner's own role grants no deploy rights: jobs use the OIDC deploy role"
    )
