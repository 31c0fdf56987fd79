#!/usr/bin/env bash
# Renders batteries.yaml (the in-cluster MinIO, Prometheus and Alertmanager for kustomize) from the Helm chart
# with batteries.enabled=true, the same way as manifests/base/render.sh, so the overlay and the chart never
# drift apart. Prints to stdout; update with
#   manifests/overlays/batteries/render.sh > manifests/overlays/batteries/batteries.yaml
# tests/chart/test_chart_kustomize.py fails when batteries.yaml is stale.
#
# Credentials are referenced, never rendered (kustomization.yaml lists the Secrets to create), and
# Prometheus may list pods in every namespace (batteries.namespaces empty: a ClusterRole).
set -euo pipefail
BASE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../base" && pwd)"
RENDERED_BY=manifests/overlays/batteries/render.sh exec "$BASE/render.sh" \
  --set batteries.enabled=true --set batteries.minio.existingSecret=mlops-operator-minio \
  --show-only templates/batteries-minio.yaml --show-only templates/batteries-prometheus.yaml \
  --show-only templates/batteries-alertmanager.yaml
