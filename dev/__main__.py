"""``python -m dev serve`` (``make serve``) and ``python -m dev demo`` (``make demo``)."""

from __future__ import annotations

import argparse
import sys

from dev.processes import StackError


def main(argv: list[str] | None = None) -> None:
    """Run one development command; settings come from the environment (see each module)."""
    parser = argparse.ArgumentParser(prog="python -m dev", description=__doc__)
    parser.add_argument("command", choices=("serve", "demo"))
    command = parser.parse_args(argv).command
    try:
        if command == "serve":
            from dev.local import serve_foreground

            sys.exit(serve_foreground())
        from dev.demo import main as demo

        demo()
    except StackError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
