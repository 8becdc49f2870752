#!/usr/bin/env bash
# `pulumi $COMMAND` (preview or up) of one project's stack for $ENVIRONMENT, with the policy
# pack. The stack must exist: an administrator creates each once (`pulumi stack init` with the
# awskms:// secrets provider, docs/infra.md) and commits the stack file's encryptedkey.
# Inputs: ENVIRONMENT, COMMAND, PULUMI_BACKEND_URL, GITHUB_RUN_ID; $1 platform|application.
set -euo pipefail
project="$1"
case "$project" in platform | application) ;; *)
  echo "error: unknown project '$project' (platform, application)" >&2
  exit 2
  ;;
esac
case "${COMMAND:-}" in preview | up) ;; *)
  echo "error: COMMAND must be preview or up, not '${COMMAND:-}'" >&2
  exit 2
  ;;
esac
pulumi login --non-interactive "$PULUMI_BACKEND_URL"
args=(--stack "$ENVIRONMENT" --cwd "infra/$project" --policy-pack ../policy --non-interactive)
if [ "$COMMAND" = up ]; then
  args+=(--yes --message "platform workflow run $GITHUB_RUN_ID")
fi
pulumi "$COMMAND" "${args[@]}"
