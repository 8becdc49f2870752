"""``make serve``: the service in the foreground on a :class:`~dev.stack.LocalStack`.

Settings come from the environment: ``MODEL_DIR`` (default: the demo's model in ``DEMO_DIR``,
simulated and trained first when missing), ``HTTP_PORT`` (3000), ``GRPC_PORT`` (50051) and
``REDIS_URL`` (default: a throwaway ``redis-server`` holding the features).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path

from dev.stack import LocalStack, state_of


def demo_model(demo_dir: Path) -> tuple[Path, Path]:
    """The demo's model and data, simulating and training them first when missing."""
    from dev import demo

    model, data = demo_dir / "model", demo_dir / "sim" / "attempts.parquet"
    if not (model / "manifest.json").exists() or not data.exists():
        print(f"no demo model in {demo_dir}: simulating and training one first", flush=True)
        demo.offline(demo_dir, int(os.environ.get("DEMO_PAYMENTS", "150000")), 7)
    return model, data


def foreground_stack(workdir: Path) -> LocalStack:
    """The stack ``make serve`` runs, from the environment (see the module's docstring).

    A throwaway Redis gets the demo data's features, or the ``MODEL_DIR`` package's own
    feature state; a ``REDIS_URL`` Redis is used as it is.
    """
    from approvals.model.package import ModelPackage

    if os.environ.get("MODEL_DIR"):
        model_dir, data = Path(os.environ["MODEL_DIR"]), None
    else:
        model_dir, data = demo_model(Path(os.environ.get("DEMO_DIR", ".demo")))
    redis_url = os.environ.get("REDIS_URL") or None
    state = None
    if redis_url is None:
        state = state_of(data) if data is not None else ModelPackage.load(model_dir).state()
    return LocalStack(
        workdir, model_dir=model_dir, redis_url=redis_url, state=state,
        http_port=int(os.environ.get("HTTP_PORT", "3000")),
        grpc_port=int(os.environ.get("GRPC_PORT", "50051")),
    )  # fmt: skip


def serve_foreground() -> int:
    """Serve until Ctrl-C or SIGTERM, then stop gracefully; the service's exit code."""
    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a background job ignores it
        signal.signal(signum, _interrupt)
    with tempfile.TemporaryDirectory(prefix="approvals-serve-") as tmp:
        stack = foreground_stack(Path(tmp))
        try:
            service = stack.start().service
            print(f"serving {stack.model_dir} on {service.http} (HTTP) and {service.grpc}"
                  f" (gRPC), Redis {stack.url}; Ctrl-C stops", flush=True)  # fmt: skip
            service.proc.wait()
        except KeyboardInterrupt:
            print("stopping: in-flight requests drain", flush=True)
        finally:
            code = stack.stop()
    return code if code is not None and code > 0 else 0


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(serve_foreground())
