#!/usr/bin/env bash
# Run `approvals gate "$@"` and say why a rollout stops. Exit codes (approvals.cli.exits):
# 0 the candidate may ship; 3 the gate refused it (a verdict on the model); 2 the gate was
# called with bad input (fix the workflow or the data); 1 it crashed (not a verdict: rerun or
# investigate). The code is passed on unchanged, so every non-zero status fails the step.
# Input: APPROVALS, the command that runs the CLI (e.g. "uv run --frozen approvals").
set -uo pipefail
status=0
$APPROVALS gate "$@" || status=$?
case "$status" in
  0) echo "gate: the candidate may ship" ;;
  3) echo "::error title=Gate refused the candidate::it must not ship; the report above says which check failed" ;;
  2) echo "::error title=Gate called with bad input::exit 2: fix the arguments, config or data; nothing was judged" ;;
  *) echo "::error title=Gate crashed::exit $status: not a verdict on the model; rerun, or investigate the traceback" ;;
esac
exit "$status"
