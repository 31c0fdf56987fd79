"""Gateway API and KServe traffic providers against their real upstream CRDs: accepted and stored as sent.

Neither data plane runs here (no Gateway controller, no KServe controller), so the next best proof is
the real apiserver with the upstream CRDs installed (``tests/infra/upstream-crds.sh``: Gateway API
standard channel and KServe's full InferenceService CRD, versions pinned there). The server validates
what the operator writes against the upstream OpenAPI schemas and CEL rules; a field those schemas do
not know makes server-side apply (what the providers use) fail, and any other write drop it silently.
So each test lets the real reconcile pass write through the real provider, records the object it sent
(a spy on ``apply_object`` that calls the real one) and compares it with what the server stored: a
rejected object fails the pass (``KubeError``), a dropped or rewritten field fails the comparison.

Model pods are not the subject: the ModelDeployments run with ``serving.replicas: 0`` and the rollout is
resumed mid-canary / mid-shadow from the status the operator itself writes at that point (a restarted
operator resumes exactly so). Passes then hold the step and write the routes of that step.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from typing import Any, Mapping

import pytest
from test_operator_references import apply, crds, get  # noqa: F401  (shared fixtures and helpers)
from test_rollout_handler import one_pass, ready_version

from mlops_operator.builders.serving import ROUTES_ANNOTATION, version_name
from mlops_operator.builders.traffic_gateway import API_VERSION, build_http_route
from mlops_operator.logic.rollout.state import Routes
from mlops_operator.providers import kube
from mlops_operator.providers.traffic import gateway, kserve
from tests.conftest import REPO_ROOT, kubectl

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PARENTS = [{"name": "public", "namespace": "gateways", "sectionName": "http"}]
RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}


# ------------------------------------------------------------------------------------------ helpers


def differences(sent: Any, stored: Any, path: str = "") -> list[str]:
    """Where ``stored`` lost or changed something of ``sent`` (fields the server added are fine)."""
    if isinstance(sent, Mapping):
        if not isinstance(stored, Mapping):
            return [f"{path or '.'}: sent an object, stored {stored!r}"]
        out = []
        for key, value in sent.items():
            if key not in stored:
                out.append(f"{path}.{key}: pruned")
            else:
                out += differences(value, stored[key], f"{path}.{key}")
        return out
    if isinstance(sent, list):
        if not isinstance(stored, list) or len(sent) != len(stored):
            return [f"{path}: sent {sent!r}, stored {stored!r}"]
        return [d for i, (a, b) in enumerate(zip(sent, stored)) for d in differences(a, b, f"{path}[{i}]")]
    return [] if sent == stored else [f"{path}: sent {sent!r}, stored {stored!r}"]


def stored_as_sent(sent: Mapping[str, Any], stored: Mapping[str, Any]) -> list[str]:
    """The spec, labels, annotations and owner of ``sent`` as the server keeps them."""
    meta = {k: v for k, v in sent["metadata"].items() if k in ("labels", "annotations", "ownerReferences")}
    kept = {"spec": stored.get("spec"), "metadata": stored.get("metadata")}
    return differences({"spec": sent["spec"], "metadata": meta}, kept)


@pytest.fixture(scope="session")
def upstream_crds(kube_env) -> None:
    """The upstream CRDs, fetched through the Go module proxy (cached by version) and applied server-side."""
    script = REPO_ROOT / "tests" / "infra" / "upstream-crds.sh"
    proc = subprocess.run([str(script), "apply"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{script} apply failed:\n{proc.stderr[-3000:]}"


@pytest.fixture()
def sent(monkeypatch) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(object sent, object the server answered) of every apply the gateway and kserve providers make."""
    calls: list[tuple[dict[str, Any], dict[str, Any]]] = []

    async def recording_apply(obj: Mapping[str, Any]) -> dict[str, Any]:
        answer = await kube.apply_object(obj)
        calls.append((json.loads(json.dumps(obj)), answer))
        return answer

    monkeypatch.setattr(gateway, "apply_object", recording_apply)
    monkeypatch.setattr(kserve, "apply_object", recording_apply)
    return calls


