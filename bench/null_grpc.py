"""A do-nothing ``approval.v1`` gRPC server: the floor the service's CPU per call is compared to.

``Score`` answers a constant for the attempt's id, on a plain ``grpc.aio`` server in one
asyncio process, as a Python gRPC service with no work of its own would. Run by the benchmark::

    python bench/null_grpc.py --port 50061
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import grpc

from dev.stubs import grpc_stubs


async def serve(port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    pb, pb_grpc = grpc_stubs()

    class Null(pb_grpc.ApprovalServiceServicer):  # type: ignore[misc, name-defined]
        async def Score(self, request: Any, context: Any) -> Any:  # noqa: N802
            return pb.ScoreResponse(
                attempt_id=request.attempt.attempt_id, p_approve=0.5, model_version="null"
            )

    server = grpc.aio.server()
    pb_grpc.add_ApprovalServiceServicer_to_server(Null(), server)
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise SystemExit(f"cannot bind gRPC port {port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    try:  # the event loop the service gets: uvicorn's "auto" takes uvloop when it is installed
        import uvloop
    except ImportError:
        asyncio.run(serve(port))
    else:
        uvloop.run(serve(port))


if __name__ == "__main__":
    main()
