#!/usr/bin/env bash
# Everything generated from a single source, regenerated (default) or checked (--check):
#   crds/ + the chart's crds/      from the pydantic models  (mlops_operator.api.crdgen)
#   docs/api-reference.md          from those CRDs           (mlops_operator.api.apidoc, written by crdgen)
#   charts/.../files/argocd-health from the phase table      (mlops_operator.logic.argocd_health)
#   charts/.../files/rules.yaml    from manifests/monitoring/rules.yaml
#   manifests/base/operator.yaml   from the Helm chart         (manifests/base/render.sh)
source "$(dirname "$0")/lib.sh"
export PATH="$TOOLS_BIN:$PATH"
PY="${PY:-$REPO_ROOT/.venv/bin/python}"
cd "$REPO_ROOT"
rules_src=manifests/monitoring/rules.yaml rules_dst=charts/mlops-operator/files/rules.yaml
if [ "${1:-}" = "--check" ]; then
  rc=0
  "$PY" -m mlops_operator.api.crdgen --check || rc=1
  "$PY" -m mlops_operator.logic.argocd_health --check || rc=1
  cmp -s "$rules_src" "$rules_dst" || { echo "stale: $rules_dst (run 'make crds')" >&2; rc=1; }
  if command -v helm >/dev/null; then
    diff -q <(bash manifests/base/render.sh) manifests/base/operator.yaml >/dev/null \
      || { echo "stale: manifests/base/operator.yaml (run 'make crds')" >&2; rc=1; }
  else
    echo "note: helm not built yet (make cluster-up builds it); manifests/base/operator.yaml not checked" >&2
  fi
  exit $rc
fi
"$PY" -m mlops_operator.api.crdgen
"$PY" -m mlops_operator.logic.argocd_health
cp "$rules_src" "$rules_dst"
need helm "Run 'make cluster-up' (it builds helm) to render manifests/base/operator.yaml."
bash manifests/base/render.sh > manifests/base/operator.yaml.tmp && mv manifests/base/operator.yaml.tmp manifests/base/operator.yaml
log "generate: crds, API reference, Argo CD health checks, chart rules and kustomize base are current"
