#!/usr/bin/env bash
# `make demo`: the main job from nothing. Grows with each capability; today it shows:
#   1. the local cluster (control plane, node, MinIO, Prometheus, Alertmanager) coming up
#   2. the runtime and operator images built offline and loaded into the node
#   3. the operator installed with its Helm chart
#   4. a ModelVersion trained by a real Job, verified, gated and registered — metrics and artifact printed
#   5. one cluster, many teams: the same name in a second namespace, Ready on its own artifact; a re-applied
#      version adopts its own committed artifact
#   6. a FeatureSet materialized by a Job into a quality-checked snapshot, and a model trained on it; a second,
#      keyed by customer id, published to the online store (Redis) and served by entity (a stale one refused)
#   7. served, then a canary to a second version under generated load with Prometheus analysis, promoted
#   8. a canary to a slow third version, rolled back automatically by its latency check
#   9. continuous training: drifted traffic -> drift alert -> Alertmanager -> RetrainPolicy -> fresh snapshot ->
#      retrain -> fair gate -> canary -> promoted; then a canary judged on label feedback, promoted, and rolled
#      back after promotion when its labels turn wrong
# DEMO_ONLY_LOOP=1 runs steps 1-3 and the namespace setup, then only step 9.
source "$(dirname "$0")/lib.sh"
DEMO_NS="${DEMO_NS:-mlops-demo}"
T0=$(date +%s)
step() { printf '\n\033[1m==> [%ss] %s\033[0m\n' "$(( $(date +%s) - T0 ))" "$*"; }
wait_phase() {  # wait_phase KIND NAME PHASE...
  local kind="$1" name="$2" p want; shift 2
  for _ in $(seq 1 150); do
    p=$(kubectl -n "$DEMO_NS" get "$kind" "$name" -o jsonpath='{.status.phase}' 2>/dev/null || true)
    for want in "$@"; do [ "$p" = "$want" ] && return 0; done
    sleep 2
  done
  kubectl -n "$DEMO_NS" describe "$kind" "$name"
  die "$kind/$name did not reach $* (conditions above)"
}


step "1/9 local cluster (make cluster-up)"
bash "$REPO_ROOT/tests/infra/cluster-up.sh"
set -a; . "$LOCAL_DIR/env"; set +a
kubectl get nodes

step "2/9 images (make images)"
bash "$REPO_ROOT/tests/infra/build-images.sh"

step "3/9 operator (make install)"
bash "$REPO_ROOT/tests/infra/install.sh"
# Images just built keep their tag: new operator pods pick them up (and a paused operator, scaled to 0 by the
# integration tier, is started again).
[ "$(kubectl -n mlops-system get deploy mlops-operator -o jsonpath='{.spec.replicas}')" = "0" ] \
  && kubectl -n mlops-system scale deployment/mlops-operator --replicas=2 >/dev/null
kubectl -n mlops-system rollout restart deployment/mlops-operator >/dev/null
kubectl -n mlops-system rollout status deployment/mlops-operator --timeout=180s >/dev/null \
  || die "the operator did not restart; inspect: kubectl -n mlops-system describe deploy,pods"
kubectl -n mlops-system get deploy,pods

kubectl get namespace "$DEMO_NS" >/dev/null 2>&1 || kubectl create namespace "$DEMO_NS" >/dev/null
kubectl label namespace "$DEMO_NS" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null
kubectl -n "$DEMO_NS" create secret generic mlops-s3 --dry-run=client -o yaml \
  --from-env-file=<(printf 'AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\nS3_ENDPOINT_URL=%s\nS3_BUCKET=%s\n' \
      "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" "$S3_ENDPOINT_URL" "$S3_BUCKET") | kubectl apply -f - >/dev/null
if [ -n "${REDIS_PASSWORD:-}" ]; then  # the online store's password, read by serving and materializing pods
  kubectl -n "$DEMO_NS" create secret generic mlops-redis --dry-run=client -o yaml \
    --from-env-file=<(printf 'REDIS_PASSWORD=%s\n' "$REDIS_PASSWORD") | kubectl apply -f - >/dev/null
fi
# The example ModelVersion, named for the demo: artifacts live at models/<namespace>/<model>/<modelversion>/;
# re-running the demo re-applies it and it adopts its own committed artifact (reason Adopted).
if [ "${DEMO_ONLY_LOOP:-0}" != "1" ]; then
step "4/9 train and register a model"
MV=demo-bc-v1
sed "s/^  name: bc-v1\$/  name: $MV/" "$REPO_ROOT/manifests/examples/modelversion.yaml" | kubectl -n "$DEMO_NS" apply -f -
printf 'waiting for ModelVersion %s (training Job, verification, gates)\n' "$MV"
last=""
for _ in $(seq 1 300); do
  phase=$(kubectl -n "$DEMO_NS" get mv "$MV" -o jsonpath='{.status.phase}' 2>/dev/null || true)
  [ "$phase" != "$last" ] && { printf '  phase: %s\n' "${phase:-<none>}"; last="$phase"; }
  case "$phase" in Ready|Rejected|Failed) break ;; esac
  sleep 2
done
kubectl -n "$DEMO_NS" get mv "$MV"
[ "$phase" = "Ready" ] || { kubectl -n "$DEMO_NS" describe mv "$MV"; die "ModelVersion $MV ended $phase (see the conditions above)"; }
printf '\nmetrics:  %s\n' "$(kubectl -n "$DEMO_NS" get mv "$MV" -o jsonpath='{.status.metrics}')"
printf 'artifact: %s\n' "$(kubectl -n "$DEMO_NS" get mv "$MV" -o jsonpath='{.status.artifact}')"
printf 'lineage:  %s\n' "$(kubectl -n "$DEMO_NS" get mv "$MV" -o jsonpath='{.status.lineage}')"
step "5/9 one cluster, many teams: the same name in two namespaces, and a re-applied version adopted"
# shellcheck source=demo-tenancy.sh
source "$REPO_ROOT/tests/infra/demo-tenancy.sh"

step "6/9 features: a FeatureSet materialized into a snapshot, a model trained on it, answers by entity from the online store"
# shellcheck source=demo-features.sh
source "$REPO_ROOT/tests/infra/demo-features.sh"

step "7/9 serve it, then canary to a second version under load"
# shellcheck source=demo-canary.sh
source "$REPO_ROOT/tests/infra/demo-canary.sh"

fi

step "9/9 continuous training: drift alert -> fresh data -> retrain -> canary; accuracy feedback -> rollback"
# shellcheck source=demo-loop.sh
source "$REPO_ROOT/tests/infra/demo-loop.sh"

step "done: 'kubectl get mlops -A' shows everything; 'make cluster-down' stops the cluster"
kubectl get mlops -A
