"""The release dry run (``make release-dry-run``, :mod:`dev.release_dry_run`).

Unit tests of its parts (expressions, file commands, artifacts, settings, workflow checks);
a run of a deliberately broken copy of release.yml that must fail naming the step; and one
run of the real workflows, end to end, against moto.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml

from approvals.registry.core import ModelRegistry
from dev.dry_run import artifacts, docker_shim, stack_config
from dev.dry_run.command_files import CommandFileError, parse_key_values, parse_path
from dev.dry_run.evaluate import Strict, condition, expression, render
from dev.dry_run.expressions import ExpressionError
from dev.dry_run.pipeline import call_inputs
from dev.dry_run.settings import DEFAULT_SETTINGS, SettingsError, load_settings
from dev.dry_run.shim_args import ShimError, parse
from dev.dry_run.workflow import Workflow, WorkflowError, job_order, load

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def contexts(**extra: object) -> dict[str, object]:
    """Contexts as a deploy job's step sees them; strict where the dry run is strict."""
    base: dict[str, object] = {
        "inputs": Strict({"mode": "release", "environment": "dev", "version": "v1"}),
        "vars": Strict({"SIMULATED_PAYMENTS": "", "AWS_REGION": "eu-west-1"}),
        "github": Strict({"sha": "abc", "run_id": "42", "workspace": "/w"}),
        "secrets": Strict({"GITHUB_TOKEN": "t"}),
        "steps": Strict({"smoke": Strict({"outputs": {}, "outcome": "failure",
                                           "conclusion": "failure"})}),
        "needs": Strict({"model": Strict({"result": "success", "outputs": {"version": "v1"}})}),
        "env": {"PREVIOUS_TAG": "v0"},
    }  # fmt: skip
    return {**base, **extra}


def status(failed: bool) -> dict[str, object]:
    """Status functions of a job that has (or has not) failed so far."""
    return {
        "success": lambda: not failed, "failure": lambda: failed,
        "always": lambda: True, "cancelled": lambda: False,
    }  # fmt: skip


# --- expressions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vars.SIMULATED_PAYMENTS || '200000'", "200000"),
        ("inputs.mode == 'RELEASE'", True),  # strings compare case-insensitively
        ("inputs.mode != 'release' && 'x'", False),  # && returns its first falsy operand
        ("inputs.environment == 'prod' && 'big' || 'small'", "small"),
        ("needs.model.outputs.version", "v1"),
        ("needs.model.outputs.missing", None),  # outputs are open: GitHub's null
        ("github['run_id'] == 42", True),  # mixed types compare as numbers
        ("!(env.PREVIOUS_TAG != '')", False),
        ("env.UNSET", None),
        ("format('{0}-{1}', 'release', github.sha)", "release-abc"),
        ("contains(fromJSON('[\"a\",\"b\"]'), 'B')", True),
        ("startsWith(github.workspace, '/')", True),
        ("'it''s'", "it's"),
    ],
)
def test_expressions_evaluate_as_github_does(text: str, expected: object) -> None:
    """Given the contexts of a deploy step, when an expression is evaluated, then it has
    GitHub's value (fallbacks, case-insensitive strings, operands returned by && and ||)."""
    assert expression(text, contexts()) == expected, text


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("vars.TRAINNG_DATA_URI", "vars.TRAINNG_DATA_URI"),
        ("inputs.enviroment", "inputs.enviroment"),
        ("steps.smok.conclusion", "steps.smok"),
        ("needs.dev.outputs.x", "needs.dev"),
        ("matrix.python", "matrix"),
        ("hashFiles('uv.lock')", "hashFiles"),
        ("false && vars.NOPE", "vars.NOPE"),  # checked even in a branch && skips
        ("inputs.mode ==", "unexpected end"),
        ("inputs.mode = 'x'", "unexpected"),
    ],
)
def test_unknown_names_and_bad_syntax_fail_loudly(text: str, named: str) -> None:
    """Given a misspelt variable, input, step, job, context or function, or broken syntax,
    when the expression is evaluated, then it fails naming it (never an empty string)."""
    with pytest.raises(ExpressionError, match=named.replace("(", r"\(")):
        expression(text, contexts())


