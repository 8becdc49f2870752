"""Run a whole Pulumi program for one stack file under the official mocks; dump what it made.

Usage: ``python tests/infra/pulumi_harness.py <platform|application> <Pulumi.stack.yaml>
<out.json> [world.json]``

Pulumi's runtime state is process-global, so each stack runs in its own process. The mocks
stand in for the cloud providers only: they echo the program's inputs and add the attributes a
provider computes (ARNs, endpoints, generated passwords). ``world.json`` holds what exists
outside the program: the outputs of the stacks it references (``stacks``: name -> outputs and
secret output names) and the objects in S3 (``objects``: bucket -> key -> text), which the
invokes read. Everything asserted later is what the program itself sent.
"""

from __future__ import annotations

import hashlib
import json
import runpy
import string
import sys
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks, rpc
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = {name: ROOT / "infra" / name / "__main__.py" for name in ("platform", "application")}
ACCOUNT = "123456789012"
# Pulumi's wire encoding of a secret value: {_SIG_KEY: _SECRET_SIG, "value": ...}.
_SIG_KEY, _SECRET_SIG = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"


def _digest(text: str, size: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def _password(name: str, length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    seed = hashlib.sha256(name.encode()).digest() * (length // 32 + 1)
    return "".join(alphabet[b % len(alphabet)] for b in seed[:length])


def _computed(typ: str, name: str, inputs: dict[str, Any], region: str) -> tuple[str, dict]:
    """Provider-computed attributes for the resource types the program uses."""
    arn = f"arn:aws:{typ.split(':')[1].split('/', maxsplit=1)[0]}:{region}:{ACCOUNT}:{name}"
    out: dict[str, Any] = {"arn": arn}
    rid = f"{name}-{_digest(name)}"
    if typ == "aws:s3/bucket:Bucket":
        rid = inputs.get("bucket") or f"{inputs.get('bucketPrefix', name)}{_digest(name)}"
        out = {"bucket": rid, "arn": f"arn:aws:s3:::{rid}"}
    elif typ == "aws:eks/cluster:Cluster":
        oidc = f"https://oidc.eks.{region}.amazonaws.com/id/{_digest(name, 32).upper()}"
        out["endpoint"] = f"https://{_digest(name, 32).upper()}.gr7.{region}.eks.amazonaws.com"
        out["certificateAuthority"] = {"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t"}
        out["identities"] = [{"oidcs": [{"issuer": oidc}]}]
        out["vpcConfig"] = {
            **inputs.get("vpcConfig", {}),
            "clusterSecurityGroupId": "sg-eks-cluster",
        }
    elif typ == "aws:elasticache/replicationGroup:ReplicationGroup":
        out["primaryEndpointAddress"] = f"master.{name}.{_digest(name, 6)}.use1.cache.amazonaws.com"
    elif typ == "aws:ecr/repository:Repository":
        out["repositoryUrl"] = f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{inputs['name']}"
    elif typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
        out["arn"] = (
            f"arn:aws:iam::{ACCOUNT}:oidc-provider/{inputs['url'].removeprefix('https://')}"
        )
    elif typ == "aws:iam/role:Role":
        out.update(arn=f"arn:aws:iam::{ACCOUNT}:role/{rid}", name=rid)
    elif typ == "aws:kms/key:Key":
        out.update(
            keyId=_digest(name, 32), arn=f"arn:aws:kms:{region}:{ACCOUNT}:key/{_digest(name, 32)}"
        )
    elif typ == "random:index/randomPassword:RandomPassword":
        out = {"result": _password(name, int(inputs["length"]))}
    elif typ in ("aws:elasticache/subnetGroup:SubnetGroup", "aws:cloudwatch/logGroup:LogGroup"):
        out["name"] = inputs.get("name") or rid
    return rid, out


class PlatformMocks(pulumi.runtime.Mocks):
    """Echo inputs, add computed attributes; answer stack references and invokes from a world."""

    def __init__(self, region: str, world: dict[str, Any]) -> None:
        self.region = region
        self.stacks: dict[str, Any] = world.get("stacks", {})
        self.objects: dict[str, dict[str, str]] = world.get("objects", {})
        self.invokes: list[dict[str, Any]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        if args.typ == "pulumi:pulumi:StackReference":
            name = args.inputs["name"]
            if name not in self.stacks:
                raise AssertionError(f"reference to an unknown stack {name}")
            stack = self.stacks[name]
            state = {"name": name, "outputs": stack["outputs"]}
            return name, {**state, "secretOutputNames": stack.get("secret", [])}
        rid, computed = _computed(args.typ, args.name, args.inputs, self.region)
        return rid, {**args.inputs, **computed}

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        self.invokes.append({"token": args.token, "args": dict(args.args)})
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/session"
            return {"accountId": ACCOUNT, "arn": arn, "userId": "AROAEXAMPLE:session"}, []
        if args.token == "aws:s3/getObjects:getObjects":
            return self._list(args.args), []
        if args.token == "aws:s3/getObject:getObject":
            bucket, key = args.args["bucket"], args.args["key"]
            if key not in self.objects.get(bucket, {}):
                raise AssertionError(f"getObject of a missing object s3://{bucket}/{key}")
            return {"bucket": bucket, "key": key, "body": self.objects[bucket][key]}, []
        raise AssertionError(f"the program made an unexpected invoke: {args.token}")

    def _list(self, call: dict[str, Any]) -> dict[str, Any]:
        bucket = call["bucket"]
        if bucket not in self.objects:
            raise AssertionError(f"getObjects in a missing bucket {bucket}")
        prefix, after = call.get("prefix") or "", call.get("startAfter") or ""
        keys = sorted(k for k in self.objects[bucket] if k.startswith(prefix) and k > after)
        keys = keys[: int(call.get("maxKeys") or 1000)]
        return {"bucket": bucket, "keys": keys, "commonPrefixes": [], "owners": []}


class RecordingMonitor(mocks.MockMonitor):
    """The official mock monitor, also noting each resource's parent and component outputs."""

    def __init__(self, mocked: pulumi.runtime.Mocks) -> None:
        super().__init__(mocked)
        self.records: list[dict[str, Any]] = []
        self.component_outputs: dict[str, Any] = {}

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        inputs = rpc.deserialize_properties(request.object, keep_unknowns=True)
        state = self.resources.get(response.urn)
        self.records.append(
            {
                "urn": response.urn,
                "type": request.type,
                "name": request.name,
                "parent": request.parent,
                "custom": bool(request.custom),
                "provider": request.provider,
                "dependencies": list(request.dependencies),
                "secretInputs": sorted(k for k, v in inputs.items() if _is_secret(v)),
                "inputs": inputs,
                "state": state.state if state else {},
            }
        )
        return response

    def ReadResource(self, request: Any) -> Any:
        response = super().ReadResource(request)
        inputs = rpc.deserialize_properties(request.properties, keep_unknowns=True)
        self.records.append(
            {
                "urn": response.urn,
                "type": request.type,
                "name": request.name,
                "parent": request.parent,
                "custom": True,
                "read": True,
                "provider": request.provider,
                "dependencies": list(request.dependencies),
                "secretInputs": [],
                "inputs": inputs,
                "state": self.resources[response.urn].state,
            }
        )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:
        outputs = rpc.deserialize_properties(request.outputs, keep_unknowns=True)
        self.component_outputs[request.urn] = outputs
        return super().RegisterResourceOutputs(request)


def stack_config(document: dict[str, Any]) -> dict[str, str]:
    """Stack file values as the engine hands them over: strings, objects as JSON."""
    config = document.get("config") or {}
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


async def _resolve(outputs: dict[str, Any]) -> dict[str, Any]:
    result = {}
    for key, value in outputs.items():
        output = pulumi.Output.from_input(value)
        result[key] = {"value": await output.future(), "secret": await output.is_secret()}
    return result


def run(program: str, stack_file: Path, world: dict[str, Any]) -> dict[str, Any]:
    """Run one program for one stack file under mocks.

    Args:
        program: ``platform`` or ``application``.
        stack_file: ``Pulumi.<stack>.yaml``.
        world: referenced stacks and S3 objects (see the module docstring).

    Returns:
        Recorded resources, component outputs, invokes and resolved stack outputs.
    """
    document = yaml.safe_load(stack_file.read_text()) or {}
    config = stack_config(document)
    stack = stack_file.name.split(".")[1]
    mocked = PlatformMocks(config.get("aws:region", "us-east-1"), world)
    monitor = RecordingMonitor(mocked)
    pulumi.runtime.set_mocks(
        monitor.mocks, project=f"approvals-{program}", stack=stack, preview=False, monitor=monitor
    )
    pulumi.runtime.set_all_config(config)
    main = str(PROGRAMS[program])
    _sync_await(run_pulumi_func(lambda: runpy.run_path(main, run_name="__main__")))
    root = pulumi.runtime.get_root_resource()
    outputs = _sync_await(_resolve(root.outputs))  # type: ignore[union-attr]
    return {
        "resources": monitor.records,
        "components": monitor.component_outputs,
        "invokes": mocked.invokes,
        "outputs": outputs,
    }


def _is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(_SIG_KEY) == _SECRET_SIG


def _plain(value: Any) -> Any:
    """JSON-ready copy: secrets unwrapped (listed apart), integral floats back to ints."""
    if _is_secret(value):
        return _plain(value["value"])
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return f"<{type(value).__name__}>"


def main(argv: list[str]) -> int:
    """Entry point: run one stack file, write JSON; exit 2 with the message on a config error."""
    program, stack_file, out = argv[1], Path(argv[2]), Path(argv[3])
    world = json.loads(Path(argv[4]).read_text()) if len(argv) > 4 else {}
    try:
        result = run(program, stack_file, world)
    except ValueError as error:  # SettingsError and pydantic problems reach the user as text
        print(str(error), file=sys.stderr)
        return 2
    out.write_text(json.dumps(_plain(result), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
