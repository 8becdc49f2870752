#!/usr/bin/env bash
# Gate the release candidate (work/model) against this environment's champion on the held-out
# attempts; with no champion yet, on absolute thresholds only. Writes work/gate-$ENVIRONMENT.json
# (published with the version) and passes gate.sh's exit code on.
# Inputs: APPROVALS, ENVIRONMENT, APPROVALS_REGISTRY_BUCKET.
set -euo pipefail
champion="$($APPROVALS registry resolve --env "$ENVIRONMENT" --allow-missing)"
args=(--candidate work/model --data work/data/holdout/attempts --report "work/gate-$ENVIRONMENT.json")
if [ -n "$champion" ]; then
  $APPROVALS registry pull "$champion" --dest work/champion
  args+=(--champion work/champion)
fi
.github/scripts/gate.sh "${args[@]}"
