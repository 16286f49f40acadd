#!/usr/bin/env bash
# End to end on a local kind cluster: build the CPU image, install the KubeRay operator and both charts,
# train, serve, promote a second run in place, and check on a real cluster each expectation that the
# unit tests can only model (docs/kubernetes.md, "Not verified on a cluster", lists them; each check
# below names the one it covers).
#
# It cannot run in the development environment of this repository (no Docker engine, no cluster, no
# network beyond package registries); it is for users with Docker, kind, kubectl and helm. The same
# manifests are validated offline by the test suite (Helm rendering, CRD and Kubernetes schemas, the
# KubeRay rules of tests/kuberay_rules.py, checkov).
#
# Usage: scripts/kind-e2e.sh            (KEEP=1 keeps the cluster afterwards)
# Needs: docker, kind >= 0.23, kubectl, helm >= 3.14, ~8 CPUs and 16 GiB for Docker, internet access
# (the Hugging Face Hub for the base model and the IMDb data).
set -euo pipefail

CLUSTER=${CLUSTER:-sentiray}
NS=${NS:-sentiray}
KUBERAY_VERSION=${KUBERAY_VERSION:-1.7.0}
IMAGE=sentiray:0.1.0
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
PF=
cleanup() {
  [ -n "$PF" ] && kill "$PF" 2>/dev/null
  rm -rf "$WORK"
  [ "${KEEP:-0}" = 1 ] || kind delete cluster --name "$CLUSTER"
}
trap cleanup EXIT

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
fail() { echo "FAIL: $*" >&2; exit 1; }

# Waits for a RayJob to end, Complete or Failed (a failed job must not burn the whole timeout), and
# prints its final jobStatus.
wait_rayjob() {
  local job=$1 timeout_s=$2 status deadline=$((SECONDS + $2))
  while :; do
    status=$(kubectl -n "$NS" get rayjob "$job" -o jsonpath='{.status.jobDeploymentStatus}' 2>/dev/null || true)
    case "$status" in
      Complete|Failed) break ;;
    esac
    [ "$SECONDS" -lt "$deadline" ] || fail "rayjob/$job still '$status' after ${timeout_s}s"
    sleep 10
  done
  echo "rayjob/$job: $status, job $(kubectl -n "$NS" get rayjob "$job" -o jsonpath='{.status.jobStatus}')" >&2
  kubectl -n "$NS" get rayjob "$job" -o jsonpath='{.status.jobStatus}'
}

echo "== cluster and the CPU image (CPU torch wheels, not PyPI's CUDA build)"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
docker build -t "$IMAGE" --build-arg RAY_VARIANT=cpu \
  --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

# The operator in the namespace of its quickstart (not `kuberay-operator`): the charts' NetworkPolicy
# must admit it by its pod labels wherever it runs.
echo "== KubeRay operator $KUBERAY_VERSION"
helm repo add kuberay https://ray-project.github.io/kuberay-helm/ --force-update >/dev/null
helm upgrade --install kuberay-operator kuberay/kuberay-operator --version "$KUBERAY_VERSION" \
  --namespace default --wait --timeout 5m

kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NS" create secret generic sentiray-api-token \
  --from-literal=token="$(head -c 24 /dev/urandom | base64)" --dry-run=client -o yaml | kubectl apply -f -

# kind: no GPUs, one node, the local-path storage class (ReadWriteOnce). The values are the charts'
# ci/kind-values.yaml, which the unit tests render and check against the KubeRay rules.
TRAIN_VALUES=$ROOT/helm/sentiray-train/ci/kind-values.yaml
SERVE_VALUES=$ROOT/helm/sentiray-serve/ci/kind-values.yaml

echo "== training (run kind-1)"
helm upgrade --install train "$ROOT/helm/sentiray-train" -n "$NS" -f "$TRAIN_VALUES" --set job.runName=kind-1
[ "$(wait_rayjob train-sentiray-train 3600)" = SUCCEEDED ] || fail "training did not succeed"
kubectl -n "$NS" logs job/train-sentiray-train | grep SENTIRAY_RESULT

echo "== serving"
helm upgrade --install serve "$ROOT/helm/sentiray-serve" -n "$NS" -f "$SERVE_VALUES" \
  --set model.uri=/mnt/sentiray/runs/kind-1/artifact
kubectl -n "$NS" wait rayservice/serve-sentiray-serve --for=condition=Ready --timeout=30m
helm test serve -n "$NS" --logs --timeout 10m   # also: the small test image runs as uid 1000, read-only root

