"""The decision sink in each environment: the release's image running the sink's module, Redis
from the service's Secret, its own service account bound to a role that writes only
``decisions/`` of the artifact bucket, settings from the stack file, probes and metrics on one
port, and nothing before the first release."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from infra_testkit import StackRun, image_of, stack_file

from infra.settings import ApplicationSettings, SettingsError, parse_settings, stack_file_to_raw

SINK = "approvals-sink"


def _sink(run: StackRun) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    deployment = run.named("Deployment", SINK)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return deployment, pod, container


def _flags(container: dict[str, Any]) -> dict[str, str]:
    args = container["args"]
    assert args[:3] == ["python", "-m", "approvals.experiments.sink"], "the image's entry point"
    pairs = args[3:]
    return dict(zip(pairs[::2], pairs[1::2], strict=True))


def _decisions_config(stack: str) -> dict[str, Any]:
    config = yaml.safe_load(stack_file("application", stack).read_text())["config"]
    decisions: dict[str, Any] = config["approvals:decisions"]
    return decisions


def _sink_policy(run: StackRun) -> dict[str, Any]:
    (policy,) = [
        p for p in run.of_type("aws:iam/rolePolicy:RolePolicy")
        if p["name"] == f"approvals-{run.name}-sink-irsa"
    ]  # fmt: skip
    document: dict[str, Any] = json.loads(policy["inputs"]["policy"])
    return document


def test_the_sink_runs_the_release_image_into_the_decisions_prefix(app: StackRun) -> None:
    run = app
    _, _, container = _sink(run)
    (service,) = run.named("Deployment", "approvals")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == service["image"] == image_of(run.name, "v1"), "the release's"
    flags = _flags(container)
    bucket = run.output("bucketName")
    assert flags["--out"] == f"s3://{bucket}/decisions", "the environment's artifact bucket"
    assert flags["--metrics-port"] == "9100"
    assert flags["--consumer"] == "$(POD_NAME)", "each pod is one consumer, named after itself"
    env = {e["name"]: e for e in container["env"]}
    for key in ("APPROVALS_REDIS_URL", "APPROVALS_REDIS_PASSWORD"):
        assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "approvals-redis", key
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert not [e for e in container["env"] if "value" in e and "PASSWORD" in e["name"]]


def test_the_pod_is_hardened_and_probed_on_its_metrics_port(app: StackRun) -> None:
    deployment, pod, container = _sink(app)
    context = container["securityContext"]
    assert context["runAsNonRoot"] and context["readOnlyRootFilesystem"], "hardened"
    assert context["allowPrivilegeEscalation"] is False and context["privileged"] is False
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    assert container["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["startupProbe"]["httpGet"]["port"] == "metrics"
    notes = deployment["spec"]["template"]["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/port"] == "9100"


def test_replicas_flushes_and_resources_come_from_the_stack_file(app: StackRun) -> None:
    run = app
    deployment, _, container = _sink(run)
    config = _decisions_config(run.name)
    assert deployment["spec"]["replicas"] == config["replicas"] == 1, "one sink by default"
    flags = _flags(container)
    assert float(flags["--flush-seconds"]) == config["flushSeconds"]
    assert int(flags["--max-rows"]) == config["maxRows"]
    assert int(flags["--claim-idle-ms"]) >= 2000 * config["flushSeconds"], "the sink's rule"
    resources = container["resources"]
    assert resources["requests"] == {"cpu": config["cpuRequest"], "memory": config["memoryRequest"]}
    assert resources["limits"] == {"cpu": config["cpuLimit"], "memory": config["memoryLimit"]}


def test_its_own_service_account_is_bound_to_the_sink_role(
    app: StackRun, platform_runs: dict[str, StackRun]
) -> None:
    _, pod, _ = _sink(app)
    assert pod["serviceAccountName"] == SINK, "not the service's account"
    account = app.named("ServiceAccount", SINK)
    platform = platform_runs[app.name]
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role == platform.output("sinkRoleArn") != platform.output("serviceRoleArn")
    assert account["automountServiceAccountToken"] is False


def test_the_sink_role_trusts_only_the_sink_account(run: StackRun) -> None:
    roles = {r["name"]: r for r in run.of_type("aws:iam/role:Role")}
    trust = json.loads(roles[f"approvals-{run.name}-sink-irsa"]["inputs"]["assumeRolePolicy"])
    condition = trust["Statement"][0]["Condition"]["StringEquals"]
    subs = [v for k, v in condition.items() if k.endswith(":sub")]
    assert subs == ["system:serviceaccount:approvals:approvals-sink"], "only the sink's account"


def test_the_sink_role_writes_only_decisions(run: StackRun) -> None:
    policy = _sink_policy(run)
    arn = f"arn:aws:s3:::{run.output('bucketName')}"
    by_action: dict[str, set[str]] = {}
    for s in policy["Statement"]:
        assert s["Effect"] == "Allow"
        for action in s["Action"]:
            by_action.setdefault(action, set()).update(s["Resource"])
    assert by_action["s3:PutObject"] == {f"{arn}/decisions/*"}, "writes under decisions/ only"
    assert by_action["s3:GetObject"] == {f"{arn}/decisions/*"}, "reads back decisions/ only"
    for prefix in ("models/", "registry/", "data/"):
        objects = {r for rs in by_action.values() for r in rs if r.startswith(f"{arn}/")}
        assert not [r for r in objects if r.startswith(f"{arn}/{prefix}")], f"nothing in {prefix}"
    assert not [r for rs in by_action.values() for r in rs if r in (f"{arn}/*", "*")], "no wildcard"
    (listing,) = [s for s in policy["Statement"] if "s3:ListBucket" in s["Action"]]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["decisions/*"]}}
    assert not [a for a in by_action if a.startswith(("s3:Delete", "iam:", "secretsmanager:"))]
    assert not [a for a in by_action if a.endswith("*")], "no wildcard actions"
    (key,) = [s for s in policy["Statement"] if any(a.startswith("kms:") for a in s["Action"])]
    assert set(key["Action"]) == {"kms:GenerateDataKey", "kms:Decrypt"}, "SSE-KMS put and get"
    assert len(key["Resource"]) == 1 and ":kms:" in key["Resource"][0], "one key: the bucket's"
    assert key["Condition"]["StringEquals"]["kms:ViaService"] == "s3.us-east-1.amazonaws.com"


def test_the_policy_admits_scrapes_and_lets_out_dns_redis_and_https(app: StackRun) -> None:
    deployment, _, _ = _sink(app)
    policy = app.named("NetworkPolicy", SINK)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"] == labels, "selects the sink's pods"
    assert [p["port"] for p in policy["spec"]["ingress"][0]["ports"]] == [9100], "metrics only"
    egress = {p["port"] for p in policy["spec"]["egress"][0]["ports"]}
    assert egress == {53, 6379, 443}, "DNS, Redis, S3 and STS"
    for service in app.kind("Service"):
        selector = service["spec"]["selector"]
        assert not selector.items() <= labels.items(), "sink pods take no service traffic"


def test_the_sink_is_a_component_declared_after_the_service_objects(app: StackRun) -> None:
    run = app
    urn = run.urn_of("Deployment", SINK)
    resource = next(r for r in run.resources if r["urn"] == urn)
    assert "approvals:infra:DecisionSink" in resource["parent"], "parented to its component"
    assert resource["name"] == f"approvals-{run.name}-sink-deployment", "named from it"
    for kind, name in (("Secret", "approvals-redis"), ("ServiceAccount", SINK)):
        assert run.urn_of(kind, name) in resource["dependencies"], f"waits for the {kind}"
    assert run.output("decisionSink") == SINK


def test_no_sink_before_the_first_release_and_a_release_rolls_it(
    app_runs: dict[str, StackRun],
) -> None:
    first = app_runs["dev+first"]
    assert first.output("decisionSink") is None, "nothing runs before the first image"
    assert first.named("ServiceAccount", SINK) and first.named("NetworkPolicy", SINK), "ready"
    _, _, container = _sink(app_runs["dev+release"])
    assert container["image"] == image_of("dev", "v2"), "the sink runs the released image"


def _raw(stack: str, **decisions: Any) -> dict[str, Any]:
    document = yaml.safe_load(stack_file("application", stack).read_text())
    raw = stack_file_to_raw(document)
    raw["decisions"] = {**raw["decisions"], **decisions}
    return raw


@pytest.mark.parametrize(
    ("key", "value"),
    [("replicas", 0), ("flushSeconds", 0), ("maxRows", 10), ("memoryLimit", "lots"),
     ("batch", 5)],
)  # fmt: skip
def test_a_bad_sink_setting_names_its_key(key: str, value: Any) -> None:
    with pytest.raises(SettingsError, match=rf"approvals:decisions\.{key}"):
        parse_settings(_raw("prod", **{key: value}), ApplicationSettings)


def test_the_sink_settings_have_defaults_and_keep_claims_off_live_buffers() -> None:
    raw = _raw("dev")
    del raw["decisions"]
    decisions = parse_settings(raw, ApplicationSettings).decisions
    assert (decisions.replicas, decisions.flush_seconds, decisions.max_rows) == (1, 60.0, 50_000)
    slow = parse_settings(_raw("dev", flushSeconds=900), ApplicationSettings).decisions
    assert slow.claim_idle_ms >= 2000 * 900, "the sink refuses a claim under twice the flush"


def test_every_stack_file_sets_the_sink() -> None:
    for stack in ("dev", "staging", "prod"):
        assert _decisions_config(stack), f"{stack}: approvals:decisions"