def test_templates_render_every_expression_and_refuse_an_unclosed_one() -> None:
    """Given text with several ``${{ }}`` (one holding ``}}`` in a string), when rendered,
    then each is replaced by its value as text; an unclosed one fails."""
    text = "release-${{ github.sha }} n=${{ vars.SIMULATED_PAYMENTS || 2e5 }} ${{ '}}' }}"
    assert render(text, contexts()) == "release-abc n=200000 }}", "values as text"
    assert render("plain $HOME text", contexts()) == "plain $HOME text", "no template: as is"
    with pytest.raises(ExpressionError, match="unterminated"):
        render("x ${{ github.sha ", contexts())


@pytest.mark.parametrize(
    ("raw", "failed", "expected"),
    [
        (None, False, True),  # no if: means success()
        (None, True, False),
        ("inputs.mode == 'release'", False, True),
        ("inputs.mode == 'release'", True, False),  # implicit success() && (...)
        ("${{ inputs.mode == 'release' }}", False, True),
        ("failure() && steps.smoke.conclusion == 'failure' && env.PREVIOUS_TAG != ''", True, True),
        (
            "failure() && steps.smoke.conclusion == 'failure' && env.PREVIOUS_TAG != ''",
            False,
            False,
        ),
        ("always()", True, True),
        ("vars.AWS_REGION != ''", False, True),
    ],
)
def test_if_conditions_follow_the_status_of_the_job(
    raw: str | None, failed: bool, expected: bool
) -> None:
    """Given an ``if:`` and whether a step failed before, then the step runs as on GitHub."""
    assert condition(raw, contexts(), status(failed)) is expected, (raw, failed)


def test_an_if_mixing_a_template_with_text_is_refused() -> None:
    """Given ``if: ${{ a }} == b`` (always true on GitHub), then the dry run refuses it."""
    with pytest.raises(ExpressionError, match="always true"):
        condition("${{ inputs.mode }} == 'release'", contexts(), status(False))


def test_status_functions_are_refused_outside_if() -> None:
    """Given ``failure()`` in an env value, then it fails: it means something only in if:."""
    with pytest.raises(ExpressionError, match="only allowed in an if"):
        render("${{ failure() }}", contexts())


# --- GITHUB_ENV, GITHUB_OUTPUT, GITHUB_PATH ---------------------------------------------


def test_key_value_lines_and_heredocs_are_read_as_the_runner_reads_them() -> None:
    """Given a file with ``NAME=value`` lines, empty lines and a multi-line ``NAME<<EOF``
    value, then each name has its value; '=' inside a value and a CR stay; later wins."""
    text = (
        "A=1\n\nURL=s3://b/k?x=y\nMULTI<<EOF\nline 1\n\nline 3=x\nEOF\n"
        "CR=with cr\r\nA=2\nEMPTY<<END\nEND\nLAST=no newline"
    )
    assert parse_key_values(text) == {
        "A": "2", "URL": "s3://b/k?x=y", "MULTI": "line 1\n\nline 3=x", "CR": "with cr\r",
        "EMPTY": "", "LAST": "no newline",
    }, "values as GitHub sets them"  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("JUST_A_NAME\n", "invalid format"),
        ("X<<EOF\nnever closed\n", "matching delimiter not found"),
        ("X<<\nvalue\n\n", "empty delimiter"),
        ("=value\n", "empty name"),
    ],
)
def test_malformed_file_commands_fail_the_step(text: str, message: str) -> None:
    """Given a line the runner rejects, then reading the file fails saying why."""
    with pytest.raises(CommandFileError, match=message):
        parse_key_values(text, "GITHUB_OUTPUT")


