# shellcheck shell=bash
# Sourced by demo.sh (step 6): the example FeatureSet materialized by a Job into a versioned, quality-checked
# snapshot on S3 (data, fitted transform, stats), then a ModelVersion trained on that snapshot: the model
# artifact carries the snapshot's fitted transform, so serving applies exactly what training applied. Then
# tests/infra/demo_online.py: a FeatureSet keyed by customer id in the online store, a deployment answering by entity.
# Expects DEMO_NS, REPO_ROOT, die(), wait_phase() and the cluster environment from demo.sh.

FS=demo-bc-features
MVF=demo-bc-fs-v1
sed "s/^  name: bc-features\$/  name: $FS/" "$REPO_ROOT/manifests/examples/featureset.yaml" | kubectl -n "$DEMO_NS" apply -f -
printf 'waiting for FeatureSet %s (materialize Job, quality checks, snapshot upload)\n' "$FS"
wait_phase fs "$FS" Ready Failed
kubectl -n "$DEMO_NS" get fs "$FS"
[ "$(kubectl -n "$DEMO_NS" get fs "$FS" -o jsonpath='{.status.phase}')" = "Ready" ] \
  || { kubectl -n "$DEMO_NS" describe fs "$FS"; die "FeatureSet $FS failed (conditions above)"; }
printf '\nsnapshot: %s\n' "$(kubectl -n "$DEMO_NS" get fs "$FS" -o jsonpath='{.status.versions[-1:]}')"
printf 'quality:  %s\n' "$(kubectl -n "$DEMO_NS" get fs "$FS" -o jsonpath='{.status.quality.passed}')"

kubectl -n "$DEMO_NS" apply -f - <<YAML
apiVersion: mlops.dev/v1alpha1
kind: ModelVersion
metadata: {name: $MVF, labels: {mlops.dev/model: breast-cancer}}
spec:
  model: breast-cancer
  training:
    featureSet: {name: $FS}          # the latest snapshot, pinned in status.lineage when training starts
    estimator: sklearn.linear_model.LogisticRegression
    hyperparameters: {max_iter: 500}
    metrics: [accuracy, roc_auc]
  gates: {minMetrics: {accuracy: 0.85}}
YAML
printf 'waiting for ModelVersion %s (trained on the snapshot)\n' "$MVF"
wait_phase mv "$MVF" Ready Rejected Failed
kubectl -n "$DEMO_NS" get mv "$MVF"
[ "$(kubectl -n "$DEMO_NS" get mv "$MVF" -o jsonpath='{.status.phase}')" = "Ready" ] \
  || { kubectl -n "$DEMO_NS" describe mv "$MVF"; die "ModelVersion $MVF did not become Ready (conditions above)"; }
printf '\nlineage:  %s\n' "$(kubectl -n "$DEMO_NS" get mv "$MVF" -o jsonpath='{.status.lineage}')"

printf '\nonline: a FeatureSet keyed by customer id, its newest values in the online store, requests by entity\n'
(cd "$REPO_ROOT" && DEMO_NS="$DEMO_NS" "$REPO_ROOT/.venv/bin/python" -m tests.infra.demo_online) \
  || die "the online-features part failed (the message above says what to look at)"
