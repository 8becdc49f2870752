#!/usr/bin/env bash
# Decide the target (version, image tag) and the fallback (current champion) of a rollout.
# Inputs: MODE (release|promote|rollback), ENVIRONMENT, VERSION, REASON, GITHUB_SHA, APPROVALS.
# Prints KEY=value lines for $GITHUB_ENV. A rollback moves the alias here, before the rollout,
# so that the fastest path back is one `pulumi up`.
set -euo pipefail
registry() { $APPROVALS registry "$@"; }
previous_version="$(registry resolve --env "$ENVIRONMENT" --allow-missing)"
previous_tag="$(registry resolve --env "$ENVIRONMENT" --allow-missing --field git_sha)"
case "$MODE" in
  release)
    target_version="$VERSION"
    target_tag="$GITHUB_SHA"
    ;;
  promote)
    [ -n "$VERSION" ] || { echo "error: promote needs a version" >&2; exit 2; }
    target_version="$VERSION"
    target_tag="$(registry show "$VERSION" | jq -r '.git_sha // empty')"
    ;;
  rollback)
    args=(--env "$ENVIRONMENT" --actor "$GITHUB_ACTOR" --reason "$REASON" --json)
    [ -z "$VERSION" ] || args+=(--to "$VERSION")
    state="$(registry rollback "${args[@]}")"
    target_version="$(jq -r .version <<<"$state")"
    target_tag="$(jq -r '.git_sha // empty' <<<"$state")"
    ;;
  *)
    echo "error: unknown mode '$MODE' (release, promote, rollback)" >&2
    exit 2
    ;;
esac
[ -n "$target_tag" ] || { echo "error: version $target_version has no git SHA (image tag)" >&2; exit 2; }
echo "TARGET_VERSION=$target_version"
echo "TARGET_TAG=$target_tag"
echo "PREVIOUS_VERSION=$previous_version"
echo "PREVIOUS_TAG=$previous_tag"
