# shellcheck shell=bash
# Sourced by demo.sh (step 8): the closed loop. A ModelDeployment follows a label channel (track: latestReady);
# drifted traffic raises the model server's drift gauge; a Prometheus rule fires MLOpsFeatureDriftHigh;
# Alertmanager calls the operator's /alerts webhook; the RetrainPolicy trains a new ModelVersion on that
# channel; the deployment rolls it out. Nobody edits a spec. Time is compressed: the demo installs a copy of
# the shipped rule with `for: 0s` (the shipped one waits 5m) scoped to this run's channel; like the shipped
# rule it keeps the `namespace` label, without which the webhook acts on no policy.
# Expects DEMO_NS, REPO_ROOT, LOCAL_DIR, die(), wait_phase() and the cluster environment from demo.sh.

RUN=$(date +%s)
CHANNEL="auto-$RUN"                 # a fresh channel per run: a rerun starts its loop from scratch
AUTO_V1="demo-bc-auto-$RUN"
RULE_FILE="$PROMETHEUS_RULES_DIR/demo-drift.yaml"
kubectl -n "$DEMO_NS" delete mdep bc-auto --ignore-not-found --wait=true --timeout=120s >/dev/null
kubectl -n "$DEMO_NS" delete rp --all --wait=true --timeout=60s >/dev/null
# Versions are immutable and a re-applied name adopts what it committed before: a policy named for this run
# names its versions <policy>-r<N> that no earlier run has used, so the loop really trains.
POLICY="retrain-$RUN"

sed -e "s/^  name: bc-v1\$/  name: $AUTO_V1/" -e "s/n_estimators: 200/n_estimators: 30/" \
    -e "s|^    mlops.dev/model: breast-cancer\$|    mlops.dev/model: breast-cancer\n    channel: $CHANNEL|" \
    "$REPO_ROOT/manifests/examples/modelversion.yaml" | kubectl -n "$DEMO_NS" apply -f -
wait_phase mv "$AUTO_V1" Ready
kubectl -n "$DEMO_NS" apply -f - <<YAML
apiVersion: mlops.dev/v1alpha1
kind: ModelDeployment
metadata: {name: bc-auto}
spec:
  model: breast-cancer
  track: {policy: latestReady, matchLabels: {channel: $CHANNEL}}
  strategy: {type: Recreate}
  serving: {replicas: 1}
---
apiVersion: mlops.dev/v1alpha1
kind: RetrainPolicy
metadata: {name: $POLICY}
spec:
  model: breast-cancer
  cooldown: 30m
  triggers:
    alerts: [{matchLabels: {alertname: MLOpsFeatureDriftHigh, demo_channel: $CHANNEL}}]
  template:
    labels: {channel: $CHANNEL}
    training:
      dataset: {builtin: breast_cancer}
      estimator: sklearn.ensemble.RandomForestClassifier
      hyperparameters: {n_estimators: 40, random_state: 7}
      metrics: [accuracy]
    gates: {minMetrics: {accuracy: 0.85}}
YAML
wait_phase mdep bc-auto Succeeded
AUTO_URL="http://$(kubectl -n "$DEMO_NS" get svc bc-auto -o jsonpath='{.spec.clusterIP}'):8080"
cat > "$RULE_FILE" <<RULE
groups:
- name: demo-drift
  rules:
  - alert: MLOpsFeatureDriftHigh
    expr: max by (namespace, model, version, feature) (mlops_feature_drift{test="psi", namespace="$DEMO_NS", version="$AUTO_V1"}) > 0.25
    for: 0s
    labels: {severity: warning, demo_channel: "$CHANNEL"}
RULE
curl -fsS -X POST "$PROMETHEUS_URL/-/reload" || die "Prometheus did not reload its rules"
printf 'serving %s at %s; sending drifted traffic (every feature x3)\n' "$AUTO_V1" "$AUTO_URL"
SCALED=$(echo "$ROW" | tr -d '[]' | awk -F, '{for (i = 1; i <= NF; i++) printf "%s%s", (i > 1 ? "," : ""), $i * 3}')
DRIFTED="{\"instances\": [$(for _ in $(seq 1 50); do printf '[%s],' "$SCALED"; done | sed 's/,$//')]}"
NEW=""
for i in $(seq 1 120); do
  for _ in 1 2 3; do curl -fsS -o /dev/null -X POST -d "$DRIFTED" "$AUTO_URL/v1/models/breast-cancer:predict" || true; done
  NEW=$(kubectl -n "$DEMO_NS" get rp "$POLICY" -o jsonpath='{.status.lastTriggered.modelVersion}' 2>/dev/null || true)
  [ -n "$NEW" ] && break
  [ $((i % 10)) -eq 0 ] && printf '  %ss: drift %s, alerts firing: %s\n' "$((i * 2))" \
      "$(curl -fsS "$PROMETHEUS_URL/api/v1/query" --data-urlencode "query=max(mlops_feature_drift{test=\"psi\",version=\"$AUTO_V1\"})" | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "n/a")')" \
      "$(curl -fsS "$ALERTMANAGER_URL/api/v2/alerts?filter=demo_channel=%22$CHANNEL%22" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"
  sleep 2
done
rm -f "$RULE_FILE"; curl -fsS -X POST "$PROMETHEUS_URL/-/reload" >/dev/null || true
[ -n "$NEW" ] || { kubectl -n "$DEMO_NS" describe rp "$POLICY"; die "no retrain was triggered (policy above)"; }
printf 'alert received -> RetrainPolicy created %s: %s\n' "$NEW" \
  "$(kubectl -n "$DEMO_NS" get rp "$POLICY" -o jsonpath='{.status.lastTriggered.detail}')"
wait_phase mv "$NEW" Ready Rejected Failed
[ "$(kubectl -n "$DEMO_NS" get mv "$NEW" -o jsonpath='{.status.phase}')" = "Ready" ] \
  || { kubectl -n "$DEMO_NS" describe mv "$NEW"; die "the retrained version $NEW did not become Ready (conditions above)"; }
for _ in $(seq 1 90); do
  [ "$(kubectl -n "$DEMO_NS" get mdep bc-auto -o jsonpath='{.status.stableVersion}/{.status.phase}')" = "$NEW/Succeeded" ] && break
  sleep 2
done
kubectl -n "$DEMO_NS" get rp "$POLICY"; kubectl -n "$DEMO_NS" get mdep bc-auto
[ "$(kubectl -n "$DEMO_NS" get mdep bc-auto -o jsonpath='{.status.stableVersion}')" = "$NEW" ] \
  || die "bc-auto did not roll out $NEW (status: $(kubectl -n "$DEMO_NS" get mdep bc-auto -o jsonpath='{.status}'))"
printf 'the loop closed: drift alert -> %s trained, gated and rolled out on channel %s\n' "$NEW" "$CHANNEL"
