"""Gateway API HTTPRoute and the plain-Service selector switch: weights, mirror, read-back by version."""

from __future__ import annotations

import pytest

from mlops_operator.builders.serving import annotated_versions, version_name, version_selector
from mlops_operator.builders.traffic_gateway import build_http_route
from mlops_operator.logic.rollout.state import Routes
from mlops_operator.providers.traffic.service import service_selector

pytestmark = pytest.mark.unit

OWNER = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
         "metadata": {"name": "bc", "namespace": "team-a", "uid": "uid-1"}}
PARENTS = [{"name": "public", "namespace": "gateways", "sectionName": "http"}]


def _rule(route: dict) -> dict:
    (rule,) = route["spec"]["rules"]
    return rule


@pytest.mark.parametrize("routes, backends", [
    (Routes("v1"), [("v1", 100)]),
    (Routes("v1", "v2", 0), [("v1", 100)]),
    (Routes("v1", "v2", 25), [("v1", 75), ("v2", 25)]),
    (Routes("v1", "v2", 100), [("v1", 0), ("v2", 100)]),
])
def test_given_routes_when_the_http_route_is_built_then_backend_weights_sum_to_100(routes, backends):
    route = build_http_route(OWNER, "breast-cancer", routes, PARENTS)
    refs = _rule(route)["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == [(version_name("bc", v), w) for v, w in backends]
    assert all(r["port"] == 8080 and r["kind"] == "Service" for r in refs)
    assert route["spec"]["parentRefs"] == PARENTS and route["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert "filters" not in _rule(route)


@pytest.mark.parametrize("percent, expect_field", [(100, False), (30, True)])
def test_given_a_shadow_when_the_http_route_is_built_then_a_request_mirror_filter_targets_it(percent, expect_field):
    route = build_http_route(OWNER, "breast-cancer", Routes("v1", shadow="v3", mirror_percent=percent), PARENTS)
    (mirror,) = _rule(route)["filters"]
    assert mirror["type"] == "RequestMirror"
    assert mirror["requestMirror"]["backendRef"]["name"] == version_name("bc", "v3")
    assert ("percent" in mirror["requestMirror"]) is expect_field
    assert [r["name"] for r in _rule(route)["backendRefs"]] == [version_name("bc", "v1")]


@pytest.mark.parametrize("routes, versions", [
    (Routes("v1", "v2", 25), {"v1", "v2"}),
    (Routes("v1", "v2", 0), {"v1"}),
    (Routes("v1", shadow="v3", mirror_percent=5), {"v1", "v3"}),
])
def test_given_a_built_route_when_read_back_then_versions_not_service_names_come_out(routes, versions):
    assert annotated_versions(build_http_route(OWNER, "breast-cancer", routes, PARENTS)) == frozenset(versions)


@pytest.mark.parametrize("routes, selects", [
    (Routes("v1"), "v1"),
    (Routes("v1", "v2", 0), "v1"),
    (Routes("v1", "v2", 100), "v2"),
    (Routes("v1", "v2", 30), None),  # both versions: replica-ratio split
])
def test_given_routes_when_the_service_selector_is_chosen_then_it_switches_whole_versions(routes, selects):
    selector = service_selector("bc", routes)
    if selects:
        assert selector == version_selector("bc", selects)
    else:
        assert selector == {"mlops.dev/modeldeployment": "bc", "app.kubernetes.io/component": "serving"}
        assert all(selector.items() <= version_selector("bc", v).items() for v in ("v1", "v2"))
