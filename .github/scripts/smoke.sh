#!/usr/bin/env bash
# Port-forward the service's HTTP and gRPC Services (ClusterIP; works for private endpoints
# too when the runner can reach the API server) and run smoke.py against them.
set -euo pipefail
expected="$1"
# SERVICE_HTTP / SERVICE_GRPC look like <service>.<namespace>.svc.cluster.local:<port>
split() { local host="${1%%:*}"; echo "${host%%.*} $(cut -d. -f2 <<<"$host") ${1##*:}"; }
read -r http_svc ns http_port <<<"$(split "$SERVICE_HTTP")"
read -r grpc_svc _ grpc_port <<<"$(split "$SERVICE_GRPC")"
kubectl -n "$ns" rollout status "deployment/${http_svc%-http}" --timeout=300s
kubectl -n "$ns" port-forward "svc/$http_svc" "18080:$http_port" >/dev/null &
http_pid=$!
kubectl -n "$ns" port-forward "svc/$grpc_svc" "18081:$grpc_port" >/dev/null &
grpc_pid=$!
trap 'kill "$http_pid" "$grpc_pid" 2>/dev/null || true' EXIT
uv run --frozen --all-extras python .github/scripts/smoke.py \
  --http http://127.0.0.1:18080 --grpc 127.0.0.1:18081 --expect-version "$expected"