def deployment(name: str, strategy: dict[str, Any], traffic: dict[str, Any], **serving: Any) -> dict[str, Any]:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": {"model": "breast-cancer", "version": "v2", "strategy": strategy, "traffic": traffic,
                     "serving": {"replicas": 0, **serving}}}


def resume_at(namespace: str, name: str, step: int, weight: int) -> None:
    """The status the operator writes when ``v2`` enters ``step`` at ``weight`` % over stable ``v1``."""
    now = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    status = {"phase": "Progressing", "desiredVersion": "v2", "stableVersion": "v1", "candidateVersion": "v2",
              "canaryWeight": weight, "currentStep": step, "stepStartedAt": now, "failedChecks": 0}
    kubectl("-n", namespace, "patch", "modeldeployment", name, "--subresource=status", "--type=merge", "-p",
            json.dumps({"status": status}))


def only(calls: list, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    ours = [c for c in calls if c[0]["kind"] == kind]
    assert ours, f"the pass applied no {kind}: {[c[0]['kind'] for c in calls]}"
    return ours[-1]


def backends(route: Mapping[str, Any]) -> list[tuple[str, int]]:
    (rule,) = route["spec"]["rules"]
    return [(ref["name"], ref.get("weight")) for ref in rule["backendRefs"]]


async def started(namespace: str, md: dict[str, Any], *, step: int, weight: int) -> None:
    ready_version(namespace, "v1")
    ready_version(namespace, "v2")
    apply(namespace, md)
    resume_at(namespace, md["metadata"]["name"], step, weight)


# --------------------------------------------------------------------------------------------- tests


async def test_given_a_gateway_canary_at_20_when_reconciled_then_the_upstream_httproute_keeps_80_20_until_abort(
        upstream_crds, crds, namespace, sent):
    await started(namespace, deployment("bc", {"type": "Canary", "canary": {"steps": [
        {"weight": 20, "pause": "10m"}, {"weight": 50, "pause": "10m"}]}},
        {"router": "gatewayAPI", "parentRefs": PARENTS}), step=0, weight=20)

    result = await one_pass(namespace)
    assert result.retry is None, result.retry
    route, answer = only(sent, "HTTPRoute")
    stored = get(namespace, "httproute", "bc")
    assert stored_as_sent(route, stored) == [] and stored_as_sent(route, answer) == []
    assert backends(stored) == [(version_name("bc", "v1"), 80), (version_name("bc", "v2"), 20)]
    assert stored["spec"]["parentRefs"][0] == {"group": "gateway.networking.k8s.io", "kind": "Gateway", **PARENTS[0]}
    assert stored["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"

    # a repeated pass re-applies the same route: the server sees no change
    before = stored["metadata"]["resourceVersion"]
    await one_pass(namespace)
    assert get(namespace, "httproute", "bc")["metadata"]["resourceVersion"] == before

    # abort: traffic back on stable; the candidate's backend is gone from the stored route, not kept by SSA
    kubectl("-n", namespace, "annotate", "modeldeployment", "bc", "mlops.dev/abort=first")
    await one_pass(namespace)
    route, _ = only(sent, "HTTPRoute")
    stored = get(namespace, "httproute", "bc")
    assert stored_as_sent(route, stored) == []
    assert backends(stored) == [(version_name("bc", "v1"), 100)]
    assert json.loads(stored["metadata"]["annotations"][ROUTES_ANNOTATION])["weight"] == 0


@pytest.mark.parametrize("percent", [30, 100])
async def test_given_a_gateway_shadow_when_mirroring_then_the_upstream_httproute_keeps_the_request_mirror(
        upstream_crds, crds, namespace, sent, percent):
    shadow = {"type": "Shadow", "shadow": {"mirrorPercent": percent, "duration": "10m"}}
    traffic = {"router": "gatewayAPI", "parentRefs": PARENTS}
    await started(namespace, deployment("bc", shadow, traffic), step=1, weight=0)

    result = await one_pass(namespace)
    assert result.retry is None, result.retry
    route, _ = only(sent, "HTTPRoute")
    stored = get(namespace, "httproute", "bc")
    assert stored_as_sent(route, stored) == []
    (rule,) = stored["spec"]["rules"]
    assert [(ref["name"], ref["weight"]) for ref in rule["backendRefs"]] == [(version_name("bc", "v1"), 100)]
    (mirror,) = rule["filters"]
    assert mirror["type"] == "RequestMirror"
    assert mirror["requestMirror"]["backendRef"]["name"] == version_name("bc", "v2")
    assert mirror["requestMirror"]["backendRef"]["port"] == 8080
    assert mirror["requestMirror"].get("percent") == (percent if percent < 100 else None)


async def test_given_a_kserve_canary_at_20_when_reconciled_then_the_upstream_inferenceservice_keeps_the_percent(
        upstream_crds, crds, namespace, sent):
    await started(namespace, deployment("bc", {"type": "Canary", "canary": {"steps": [{"weight": 20, "pause": "10m"}]}},
                                        {"router": "kserve"}, runtime="kserve", resources=RESOURCES),
                  step=0, weight=20)

    result = await one_pass(namespace)
    assert result.retry is None, result.retry
    isvc, answer = only(sent, "InferenceService")
    stored = get(namespace, "inferenceservice", "bc")
    assert stored_as_sent(isvc, stored) == [] and stored_as_sent(isvc, answer) == []
    predictor = stored["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 20
    assert predictor["model"]["modelFormat"] == {"name": "sklearn"}
    assert predictor["model"]["storageUri"] == "s3://mlops/models/breast-cancer/v2"
    assert predictor["model"]["resources"] == RESOURCES
    assert predictor["minReplicas"] == 0

    # abort: the predictor goes back to stable with no percentage (KServe rolls it out at 100 %)
    kubectl("-n", namespace, "annotate", "modeldeployment", "bc", "mlops.dev/abort=first")
    await one_pass(namespace)
    isvc, _ = only(sent, "InferenceService")
    stored = get(namespace, "inferenceservice", "bc")
    assert stored_as_sent(isvc, stored) == []
    assert "canaryTrafficPercent" not in stored["spec"]["predictor"]
    assert stored["spec"]["predictor"]["model"]["storageUri"] == "s3://mlops/models/breast-cancer/v1"


async def test_given_a_new_kserve_deployment_when_reconciled_then_the_first_version_gets_an_inferenceservice(
        upstream_crds, crds, namespace, sent):
    """KServe runs the pods: without the InferenceService the first version could never become Ready."""
    ready_version(namespace, "v2")
    apply(namespace, deployment("bc", {"type": "Recreate"}, {"router": "kserve"}, runtime="kserve"))

    result = await one_pass(namespace)
    assert result.retry is None, result.retry
    isvc, _ = only(sent, "InferenceService")
    stored = get(namespace, "inferenceservice", "bc")
    assert stored_as_sent(isvc, stored) == []
    assert stored["spec"]["predictor"]["model"]["storageUri"] == "s3://mlops/models/breast-cancer/v2"
    assert "canaryTrafficPercent" not in stored["spec"]["predictor"]


async def test_given_fields_the_upstream_schema_does_not_know_or_allow_when_written_then_apply_fails_create_prunes(
        upstream_crds, crds, namespace):
    """Why the comparisons above can fail: a builder field the upstream schema lacks makes server-side
    apply (what providers use) fail, and a plain create keeps the object but drops the field silently."""
    owner = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
             "metadata": {"name": "bc", "namespace": namespace, "uid": "00000000-0000-0000-0000-000000000001"}}
    route = build_http_route(owner, "breast-cancer", Routes("v1", "v2", 20), PARENTS)
    route["metadata"].pop("ownerReferences")  # no such owner: the garbage collector would delete the route
    route["spec"]["rules"][0]["backendRefs"][1]["canaryWeight"] = 20
    with pytest.raises(kube.KubeError, match="canaryWeight: field not declared in schema"):
        await kube.apply_object(route)
    created, _ = await kube.create(kube.resource_path(API_VERSION, "HTTPRoute", namespace), route)
    assert stored_as_sent(route, created) == [".spec.rules[0].backendRefs[1].canaryWeight: pruned"]

    route = build_http_route(owner, "breast-cancer", Routes("v1", "v2", 20), PARENTS)
    route["metadata"].pop("ownerReferences")
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = 1_000_001  # the schema's maximum is 1000000
    with pytest.raises(kube.Invalid, match="weight"):
        await kube.apply_object(route)
