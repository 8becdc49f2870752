#!/usr/bin/env bash
# Roll this environment's application stack to a model version: `pulumi up` of
# infra/application with approvals:release.modelVersion, whose image the program reads from
# that version's registry record (so version and image always travel as a pair). Without a
# version, the stack deploys the registry's champion, as a manual `pulumi up` does.
# Inputs: ENVIRONMENT, MODE, GITHUB_RUN_ID; $1 the model version (may be empty).
set -euo pipefail
version="${1:-}"
args=(--yes --non-interactive --stack "$ENVIRONMENT" --cwd infra/application
  --policy-pack ../policy --message "$MODE ${version:-champion} run $GITHUB_RUN_ID")
if [ -n "$version" ]; then
  args+=(--config-path --config "approvals:release.modelVersion=$version")
fi
pulumi up "${args[@]}"
