"""kstatus conventions on the real apiserver: what generic tools (`kubectl wait`, Flux's kstatus) read.

A registered artifact whose sha256 matches ends Ready=True with Reconciling=False, Stalled=False and
observedGeneration == metadata.generation; one whose sha256 is wrong ends Rejected with Stalled=True carrying
the Ready reason, and `kubectl wait --for=condition=Stalled` returns instead of waiting for its timeout.
`kubectl get` shows both verdicts in its READY and REASON columns. A
ModelDeployment naming a missing version is Stalled (InvalidSpec), follows a spec edit to the new generation,
and stops being Stalled once the version exists.
"""

from __future__ import annotations

import pytest

from mlops_operator.providers.storage import sha256_hex
from test_operator_modelversion import MODEL_BYTES, registered, secret  # noqa: F401  (shared fixtures)
from test_operator_references import (  # noqa: F401  (shared fixtures)
    apply,
    condition,
    crds,
    get,
    model_deployment,
    model_version,
    operator,
    start_operator,
    wait_condition,
    wait_for,
)
from tests.conftest import kubectl_wait, printed_columns

pytestmark = pytest.mark.integration


def kstatus(obj: dict) -> tuple[str, str, str]:
    return condition(obj, "Ready").get("status"), condition(obj, "Reconciling").get("status"), \
        condition(obj, "Stalled").get("status")


def settled(namespace: str, kind: str, name: str) -> dict:
    """The object once the operator has looked at its latest spec and stopped reconciling."""
    def probe() -> dict | None:
        obj = get(namespace, kind, name)
        status = (obj or {}).get("status") or {}
        current = status.get("observedGeneration") == obj["metadata"]["generation"] if obj else False
        return obj if current and condition(obj, "Reconciling").get("status") == "False" else None
    return wait_for(f"{kind}/{name} Reconciling=False at its generation", probe, timeout=90)


def test_given_a_version_that_passes_when_reconciled_then_ready_not_reconciling_not_stalled_at_its_generation(
        operator, namespace, secret, registered):
    apply(namespace, model_version("bc-ok", artifact={"uri": registered, "sha256": sha256_hex(MODEL_BYTES)},
                                   gates={"minMetrics": {"accuracy": 0.9}}))
    kubectl_wait(namespace, "modelversion/bc-ok", "Ready")
    mv = settled(namespace, "modelversion", "bc-ok")
    assert mv["status"]["phase"] == "Ready"
    assert kstatus(mv) == ("True", "False", "False")
    assert mv["status"]["observedGeneration"] == mv["metadata"]["generation"]
    assert condition(mv, "Stalled")["observedGeneration"] == mv["metadata"]["generation"]
    shown = printed_columns(namespace, "modelversion/bc-ok")
    assert (shown["PHASE"], shown["READY"], shown["REASON"]) == ("Ready", "True", "GatesPassed")


def test_given_a_version_failing_its_integrity_check_when_reconciled_then_stalled_and_kubectl_wait_returns(
        operator, namespace, secret, registered):
    apply(namespace, model_version("bc-bad", artifact={"uri": registered, "sha256": "f" * 64}))
    kubectl_wait(namespace, "modelversion/bc-bad", "Stalled")
    mv = settled(namespace, "modelversion", "bc-bad")
    assert mv["status"]["phase"] == "Rejected"
    assert kstatus(mv) == ("False", "False", "True")
    assert condition(mv, "Stalled")["reason"] == condition(mv, "Ready")["reason"] == "IntegrityError"
    assert mv["status"]["observedGeneration"] == mv["metadata"]["generation"]
    shown = printed_columns(namespace, "modelversion/bc-bad")
    assert (shown["READY"], shown["REASON"]) == ("False", "IntegrityError")
    # The generic "done either way" wait ends too.
    kubectl_wait(namespace, "modelversion/bc-bad", "Reconciling=False", seconds=10)


def test_given_a_deployment_of_a_missing_version_when_its_spec_changes_then_stalled_follows_the_generation(
        operator, namespace, secret, registered):
    apply(namespace, model_deployment("bc", "bc-v1"))
    md = wait_condition(namespace, "modeldeployment", "bc", "Stalled", "True", "ModelVersionNotFound", timeout=90)
    assert md["status"]["observedGeneration"] == md["metadata"]["generation"] == 1
    assert "bc-v1" in condition(md, "Stalled")["message"]

    apply(namespace, model_deployment("bc", "bc-v2"))  # generation 2, still missing
    md = wait_for("Stalled about bc-v2 at generation 2", lambda: (o := get(namespace, "modeldeployment", "bc"))
                  and o["status"].get("observedGeneration") == 2 and "bc-v2" in condition(o, "Stalled")["message"]
                  and o)
    assert condition(md, "Stalled")["status"] == "True" and condition(md, "Stalled")["observedGeneration"] == 2

    apply(namespace, model_version("bc-v2", artifact={"uri": registered, "sha256": sha256_hex(MODEL_BYTES)}))
    md = wait_condition(namespace, "modeldeployment", "bc", "Stalled", "False", timeout=90)
    assert condition(md, "InvalidSpec")["status"] == "False"
