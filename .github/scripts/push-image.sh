#!/usr/bin/env bash
# Make sure $ECR_REPOSITORY:$TARGET_TAG exists: reuse it when present (tags are immutable and
# a tag is a model version), otherwise push the image the release job saved
# (work/image.tar.gz). Prints TARGET_IMAGE=REPOSITORY:TAG@DIGEST for $GITHUB_ENV.
set -euo pipefail
name="${ECR_REPOSITORY#*/}"
digest() {
  aws ecr describe-images --repository-name "$name" --image-ids "imageTag=$TARGET_TAG" \
    --query 'imageDetails[0].imageDigest' --output text
}
if found="$(digest 2>/dev/null)" && [ -n "$found" ] && [ "$found" != None ]; then
  echo "image $name:$TARGET_TAG already in ECR ($found)" >&2
else
  if [ ! -f work/image.tar.gz ]; then
    echo "error: image $name:$TARGET_TAG is not in ECR and this run built none; run a release" >&2
    exit 1
  fi
  gunzip -c work/image.tar.gz | docker load >&2
  docker tag "approvals:$TARGET_TAG" "$ECR_REPOSITORY:$TARGET_TAG"
  docker push "$ECR_REPOSITORY:$TARGET_TAG" >&2
  found="$(digest)"
fi
echo "TARGET_IMAGE=$ECR_REPOSITORY:$TARGET_TAG@$found"
