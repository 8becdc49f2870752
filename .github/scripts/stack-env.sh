#!/usr/bin/env bash
# Print, as KEY=value lines for $GITHUB_ENV, what a rollout needs from the application stack.
# The kubeconfig (a secret output) goes to a 0600 file under $RUNNER_TEMP, never to the log.
set -euo pipefail
stack="$1"
pulumi login --non-interactive "$PULUMI_BACKEND_URL" >&2
outputs="$(pulumi stack output --json --show-secrets --non-interactive --stack "$stack" --cwd infra/application)"
kubeconfig="${RUNNER_TEMP:-/tmp}/kubeconfig-$stack"
umask 077
jq -r '.kubeconfig | if type == "string" then . else tojson end' <<<"$outputs" > "$kubeconfig"
echo "KUBECONFIG=$kubeconfig"
echo "APPROVALS_REGISTRY_BUCKET=$(jq -er .bucketName <<<"$outputs")"
echo "ECR_REPOSITORY=$(jq -er .ecrRepositoryUrl <<<"$outputs")"
echo "SERVICE_HTTP=$(jq -er .serviceHosts.http <<<"$outputs")"
echo "SERVICE_GRPC=$(jq -er .serviceHosts.grpc <<<"$outputs")"
