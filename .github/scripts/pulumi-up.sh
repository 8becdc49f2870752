#!/usr/bin/env bash
# Roll the environment's stack to an image tag and model version: pulumi up $ENVIRONMENT.
set -euo pipefail
tag="$1"
version="$2"
pulumi up --yes --non-interactive --stack "$ENVIRONMENT" --cwd infra \
  --message "$MODE $version (image $tag) run $GITHUB_RUN_ID" \
  --config-path \
  --config "approvals:service.imageTag=$tag" \
  --config "approvals:service.modelVersion=$version"
