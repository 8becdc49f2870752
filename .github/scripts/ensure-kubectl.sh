#!/usr/bin/env bash
# Make sure kubectl is on PATH (the smoke test port-forwards with it). CodeBuild's images may
# not carry it: fetch the pinned release from dl.k8s.io and check it against the SHA-256 the
# Kubernetes release publishes beside it. Inputs: KUBECTL_VERSION (e.g. v1.33.4), RUNNER_TEMP.
set -euo pipefail
if command -v kubectl >/dev/null; then
  echo "kubectl: $(command -v kubectl)"
  exit 0
fi
: "${KUBECTL_VERSION:?KUBECTL_VERSION must name a release, e.g. v1.33.4}"
arch="$(uname -m)"
case "$arch" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac
dir="${RUNNER_TEMP:-/tmp}/kubectl-$KUBECTL_VERSION"
mkdir -p "$dir"
base="https://dl.k8s.io/release/$KUBECTL_VERSION/bin/linux/$arch"
curl -fsSL --retry 3 -o "$dir/kubectl" "$base/kubectl"
echo "$(curl -fsSL --retry 3 "$base/kubectl.sha256")  $dir/kubectl" | sha256sum --check --quiet
chmod +x "$dir/kubectl"
echo "$dir" >> "${GITHUB_PATH:-/dev/null}"
echo "kubectl $KUBECTL_VERSION installed in $dir"