def test_github_path_puts_the_last_added_folder_first() -> None:
    """Given folders appended to GITHUB_PATH, then the last one is searched first."""
    assert parse_path("/a\n/b\n\n/a\n") == ["/a", "/b"], "re-added moves to the front"


# --- artifacts ---------------------------------------------------------------------------


def test_an_artifact_keeps_paths_below_the_common_folder_and_drops_hidden_files(
    tmp_path: Path,
) -> None:
    """Given release.yml's upload paths, when uploaded and downloaded into ``work``, then
    the files land where they were (root = least common ancestor), hidden ones left out,
    permissions not kept; a second upload of the name fails."""
    src, store, dst = tmp_path / "src", tmp_path / "store", tmp_path / "dst"
    for name in ("work/model/manifest.json", "work/model/.cache", "work/report/gate.json",
                 "work/image.tar.gz", "work/other.txt"):  # fmt: skip
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(name)
    (src / "work/image.tar.gz").chmod(0o755)
    paths = "work/model\nwork/report\nwork/image.tar.gz\n"
    artifacts.upload(store, src, "release-x", paths, if_no_files_found="error")
    artifacts.download(store, "release-x", dst / "work")
    found = sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file())
    assert found == ["work/image.tar.gz", "work/model/manifest.json", "work/report/gate.json"]
    assert (dst / "work/image.tar.gz").stat().st_mode & 0o777 == 0o644, "no exec bit travels"
    with pytest.raises(artifacts.ArtifactError, match="already exists"):
        artifacts.upload(store, src, "release-x", paths)
    with pytest.raises(artifacts.ArtifactError, match="no files were found"):
        artifacts.upload(store, src, "empty", "work/nothing-here", if_no_files_found="error")
    with pytest.raises(artifacts.ArtifactError, match="not found"):
        artifacts.download(store, "release-y", dst)


# --- settings, workflows, shims ----------------------------------------------------------


def test_the_dry_run_settings_load_and_a_bad_file_fails_clearly(tmp_path: Path) -> None:
    """Given the shipped settings, they load; given one with an unknown key or a bad account,
    loading fails naming the file and the field."""
    settings = load_settings(DEFAULT_SETTINGS, {"SIMULATED_PAYMENTS": "123"})
    assert settings.vars["SIMULATED_PAYMENTS"] == "123", "--var overrides a variable"
    assert set(settings.environments) == {"dev", "staging", "prod"}, "one stack each"
    doc = yaml.safe_load(DEFAULT_SETTINGS.read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**doc, "account": "12", "extra": 1}))
    with pytest.raises(SettingsError, match=r"(?s)bad\.yaml.*account.*extra"):
        load_settings(bad)


def test_a_job_with_a_matrix_or_an_unknown_step_key_is_refused(tmp_path: Path) -> None:
    """Given a workflow with what the dry run cannot reproduce, loading it fails naming it."""
    path = tmp_path / "w.yml"
    path.write_text(
        "on: push\njobs:\n  a:\n    strategy: {matrix: {x: [1]}}\n    steps: [{run: x}]\n"
    )
    with pytest.raises(WorkflowError, match="strategy"):
        load(path)
    path.write_text("on: push\njobs:\n  a:\n    steps: [{run: x, with-typo: 1}]\n")
    with pytest.raises(WorkflowError, match="with-typo"):
        load(path)


def test_jobs_run_in_needs_order_and_calls_check_their_inputs() -> None:
    """Given the real release.yml, jobs run model, dev, staging, prod; given deploy.yml, a call
    with an unknown input or without a required one fails, defaults fill the rest."""
    assert job_order(load(WORKFLOWS / "release.yml")) == ["model", "dev", "staging", "prod"]
    deploy: Workflow = load(WORKFLOWS / "deploy.yml")
    inputs = call_inputs(deploy, {"environment": "dev", "mode": "release"})
    assert inputs["version"] == "" and inputs["reason"] == "release", "defaults"
    with pytest.raises(WorkflowError, match="unexpected inputs"):
        call_inputs(deploy, {"environment": "dev", "mode": "release", "runnr": "x"})
    with pytest.raises(WorkflowError, match="required input 'environment'"):
        call_inputs(deploy, {"mode": "release"})


