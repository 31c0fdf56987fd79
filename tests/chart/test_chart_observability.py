"""The observability pack: monitors for the operator, model servers and routers; Grafana dashboards; each
part renders only when enabled, and what it selects or queries exists."""

from __future__ import annotations

import json
import re

import pytest
from test_chart import CHART, PROMETHEUS_OPERATOR_API, REPO_ROOT, non_dashboard, of_kind, one, render

from mlops_operator.builders.serving import RouterInput, ServingInput, build_router_deployment, build_serving_deployment

pytestmark = pytest.mark.chart

DASHBOARDS = sorted((CHART / "files" / "dashboards").glob("*.json"))
OWNER = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
         "metadata": {"name": "bc", "namespace": "team-a", "uid": "u"}}


def _dashboards(docs):
    return [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["labels"].get("grafana_dashboard") == "1"]


def _pod_labels() -> list[dict[str, str]]:
    server = build_serving_deployment(ServingInput(owner=OWNER, model="m", version="v1", role="stable", replicas=1,
                                                   artifact_uri="s3://b/x", image="i", s3_secret="s"))
    router = build_router_deployment(RouterInput(OWNER, "m", "i"))
    return [d["spec"]["template"]["metadata"]["labels"] for d in (server, router)]


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    if not selector["matchLabels"].items() <= labels.items():
        return False
    return all(labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", []))


def test_given_the_prometheus_operator_when_rendered_then_a_pod_monitor_selects_every_server_and_router_pod():
    monitor = one(render(api_versions=[PROMETHEUS_OPERATOR_API]), "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    assert all(_selects(monitor["spec"]["selector"], labels) for labels in _pod_labels())
    operator_pod = one(render(), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not _selects(monitor["spec"]["selector"], operator_pod)  # the ServiceMonitor covers the operator


@pytest.mark.parametrize("namespaces, selector", [
    ("watchNamespaces={team-a,team-b}", {"matchNames": ["team-a", "team-b"]}),
    ("watchNamespaces={team-*}", {"any": True}),
])
def test_given_watched_namespaces_when_rendered_then_the_pod_monitor_looks_only_where_it_can(namespaces, selector):
    assert one(render(namespaces, api_versions=[PROMETHEUS_OPERATOR_API]), "PodMonitor")["spec"]["namespaceSelector"] \
        == selector


def test_given_the_operator_service_monitor_when_rendered_then_it_keeps_the_gauges_own_namespace_label():
    monitor = one(render(api_versions=[PROMETHEUS_OPERATOR_API]), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True


def test_given_defaults_when_rendered_then_four_dashboards_ship_with_the_sidecar_label_and_valid_json():
    dashboards = _dashboards(render())
    assert sorted(d["metadata"]["name"] for d in dashboards) == [
        "mlops-operator-dashboard-model-quality", "mlops-operator-dashboard-retrain-loop",
        "mlops-operator-dashboard-rollouts", "mlops-operator-dashboard-serving"]
    for doc in dashboards:
        (text,) = doc["data"].values()
        board = json.loads(text)
        assert board["panels"] and all(p["targets"][0]["expr"] for p in board["panels"])
    moved = _dashboards(render("monitoring.dashboards.namespace=grafana"))
    assert {d["metadata"]["namespace"] for d in moved} == {"grafana"}


def test_given_dashboards_disabled_when_rendered_then_none_renders_and_the_rules_stay():
    docs = render("monitoring.dashboards.enabled=false")
    assert not _dashboards(docs)
    assert [c["metadata"]["name"] for c in non_dashboard(docs, "ConfigMap")] == ["mlops-operator-rules"]


def _metric_names(expr: str) -> set[str]:
    names = set(re.findall(r"\b(mlops_[a-z_]+)", expr))
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}


def test_given_every_panel_when_its_query_is_read_then_each_metric_it_names_is_exported_by_our_code():
    source = "\n".join(p.read_text() for p in (REPO_ROOT / "operator" / "mlops_operator").rglob("*.py"))
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for name in _metric_names(panel["targets"][0]["expr"]):
                assert f'"{name}"' in source, f"{path.name}: {panel['title']}: {name} is exported nowhere"


def test_given_the_dashboards_when_listed_then_they_are_the_four_the_docs_name():
    assert [p.name for p in DASHBOARDS] == ["model-quality.json", "retrain-loop.json", "rollouts.json", "serving.json"]
