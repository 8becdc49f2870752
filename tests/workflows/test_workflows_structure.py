"""Structural rules of the pipeline that no linter checks for us."""

from __future__ import annotations

import re
from typing import Any

from tests.workflows.conftest import ACTIONS, GITHUB, load

SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
OIDC_ACTION = "aws-actions/configure-aws-credentials@"


def _steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    jobs = doc.get("jobs", {}).values()
    steps = [s for job in jobs for s in job.get("steps", [])]
    return steps + doc.get("runs", {}).get("steps", [])


def test_every_action_is_pinned_to_a_full_commit_sha(workflows) -> None:
    docs = {**workflows, **{str(p): load(p) for p in ACTIONS}}
    for name, doc in docs.items():
        uses = [s["uses"] for s in _steps(doc) if "uses" in s]
        uses += [j["uses"] for j in doc.get("jobs", {}).values() if "uses" in j]
        for ref in uses:
            local = ref.startswith("./")
            assert local or SHA_PIN.fullmatch(ref), f"{name}: {ref} is not pinned to a commit SHA"


def test_permissions_are_empty_at_top_and_set_per_job(workflows) -> None:
    for name, doc in workflows.items():
        assert doc.get("permissions") == {}, f"{name}: top-level permissions must be {{}}"
        for job_id, job in doc["jobs"].items():
            perms = job.get("permissions")
            assert isinstance(perms, dict), f"{name}:{job_id} declares its own permissions"
            assert "write-all" not in str(perms), f"{name}:{job_id} is least-privilege"


def test_id_token_only_where_aws_is_assumed(workflows) -> None:
    for name, doc in workflows.items():
        for job_id, job in doc["jobs"].items():
            wants_oidc = job.get("permissions", {}).get("id-token") == "write"
            assumes = any(OIDC_ACTION in s.get("uses", "") for s in job.get("steps", []))
            calls = job.get("uses", "").endswith("deploy.yml")
            assert wants_oidc == (assumes or calls), f"{name}:{job_id} id-token iff it uses AWS"


def test_aws_only_through_oidc_role(workflows) -> None:
    text = "\n".join(p.read_text() for p in GITHUB.rglob("*") if p.is_file())
    assert "aws-access-key-id" not in text, "no long-lived AWS keys in any workflow"
    assert "AWS_SECRET_ACCESS_KEY" not in text, "no AWS secret keys in any workflow"
    for name, doc in workflows.items():
        for step in _steps(doc):
            if OIDC_ACTION in step.get("uses", ""):
                role = step["with"]["role-to-assume"]
                assert role.startswith("${{ vars."), f"{name}: role comes from a variable"


def test_deploys_are_serialized_per_environment(workflows) -> None:
    deploy = workflows["deploy.yml"]["jobs"]["deploy"]
    assert deploy["concurrency"]["group"] == "deploy-${{ inputs.environment }}", "per-env group"
    assert deploy["concurrency"]["cancel-in-progress"] is False, "a rollout is never cancelled"
    assert deploy["environment"]["name"] == "${{ inputs.environment }}", "GitHub environment"


def test_release_goes_dev_staging_prod_through_one_reusable_workflow(workflows) -> None:
    jobs = workflows["release.yml"]["jobs"]
    envs = [j["with"]["environment"] for j in jobs.values() if "uses" in j]
    assert envs == ["dev", "staging", "prod"], f"rollout order: {envs}"
    assert jobs["staging"]["needs"] == ["model", "dev"], "staging waits for dev"
    assert jobs["prod"]["needs"] == ["model", "staging"], "prod waits for staging"
    assert all(j["uses"] == "./.github/workflows/deploy.yml" for j in jobs.values() if "uses" in j)
    assert "workflow_call" in workflows["deploy.yml"]["on"], "deploy.yml is reusable"


def test_promote_and_rollback_are_manual(workflows) -> None:
    dispatch = workflows["operate.yml"]["on"]["workflow_dispatch"]["inputs"]
    assert dispatch["action"]["options"] == ["promote", "rollback"], "both operations offered"
    assert dispatch["environment"]["options"] == ["dev", "staging", "prod"], "closed env list"


def test_run_scripts_never_interpolate_untrusted_context(workflows) -> None:
    untrusted = re.compile(r"\$\{\{\s*(inputs|github\.event|github\.head_ref)")
    for name, doc in workflows.items():
        for step in _steps(doc):
            script = step.get("run", "")
            assert not untrusted.search(script), f"{name}: pass inputs via env, not ${{{{ }}}}"


def test_pr_tests_get_a_redis_service(workflows) -> None:
    test = workflows["ci.yml"]["jobs"]["test"]
    assert test["services"]["redis"]["image"].startswith("redis:"), "Redis service container"
    assert test["env"]["REDIS_URL"].startswith("redis://"), "tests use it through REDIS_URL"
    jobs = workflows["ci.yml"]["jobs"]
    for project in ("platform", "application"):
        preview = jobs[f"preview-{project}"]["steps"][-1]["with"]
        assert (preview["command"], preview["comment-on-pr"]) == ("preview", True), "PR comment"
        assert preview["work-dir"] == f"infra/{project}", project
    assert jobs["preview-application"]["runs-on"].startswith(_runner_for("dev")), (
        "the application preview needs the cluster API: dev's in-VPC runner"
    )
    assert jobs["release-dry-run"]["steps"][-1]["run"] == "make release-dry-run"