def test_shims_refuse_options_they_do_not_simulate() -> None:
    """Given a tool option the shim does not know, parsing fails rather than ignoring it."""
    parsed = parse(["up", "--stack=dev", "-c", "a=1", "--yes"], {"--stack", "-c"}, {"--yes"}, "p")
    assert (parsed.positional, parsed.all("-c"), parsed.has("--yes")) == (["up"], ["a=1"], True)
    with pytest.raises(ShimError, match="--target-replace"):
        parse(["up", "--target-replace", "x"], {"--stack"}, {"--yes"}, "pulumi")


SETTINGS_PY = """
from pydantic import BaseModel, ConfigDict


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Release(_M):
    modelVersion: str


class ApplicationSettings(_M):
    environment: str
    release: Release | None = None


def stack_file_to_raw(document):
    return {k.split(":", 1)[1]: v for k, v in document["config"].items()}


def parse_settings(raw, model):
    try:
        return model.model_validate(raw)
    except Exception as exc:
        raise ValueError(str(exc)) from None
"""


def test_pulumi_up_checks_its_config_with_the_programs_settings(tmp_path: Path) -> None:
    """Given a project whose settings model forbids unknown keys, when ``--config-path
    --config`` sets a known nested key, the config passes and is saved in the stack file;
    an unknown key fails as the program would."""
    project = tmp_path / "infra" / "application"
    project.mkdir(parents=True)
    (tmp_path / "infra" / "settings.py").write_text(SETTINGS_PY)
    (project / "Pulumi.yaml").write_text("name: app\nstackConfigDir: ../../environments\n")
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "Pulumi.dev.yaml").write_text(
        "config:\n  approvals:environment: dev\n"
    )
    good = {"approvals:release.modelVersion": "v1"}
    assert "checked by ApplicationSettings" in stack_config.check(project, "dev", good, True)
    document = stack_config.stack_document(project, "dev")
    stack_config.apply(document, good, as_paths=True)
    assert document["config"]["approvals:release"] == {"modelVersion": "v1"}, "path semantics"
    with pytest.raises(ShimError, match="imageTag"):
        stack_config.check(project, "dev", {"approvals:release.imageTag": "v1"}, True)


def test_docker_save_and_load_carry_an_image_in_dockers_tarball_format(tmp_path: Path) -> None:
    """Given an image the docker stand-in built from a context, when it is saved in one job
    and loaded in another, then the second job has it under the same tag, same layer."""
    context = tmp_path / "context"
    (context / "env" / "docker").mkdir(parents=True)
    (context / "env" / "docker" / "Dockerfile").write_text("FROM scratch\n")
    first, second = docker_shim.Store(tmp_path / "a"), docker_shim.Store(tmp_path / "b")
    docker_shim.build(
        first, ["--tag", "approvals:v1", "--file", "env/docker/Dockerfile", str(context)]
    )
    tarball = tmp_path / "image.tar"
    docker_shim.save(first, ["approvals:v1", "-o", str(tarball)])
    docker_shim.load(second, ["-i", str(tarball)])
    layers = [(s.find("approvals:v1") / "layer.tar").read_bytes() for s in (first, second)]
    assert layers[0] == layers[1], "the same image arrives"
    with pytest.raises(ShimError, match="No such image"):
        docker_shim.save(second, ["approvals:v2", "-o", str(tarball)])


# --- whole runs --------------------------------------------------------------------------


