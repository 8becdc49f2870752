#!/usr/bin/env bash
# Move this environment's champion alias to the version just rolled out and smoke-tested: a
# promotion for a release or promote, a rollback entry for a rollback (the registry's audit
# history keeps actor, reason and run).
# Inputs: MODE, ENVIRONMENT, TARGET_VERSION, REASON, GITHUB_ACTOR, GITHUB_RUN_ID, APPROVALS.
set -euo pipefail
who=(--env "$ENVIRONMENT" --actor "$GITHUB_ACTOR" --reason "$REASON (run $GITHUB_RUN_ID)")
case "$MODE" in
  release | promote) $APPROVALS registry promote "$TARGET_VERSION" "${who[@]}" ;;
  rollback) $APPROVALS registry rollback --to "$TARGET_VERSION" "${who[@]}" ;;
  *)
    echo "error: unknown mode '$MODE'" >&2
    exit 2
    ;;
esac
