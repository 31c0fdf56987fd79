# shellcheck shell=bash
# Sourced by demo.sh (steps 6 and 7): serve the trained version, canary to a second version under generated
# load with Prometheus analysis at each step (promoted), then to a slow third one (rolled back); print
# progress, the endpoint and sample V1 / V2 predictions.
# Expects DEMO_NS, MV, REPO_ROOT, LOCAL_DIR, die() and the cluster environment from demo.sh.

MV2="$MV-b"     # a second, healthy version: promoted by the canary
MV3="$MV-slow"  # 600 trees: ~60 ms a prediction where the others need ~2 ms (step 7 rolls it back)
modelversion() {  # modelversion NAME TREES
  sed -e "s/^  name: bc-v1\$/  name: $1/" -e "s/n_estimators: 200/n_estimators: $2/" \
    "$REPO_ROOT/manifests/examples/modelversion.yaml" | kubectl -n "$DEMO_NS" apply -f -
}
modelversion "$MV2" 60
modelversion "$MV3" 600

deployment_manifest() {  # deployment_manifest VERSION
  cat <<YAML
apiVersion: mlops.dev/v1alpha1
kind: ModelDeployment
metadata: {name: bc}
spec:
  model: breast-cancer
  version: $1
  strategy:
    type: Canary
    canary: {steps: [{weight: 20, pause: 15s}, {weight: 50, pause: 15s}]}
  analysis:
    interval: 10s
    failureLimit: 2
    minSamples: 10
    onNoData: hold
    metrics:
    - {name: error-rate, builtin: errorRate, max: 0.05}
    - {name: latency, builtin: latencyP95Seconds, max: 0.03}
  # off: the slow version is slow because scikit-learn walks its 600 trees; compiled to ONNX (the default,
  # docs/compiled.md) it would answer in microseconds and pass the latency check.
  serving: {replicas: 1, compiledModel: "off"}
  progressDeadline: 5m
YAML
}

wait_phase mv "$MV2" Ready
# A demo run again starts its rollouts over: the ModelVersions are kept (immutable), the deployment is not.
kubectl -n "$DEMO_NS" delete mdep bc --ignore-not-found --wait=true --timeout=120s
deployment_manifest "$MV" | kubectl -n "$DEMO_NS" apply -f -
wait_phase mdep bc Succeeded
URL="http://$(kubectl -n "$DEMO_NS" get svc bc -o jsonpath='{.spec.clusterIP}'):8080"
# Succeeded means a Ready router answers at the entry Service; give kube-proxy a moment to program it.
for _ in $(seq 1 5); do curl -fs -o /dev/null "$URL/v2/health/ready" && break; sleep 1; done

ROW='[17.99,10.38,122.8,1001.0,0.1184,0.2776,0.3001,0.1471,0.2419,0.07871,1.095,0.9053,8.589,153.4,0.006399,0.04904,0.05373,0.01587,0.03003,0.006193,25.38,17.33,184.6,2019.0,0.1622,0.6656,0.7119,0.2654,0.4601,0.1189]'
V1_BODY="{\"instances\":[$ROW]}"
V2_BODY="{\"inputs\":[{\"name\":\"input-0\",\"shape\":[1,30],\"datatype\":\"FP64\",\"data\":[$ROW]}]}"

load_start() {  # V1 requests in the background until load_stop; counts in $LOCAL_DIR/demo-load.txt
  rm -f "$LOCAL_DIR/demo-load.stop"
  printf 'load: V1 requests to %s\n' "$URL"
  (
    ok=0; bad=0; end=$((SECONDS + 240))
    while [ $SECONDS -lt $end ] && [ ! -f "$LOCAL_DIR/demo-load.stop" ]; do
      if curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' -d "$V1_BODY" \
           "$URL/v1/models/breast-cancer:predict"; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
      sleep 0.02
    done
    echo "load: $ok requests answered, $bad failed"
  ) > "$LOCAL_DIR/demo-load.txt" 2>&1 &
  LOAD_PID=$!
}
load_stop() { touch "$LOCAL_DIR/demo-load.stop"; wait "$LOAD_PID" 2>/dev/null || true; cat "$LOCAL_DIR/demo-load.txt"; }

follow_rollout() {  # follow_rollout VERSION: print each change until VERSION is promoted or given up
  local line last="" state
  for _ in $(seq 1 150); do
    line=$(kubectl -n "$DEMO_NS" get mdep bc --no-headers -o custom-columns='STABLE:.status.stableVersion,CANDIDATE:.status.candidateVersion,WEIGHT:.status.canaryWeight,STEP:.status.currentStep,PHASE:.status.phase')
    [ "$line" != "$last" ] && { printf '  %s\n' "$line"; last="$line"; }
    state=$(kubectl -n "$DEMO_NS" get mdep bc -o jsonpath='{.status.stableVersion}/{.status.phase}')
    case "$state" in "$1/Succeeded"|*/RolledBack|*/Failed) return 0 ;; esac
    sleep 2
  done
}

load_start
deployment_manifest "$MV2" | kubectl -n "$DEMO_NS" apply -f -
follow_rollout "$MV2"
load_stop

printf '\nanalysis: %s\n' "$(kubectl -n "$DEMO_NS" get mdep bc -o jsonpath='{.status.analysis}')"
printf 'history:  %s\n' "$(kubectl -n "$DEMO_NS" get mdep bc -o jsonpath='{.status.history}')"
[ "$(kubectl -n "$DEMO_NS" get mdep bc -o jsonpath='{.status.stableVersion}')" = "$MV2" ] \
  || die "the canary did not promote $MV2 (analysis and history above)"

step "8/9 a bad version: canary to $MV3 (slow), rolled back by the latency check"
wait_phase mv "$MV3" Ready
load_start
deployment_manifest "$MV3" | kubectl -n "$DEMO_NS" apply -f -
follow_rollout "$MV3"
load_stop
printf '\nfailed checks: %s\n' "$(kubectl -n "$DEMO_NS" get mdep bc -o jsonpath='{range .status.analysis[?(@.passed==false)]}{.metric}={.value} {end}')"
printf 'stage of %s: %s\n' "$MV3" "$(kubectl -n "$DEMO_NS" get mv "$MV3" -o jsonpath='{.status.stage}')"
[ "$(kubectl -n "$DEMO_NS" get mdep bc -o jsonpath='{.status.stableVersion}/{.status.phase}')" = "$MV2/RolledBack" ] \
  || die "$MV3 was not rolled back (status: $(kubectl -n "$DEMO_NS" get mdep bc -o jsonpath='{.status}'))"
printf '%s stays rolled back until annotated mlops.dev/retry=<anything new>; %s keeps serving\n' "$MV3" "$MV2"

printf '\nendpoint: %s  (in the cluster: http://bc.%s.svc.cluster.local:8080)\n' "$URL" "$DEMO_NS"
printf 'V1 predict: '; curl -fsS -X POST -d "$V1_BODY" "$URL/v1/models/breast-cancer:predict"; echo
printf 'V2 infer:   '; curl -fsS -X POST -d "$V2_BODY" "$URL/v2/models/breast-cancer/infer"; echo
kubectl -n "$DEMO_NS" get mv,mdep
