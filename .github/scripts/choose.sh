#!/usr/bin/env bash
# Decide the target (version, image tag) and the fallback (the current champion) of a rollout.
# Nothing moves here: the alias moves only after the rollout is healthy (move-alias.sh), so a
# failed rollout or rollback leaves both the cluster and the alias where they were.
# Inputs: MODE (release|promote|rollback), ENVIRONMENT, VERSION, APPROVALS.
# Prints KEY=value lines for $GITHUB_ENV.
set -euo pipefail
registry() { $APPROVALS registry "$@"; }
# REPOSITORY:TAG@sha256:... -> TAG
tag_of() { local ref="${1%@*}"; [ -n "$1" ] && echo "${ref##*:}"; return 0; }
previous_version="$(registry resolve --env "$ENVIRONMENT" --allow-missing)"
previous_tag=""
if [ -n "$previous_version" ]; then
  previous_tag="$(tag_of "$(registry resolve --env "$ENVIRONMENT" --field image --allow-missing)")"
fi
case "$MODE" in
  release)
    target_version="$VERSION"
    target_tag="$VERSION"  # release.yml tags the image with the model version
    ;;
  promote)
    [ -n "$VERSION" ] || { echo "error: promote needs a version" >&2; exit 2; }
    target_version="$VERSION"
    target_tag="$(tag_of "$(registry show "$VERSION" --json | jq -r '.image.reference // empty')")"
    ;;
  rollback)
    args=(--env "$ENVIRONMENT" --dry-run --json)
    [ -z "$VERSION" ] || args+=(--to "$VERSION")
    state="$(registry rollback "${args[@]}")"
    target_version="$(jq -r .version <<<"$state")"
    target_tag="$(tag_of "$(jq -r '.image.reference // empty' <<<"$state")")"
    ;;
  *)
    echo "error: unknown mode '$MODE' (release, promote, rollback)" >&2
    exit 2
    ;;
esac
if [ -z "$target_tag" ]; then
  echo "error: version $target_version has no image recorded in the $ENVIRONMENT registry" >&2
  exit 2
fi
echo "TARGET_VERSION=$target_version"
echo "TARGET_TAG=$target_tag"
echo "PREVIOUS_VERSION=$previous_version"
echo "PREVIOUS_TAG=$previous_tag"
