#!/usr/bin/env bash
# End to end on a local kind cluster: build the image, install the KubeRay operator and both charts,
# wait for the training RayJob and the serving RayService, then call /predict.
#
# It cannot run in the development environment of this repository (no Docker engine, no cluster, no
# network beyond package registries); it is for users with Docker, kind, kubectl and helm. The same
# manifests are validated offline by the test suite (Helm rendering, CRD and Kubernetes schemas, checkov).
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
trap 'rm -rf "$WORK"; [ "${KEEP:-0}" = 1 ] || kind delete cluster --name "$CLUSTER"' EXIT

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

echo "== cluster and image"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
docker build -t "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

echo "== KubeRay operator $KUBERAY_VERSION"
helm repo add kuberay https://ray-project.github.io/kuberay-helm/ --force-update >/dev/null
helm upgrade --install kuberay-operator kuberay/kuberay-operator --version "$KUBERAY_VERSION" \
  --namespace kuberay-operator --create-namespace --wait --timeout 5m

kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NS" create secret generic sentiray-api-token \
  --from-literal=token="$(head -c 24 /dev/urandom | base64)" --dry-run=client -o yaml | kubectl apply -f -

# kind has no GPUs and a ReadWriteOnce local-path storage class: one CPU worker, small sizes.
cat > "$WORK/train.yaml" <<'VALUES'
job:
  preset: quick
  config: {precision: fp32, maxLength: 128}
  ttlSecondsAfterFinished: 600
workers:
  replicas: 1
  gpu: {enabled: false}
  tolerations: []
  cpusPerWorker: 2
  resources: {requests: {cpu: "2", memory: 4Gi}, limits: {cpu: "2", memory: 6Gi}}
  shmSize: 1Gi
head:
  resources: {requests: {cpu: "1", memory: 3Gi}, limits: {cpu: "2", memory: 4Gi}}
storage:
  pvc: {accessModes: [ReadWriteOnce], size: 5Gi}
VALUES
cat > "$WORK/serve.yaml" <<'VALUES'
worker:
  gpu: {enabled: false}
  tolerations: []
  minReplicas: 1
  maxReplicas: 2
  resources: {requests: {cpu: "2", memory: 3Gi}, limits: {cpu: "2", memory: 4Gi}}
  shmSize: 1Gi
head:
  resources: {requests: {cpu: "1", memory: 2Gi}, limits: {cpu: "1", memory: 3Gi}}
rayActorOptions:
  SentimentIngress: {num_cpus: 0.1}
  SentimentModel: {num_cpus: 1, num_gpus: 0}
apiAuth: {enabled: true, existingSecret: sentiray-api-token}
VALUES

echo "== training"
helm upgrade --install train "$ROOT/helm/sentiray-train" -n "$NS" -f "$WORK/train.yaml"
kubectl -n "$NS" wait rayjob/train-sentiray-train --for=jsonpath='{.status.jobDeploymentStatus}'=Complete --timeout=60m
kubectl -n "$NS" get rayjob/train-sentiray-train -o jsonpath='{.status.jobStatus}' | grep -qx SUCCEEDED
kubectl -n "$NS" logs job/train-sentiray-train | grep SENTIRAY_RESULT

echo "== serving"
helm upgrade --install serve "$ROOT/helm/sentiray-serve" -n "$NS" -f "$WORK/serve.yaml"
kubectl -n "$NS" wait rayservice/serve-sentiray-serve --for=condition=Ready --timeout=30m
helm test serve -n "$NS" --logs --timeout 10m

echo "== /predict through a port-forward"
kubectl -n "$NS" port-forward svc/serve-sentiray-serve-serve-svc 18000:8000 >/dev/null &
PF=$!
trap 'kill $PF 2>/dev/null; rm -rf "$WORK"; [ "${KEEP:-0}" = 1 ] || kind delete cluster --name "$CLUSTER"' EXIT
sleep 3
TOKEN=$(kubectl -n "$NS" get secret sentiray-api-token -o jsonpath='{.data.token}' | base64 -d)
curl -fsS localhost:18000/health
curl -fsS localhost:18000/predict -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" \
  -d '{"inputs": "A wonderful, moving film."}'
echo
echo "kind e2e: OK"
