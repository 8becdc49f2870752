#!/usr/bin/env bash
# Build the image of the bento `make bento` just built, tagged approvals:<model version>, and
# save it for the deploy jobs. The tag is the model version, not the git SHA: a re-run that
# retrains gets a new version and so a new tag (ECR tags are immutable), never the old image.
# Inputs: BENTOML_HOME (the store `make bento` wrote to); $1 the model version; $2 the output.
set -euo pipefail
version="$1"
out="$2"
: "${BENTOML_HOME:?BENTOML_HOME must name the store that make bento built into}"
uv run --frozen --all-extras bentoml containerize approvals:latest --image-tag "approvals:$version"
docker save "approvals:$version" | gzip -1 > "$out"
echo "image approvals:$version saved to $out"