def dry_run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m dev.release_dry_run ARGS``, its output captured."""
    command = [sys.executable, "-m", "dev.release_dry_run", *args]
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.servers
@pytest.mark.slow
def test_a_misspelt_command_in_release_yml_fails_the_dry_run_naming_the_step(
    tmp_path: Path,
) -> None:
    """Given a copy of the workflows whose first run: step of the model job calls a
    misspelt script, when the dry run runs them, then it exits 1 naming that job and step,
    and the deploy jobs are skipped."""
    workflows = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, workflows)
    doc = yaml.safe_load((workflows / "release.yml").read_text())
    step = next(s for s in doc["jobs"]["model"]["steps"] if "run" in s)
    command, _, rest = step["run"].partition(" ")
    step["run"] = f"{command}-misspelt {rest}".strip()
    (workflows / "release.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    done = dry_run("--workflows", str(workflows), "--scratch", str(tmp_path), timeout=600)
    name = step.get("name") or f"Run {step['run']}"
    assert done.returncode == 1, f"a failed step fails the run:\n{done.stdout[-3000:]}"
    assert f"failed: model / {name}: exit code 127" in done.stdout, done.stdout[-3000:]
    assert "== dev: skipped" in done.stdout, "nothing deploys after a failed model job"


@pytest.mark.servers
def test_an_unknown_variable_fails_the_dry_run_naming_the_step(tmp_path: Path) -> None:
    """Given a release.yml whose step reads a variable the dry run does not define, when it
    runs, then that step fails naming the variable, and the run exits 1."""
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "release.yml").write_text(
        "on: push\njobs:\n  model:\n    steps:\n"
        "      - name: Reads a misspelt variable\n"
        "        run: echo ${{ vars.TRAINNG_DATA_URI }}\n"
    )
    done = dry_run(
        "--workflows", str(tmp_path / "workflows"), "--scratch", str(tmp_path), timeout=300
    )
    assert done.returncode == 1, done.stdout[-2000:]
    failure = "failed: model / Reads a misspelt variable: unknown vars.TRAINNG_DATA_URI"
    assert failure in done.stdout, done.stdout[-2000:]


@pytest.mark.servers
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_release_workflows_run_end_to_end_against_moto(
    s3_endpoint: str, tmp_path: Path
) -> None:
    """Given the real workflows, 20k simulated payments cut in time on moto's S3, when the
    dry run runs them, then every environment ends on the model version and its image, the
    registry on moto holds the version with that image as champion, and the recorded
    commands include the pulumi up of that version (the image tag is the version)."""
    summary_path = tmp_path / "summary.json"
    done = dry_run(
        "--data", "s3", "--var", "SIMULATED_PAYMENTS=20000", "--s3-endpoint", s3_endpoint,
        "--summary-json", str(summary_path), "--scratch", str(tmp_path), timeout=1700,
    )  # fmt: skip
    assert done.returncode == 0, (
        f"the release succeeds:\n{done.stdout[-5000:]}\n{done.stderr[-2000:]}"
    )
    assert "release dry run succeeded" in done.stdout.splitlines()[-1], done.stdout[-500:]
    summary = json.loads(summary_path.read_text())
    version = summary["model_version"]
    assert version, "the model job published a version"
    rollouts = {r["environment"]: r for r in summary["rollouts"]}
    assert set(rollouts) == {"dev", "staging", "prod"}, rollouts
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="eu-west-1")
    for env, rollout in rollouts.items():
        assert rollout["result"] == "success", f"{env} rolled out: {rollout}"
        assert rollout["model_version"] == version, f"{env} deploys the release's version"
        assert f":{version}@sha256:" in rollout["image"], f"{env} image tagged with it: {rollout}"
        assert rollout["running"] == rollout["image"], f"{env} ran and smoke-tested that image"
        registry = ModelRegistry(s3, rollout["bucket"])
        record = registry.show(version)
        assert record.image is not None and record.image.reference == rollout["image"], env
        assert registry.resolve(env, "champion").version == version, f"{env} champion moved"
    ups = [c["command"] for c in summary["commands"] if c["command"].startswith("pulumi up")]
    assert len(ups) == 3 and all(version in up for up in ups), f"pulumi up per environment: {ups}"