def test_no_run_wide_concurrency_holds_every_environment(workflows) -> None:
    release = workflows["release.yml"]
    assert "concurrency" not in release, "a pending prod approval must not hold dev and staging"
    for job_id, job in release["jobs"].items():
        assert "concurrency" not in job, f"release.yml:{job_id}: groups live in deploy.yml"


def test_training_steps_read_attempts_only(workflows) -> None:
    data = re.compile(r"--data\s+(\S+)")
    scripts = "\n".join(p.read_text() for p in (GITHUB / "scripts").glob("*.sh"))
    runs = "\n".join(step.get("run", "") for doc in workflows.values() for step in _steps(doc))
    found = data.findall(runs + "\n" + scripts)
    assert found, "some step passes --data"
    for path in found:
        assert path.endswith("/attempts"), f"--data {path}: the folder holds other tables too"


def test_the_image_is_built_from_the_store_the_bento_was_built_in(workflows) -> None:
    job = workflows["release.yml"]["jobs"]["model"]
    assert job["env"]["BENTOML_HOME"], "one BENTOML_HOME for make bento and containerize"
    steps = job["steps"]
    bento = next(i for i, s in enumerate(steps) if s.get("run") == "make bento")
    image = next(i for i, s in enumerate(steps) if "containerize.sh" in s.get("run", ""))
    assert bento < image, "containerize what was just built"
    assert "BENTOML_HOME" not in steps[bento].get("env", {}), "no step overrides the store"
    assert not any("setup-buildx" in s.get("uses", "") for s in steps), (
        "the docker-container builder never loads the image that docker save needs"
    )
    version = steps[image]["env"]["MODEL_VERSION"]
    assert version == "${{ steps.version.outputs.version }}", "tag = the model version"


def _runner_for(environment: str) -> str:
    from infra.components.runner import runner_label

    return runner_label(f"approvals-{environment}-runner")


def test_jobs_that_reach_a_cluster_run_inside_its_vpc(workflows) -> None:
    cluster_scripts = ("pulumi-up.sh", "smoke.sh", "stack.sh application")
    label = (
        "codebuild-approvals-${{ inputs.environment }}-runner"
        "-${{ github.run_id }}-${{ github.run_attempt }}"
    )
    for name, doc in workflows.items():
        for job_id, job in doc["jobs"].items():
            runs = " ".join(step.get("run", "") for step in job.get("steps", []))
            if any(script in runs for script in cluster_scripts):
                assert job["runs-on"] == label, f"{name}:{job_id} must run on the in-VPC runner"
    for env in ("dev", "staging", "prod"):
        assert label.replace("${{ inputs.environment }}", env).startswith(_runner_for(env)), (
            "the label names the CodeBuild project the platform creates"
        )


def test_the_platform_changes_only_by_an_approved_manual_run(workflows) -> None:
    platform = workflows["platform.yml"]
    assert set(platform["on"]) == {"workflow_dispatch"}, "never on push"
    for job_id, job in platform["jobs"].items():
        assert job["environment"]["name"] == "platform-${{ inputs.environment }}", (
            f"{job_id}: behind the platform environment's reviewers"
        )
    first, then = platform["jobs"]["platform"], platform["jobs"]["application"]
    assert first["runs-on"] == "ubuntu-latest", "AWS APIs only: reachable from GitHub"
    assert then["needs"] == "platform" and "up" in then["if"], "the application after an up"
    assert then["concurrency"]["group"] == "deploy-${{ inputs.environment }}", (
        "never at the same time as a rollout of that environment"
    )
    deploy_roles = [
        s["with"]["role-to-assume"] for doc in workflows.values() for s in _steps(doc)
        if OIDC_ACTION in s.get("uses", "")
    ]  # fmt: skip
    admin = [r for r in deploy_roles if "PLATFORM" in r]
    assert admin and all(
        s["with"]["role-to-assume"] != "${{ vars.AWS_PLATFORM_ROLE_ARN }}"
        for s in workflows["deploy.yml"]["jobs"]["deploy"]["steps"]
        if OIDC_ACTION in s.get("uses", "")
    ), "releases never use the administrator role"


def test_rollouts_run_the_application_stack_only() -> None:
    scripts = {p.name: p.read_text() for p in (GITHUB / "scripts").glob("*.sh")}
    assert "--cwd infra/application" in scripts["pulumi-up.sh"], "the release rolls the app"
    assert "--cwd infra/application" in scripts["stack-env.sh"], "and reads its outputs"
    assert "infra/platform" not in scripts["pulumi-up.sh"] + scripts["stack-env.sh"]


def test_kubectl_matches_the_clusters_minor_version(workflows) -> None:
    import yaml

    from tests.workflows.conftest import ROOT

    step = next(
        s for s in workflows["deploy.yml"]["jobs"]["deploy"]["steps"]
        if "ensure-kubectl.sh" in s.get("run", "")
    )  # fmt: skip
    minor = ".".join(step["env"]["KUBECTL_VERSION"].lstrip("v").split(".")[:2])
    for stack in ("dev", "staging", "prod"):
        path = ROOT / "environments" / "platform" / f"Pulumi.{stack}.yaml"
        cluster = yaml.safe_load(path.read_text())["config"]["approvals:cluster"]
        assert cluster["kubernetesVersion"] == minor, f"{stack}: kubectl within one minor"
