"""The outcome consumer's objects in each application stack: image, identity, settings from
the stack file, probes and metrics on one port, a policy admitting scrapes and letting out only
DNS and Redis, and the order it is declared in."""

from __future__ import annotations

from typing import Any

import yaml
from infra_testkit import StackRun, image_of, stack_file

CONSUMER = "approvals-outcomes"
REPLICAS = {"dev": 1, "staging": 2, "prod": 2}


def _consumer(run: StackRun) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    deployment = run.named("Deployment", CONSUMER)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return deployment, pod, container


def _outcomes_config(stack: str) -> dict[str, Any]:
    config = yaml.safe_load(stack_file("application", stack).read_text())["config"]
    outcomes: dict[str, Any] = config["approvals:outcomes"]
    return outcomes


def test_the_consumer_runs_the_service_image_identity_and_secret(app: StackRun) -> None:
    run = app
    _, pod, container = _consumer(run)
    (service,) = run.named("Deployment", "approvals")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == service["image"] == image_of(run.name, "v1"), "same image"
    assert container["args"] == ["python", "-m", "approvals.features.consumer"], "the worker"
    assert pod["serviceAccountName"] == "approvals", "the service's account"
    env = {e["name"]: e for e in container["env"]}
    for key in ("APPROVALS_REDIS_URL", "APPROVALS_REDIS_PASSWORD"):
        assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "approvals-redis", key
    assert env["APPROVALS_OUTCOMES_CONSUMER"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.name"}
    }, "each pod is one consumer of the group, named after itself"
    assert env["APPROVALS_OUTCOMES_METRICS_PORT"]["value"] == "9100"
    assert env["APPROVALS_OUTCOMES_LOG_LEVEL"]["value"] in {"DEBUG", "INFO"}
    context = container["securityContext"]
    assert context["runAsNonRoot"] and context["readOnlyRootFilesystem"], "hardened"
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False


def test_replicas_batch_and_resources_come_from_the_stack_file(app: StackRun) -> None:
    run = app
    deployment, _, container = _consumer(run)
    config = _outcomes_config(run.name)
    assert deployment["spec"]["replicas"] == config["replicas"] == REPLICAS[run.name], run.name
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["APPROVALS_OUTCOMES_BATCH"] == str(config["batch"])
    resources = container["resources"]
    assert resources["requests"] == {"cpu": config["cpuRequest"], "memory": config["memoryRequest"]}
    assert resources["limits"] == {"cpu": config["cpuLimit"], "memory": config["memoryLimit"]}


def test_probes_and_metrics_share_the_named_metrics_port(app: StackRun) -> None:
    deployment, _, container = _consumer(app)
    assert container["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["startupProbe"]["httpGet"]["port"] == "metrics"
    notes = deployment["spec"]["template"]["metadata"]["annotations"]
    assert notes == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9100",
        "prometheus.io/path": "/metrics",
    }, "Prometheus scrapes the consumer"


def test_the_policy_admits_scrapes_and_lets_out_only_dns_and_redis(app: StackRun) -> None:
    deployment, _, _ = _consumer(app)
    policy = app.named("NetworkPolicy", CONSUMER)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"] == labels, "selects the consumer pods"
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert [p["port"] for p in policy["spec"]["ingress"][0]["ports"]] == [9100], "metrics only"
    assert {p["port"] for p in policy["spec"]["egress"][0]["ports"]} == {53, 6379}, "DNS, Redis"
    for service in app.kind("Service"):
        selector = service["spec"]["selector"]
        assert not selector.items() <= labels.items(), "consumer pods take no service traffic"


def test_the_consumer_is_a_component_declared_after_the_service_objects(app: StackRun) -> None:
    run = app
    urn = run.urn_of("Deployment", CONSUMER)
    resource = next(r for r in run.resources if r["urn"] == urn)
    assert "approvals:infra:OutcomeConsumer" in resource["parent"], "parented to its component"
    assert resource["name"] == f"approvals-{run.name}-outcomes-deployment", "named from it"
    for kind, name in (("Secret", "approvals-redis"), ("ServiceAccount", "approvals")):
        assert run.urn_of(kind, name) in resource["dependencies"], f"waits for the {kind}"
    assert run.output("outcomeConsumer") == CONSUMER


def test_a_release_rolls_the_consumer_with_the_service(app_runs: dict[str, StackRun]) -> None:
    release = app_runs["dev+release"]
    _, _, container = _consumer(release)
    assert container["image"] == image_of("dev", "v2"), "the consumer runs the released image"
    first = app_runs["dev+first"]
    assert first.kind("Deployment") == [], "no Deployment before the first image"
    assert first.named("NetworkPolicy", CONSUMER), "its policy stands ready"
