#!/usr/bin/env bash
# Make sure $ECR_REPOSITORY:$TARGET_TAG exists: reuse it when present (tags are immutable),
# otherwise push the image saved by the release job (work/image.tar.gz).
set -euo pipefail
name="${ECR_REPOSITORY#*/}"
if aws ecr describe-images --repository-name "$name" --image-ids "imageTag=$TARGET_TAG" >/dev/null 2>&1; then
  echo "image $name:$TARGET_TAG already in ECR"
  exit 0
fi
if [ ! -f work/image.tar.gz ]; then
  echo "error: image $name:$TARGET_TAG is not in ECR and this run built none; run a release" >&2
  exit 1
fi
gunzip -c work/image.tar.gz | docker load
docker tag "approvals:$TARGET_TAG" "$ECR_REPOSITORY:$TARGET_TAG"
docker push "$ECR_REPOSITORY:$TARGET_TAG"