HEAD=$(kubectl -n "$NS" get pod -l ray.io/node-type=head,app.kubernetes.io/instance=serve -o name | head -1)

echo "== [labels] KubeRay's head Service selects the head pod (Ray pods keep app.kubernetes.io/name=kuberay)"
[ -n "$(kubectl -n "$NS" get endpoints serve-sentiray-serve-head-svc -o jsonpath='{.subsets[*].addresses[*].ip}')" ] \
  || fail "serve-sentiray-serve-head-svc has no endpoints"

echo "== [shm] /dev/shm is the emptyDir's size and the object store is in it, not on disk"
kubectl -n "$NS" exec "$HEAD" -c ray-head -- df -B1 /dev/shm
kubectl -n "$NS" exec "$HEAD" -c ray-head -- sh -c \
  '! grep -rl "instead of /dev/shm" /tmp/ray/session_latest/logs/ 2>/dev/null' \
  || fail "Ray put the object store on disk"

echo "== [metrics] the autoscaler's and dashboard's metrics ports answer on the head"
for port in 8080 44217 44227; do
  kubectl -n "$NS" exec "$HEAD" -c ray-head -- python -c \
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/metrics', timeout=10)" \
    || fail "no metrics on port $port"
done

echo "== /predict through a port-forward"
kubectl -n "$NS" port-forward svc/serve-sentiray-serve-serve-svc 18000:8000 >/dev/null &
PF=$!
sleep 3
TOKEN=$(kubectl -n "$NS" get secret sentiray-api-token -o jsonpath='{.data.token}' | base64 -d)
curl -fsS localhost:18000/health
curl -fsS localhost:18000/predict -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" \
  -d '{"inputs": "A wonderful, moving film."}'
echo

echo "== [promotion] a second run, to its own path, promoted in place (same RayCluster)"
helm uninstall train -n "$NS"
helm upgrade --install train "$ROOT/helm/sentiray-train" -n "$NS" -f "$TRAIN_VALUES" --set job.runName=kind-2
[ "$(wait_rayjob train-sentiray-train 3600)" = SUCCEEDED ] || fail "second training did not succeed"
CLUSTER_BEFORE=$(kubectl -n "$NS" get rayservice serve-sentiray-serve -o jsonpath='{.status.activeServiceStatus.rayClusterName}')
helm upgrade serve "$ROOT/helm/sentiray-serve" -n "$NS" -f "$SERVE_VALUES" \
  --set model.uri=/mnt/sentiray/runs/kind-2/artifact
for _ in $(seq 60); do
  curl -fsS localhost:18000/info -H "Authorization: Bearer $TOKEN" | grep -q kind-2 && break
  sleep 10
done
curl -fsS localhost:18000/info -H "Authorization: Bearer $TOKEN" | grep -q kind-2 || fail "/info does not report kind-2"
CLUSTER_AFTER=$(kubectl -n "$NS" get rayservice serve-sentiray-serve -o jsonpath='{.status.activeServiceStatus.rayClusterName}')
[ "$CLUSTER_BEFORE" = "$CLUSTER_AFTER" ] || fail "promotion started a new cluster ($CLUSTER_BEFORE -> $CLUSTER_AFTER)"
kubectl -n "$NS" exec "$HEAD" -c ray-head -- true  # the head pod is still the same

echo "== [reuse] a finished run's name is refused, so the served artifact is not overwritten"
helm uninstall train -n "$NS"
helm upgrade --install train "$ROOT/helm/sentiray-train" -n "$NS" -f "$TRAIN_VALUES" --set job.runName=kind-2
[ "$(wait_rayjob train-sentiray-train 1800)" = FAILED ] || fail "reusing run kind-2 was not refused"
helm uninstall train -n "$NS"

echo "== [pending] a claim that cannot bind fails the RayJob after preRunningDeadlineSeconds"
helm upgrade --install stuck "$ROOT/helm/sentiray-train" -n "$NS" -f "$TRAIN_VALUES" \
  --set job.runName=kind-stuck --set storage.pvc.name=stuck-runs \
  --set storage.pvc.storageClassName=no-such-class --set job.preRunningDeadlineSeconds=120
wait_rayjob stuck-sentiray-train 600 >/dev/null
[ "$(kubectl -n "$NS" get rayjob stuck-sentiray-train -o jsonpath='{.status.jobDeploymentStatus}')" = Failed ] \
  || fail "a Pending claim did not fail the job"
helm uninstall stuck -n "$NS"
kubectl -n "$NS" delete pvc stuck-runs --wait=false

echo "kind e2e: OK"
