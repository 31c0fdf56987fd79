"""The Argo CD health checks the chart ships (charts/mlops-operator/files/argocd-health/<kind>.lua), run by
a real Lua 5.4 interpreter (Debian's lua5.4, installed by tests/infra/install-deps.sh) the way Argo CD runs
them: ``obj`` is the object as a Lua table, the script returns ``hs = {status, message}``.

The statuses are shaped like those the operator writes in the e2e tier (phase, the Ready condition with
its reason and message, observedGeneration): every kind's Healthy, Progressing, Degraded and, where the
kind has it, Suspended verdict. The scripts are generated from the phase table in logic/status.py
(``mlops_operator.logic.argocd_health``, ``make crds``); the verdicts below are written out by hand.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

from mlops_operator.api.v1alpha1 import KINDS_BY_NAME
from mlops_operator.logic import argocd_health
from mlops_operator.logic.status import PHASE_MEANINGS

pytestmark = pytest.mark.chart

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
HEALTH = REPO_ROOT / argocd_health.PATH
KINDS = tuple(KINDS_BY_NAME)


def lua_bin() -> str:
    path = shutil.which("lua5.4")
    if path is None:
        pytest.fail("lua5.4 not found: tests/infra/install-deps.sh installs it (apt-get install lua5.4)")
    return path


def lua(value) -> str:
    """A Python value as a Lua literal (None fields are left out, as absent JSON fields are in Argo CD)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "{" + ", ".join(lua(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua(k)}] = {lua(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(value)


def health(kind: str, obj: dict, tmp_path: pathlib.Path) -> tuple[str, str]:
    driver = tmp_path / "driver.lua"
    driver.write_text(f"""local f = assert(io.open({lua(str(HEALTH / (kind.lower() + '.lua')))})):read("a")
obj = {lua(obj)}
local hs = assert(load(f))()
io.write(hs.status, "\\n", hs.message)
""")
    result = subprocess.run([lua_bin(), str(driver)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    status, _, message = result.stdout.partition("\n")
    return status, message


def obj(kind: str, phase: str | None, reason: str = "", message: str = "", generation: int = 1,
        observed: int | None = 1, **status) -> dict:
    body = {"apiVersion": "mlops.dev/v1alpha1", "kind": kind, "metadata": {"name": "x", "generation": generation}}
    if phase is not None:
        ready = "True" if phase in ("Ready", "Succeeded", "Idle") else "False"
        body["status"] = {"phase": phase, "observedGeneration": observed, **status, "conditions": [
            {"type": "InvalidSpec", "status": "False", "reason": "Valid", "message": ""},
            {"type": "Ready", "status": ready, "reason": reason, "message": message,
             "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]}
    return body


CASES = [
    # (kind, phase, Ready reason, Ready message, expected health)
    ("FeatureSet", "Ready", "Materialized", "snapshot v2 passed every check", "Healthy"),
    ("FeatureSet", "Materializing", "Materializing", "Job fs-bc-features-v2 runs", "Progressing"),
    ("FeatureSet", "Pending", "Pending", "", "Progressing"),
    ("FeatureSet", "Failed", "QualityFailed", "mean radius: 3 values above max 100", "Degraded"),
    ("ModelVersion", "Ready", "GatesPassed", "accuracy 0.965 >= 0.9", "Healthy"),
    ("ModelVersion", "Training", "Training", "training Job mv-bc-v1-train created", "Progressing"),
    ("ModelVersion", "Validating", "Verifying", "verifying the artifact", "Progressing"),
    ("ModelVersion", "Rejected", "GatesFailed", "accuracy 0.5 < 0.9", "Degraded"),
    ("ModelVersion", "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit", "Degraded"),
    ("ModelDeployment", "Succeeded", "Serving", "bc-v2 serves all traffic", "Healthy"),
    ("ModelDeployment", "Progressing", "CanaryStep", "step 1/2: 20% to bc-v2", "Progressing"),
    ("ModelDeployment", "Pending", "NoReadyVersion", "no Ready version of breast-cancer", "Progressing"),
    ("ModelDeployment", "Paused", "Paused", "spec.paused", "Suspended"),
    ("ModelDeployment", "RolledBack", "RolledBack", "bc-v2 failed analysis: latency", "Degraded"),
    ("ModelDeployment", "Degraded", "RouterNotReady", "no Ready router pod", "Degraded"),
    ("ModelDeployment", "Failed", "VersionNotFound", "ModelVersion bc-v9 not found", "Degraded"),
    ("RetrainPolicy", "Idle", "Idle", "", "Healthy"),
    ("RetrainPolicy", "Retraining", "Retraining", "bc-retrain-1 is training", "Healthy"),
    ("RetrainPolicy", "CoolingDown", "CoolingDown", "until 2026-01-01T01:00:00Z", "Healthy"),
    ("RetrainPolicy", "Suspended", "Suspended", "spec.suspend is true", "Suspended"),
    ("RetrainPolicy", "Failed", "FeatureSetNotFound", "FeatureSet bc-features not found", "Degraded"),
    ("HyperparameterSearch", "Succeeded", "Succeeded", "best bc-search-t2", "Healthy"),
    ("HyperparameterSearch", "Running", "Running", "3/8 trials", "Progressing"),
    ("HyperparameterSearch", "Pending", "Pending", "", "Progressing"),
    ("HyperparameterSearch", "Failed", "AllTrialsFailed", "every trial failed", "Degraded"),
    ("BatchPrediction", "Succeeded", "RunSucceeded", "run t-20260101-0200: 569 rows", "Healthy"),
    ("BatchPrediction", "Running", "Running", "run t-20260101-0200 is scoring", "Progressing"),
    ("BatchPrediction", "Pending", "Pending", "no run yet", "Healthy"),
    ("BatchPrediction", "Failed", "DatasetUnreadable", "input.uri: not found", "Degraded"),
]


@pytest.mark.parametrize("kind,phase,reason,message,expected", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_given_a_status_when_argocd_asks_then_the_health_and_the_ready_reason(kind, phase, reason, message, expected,
                                                                             tmp_path):
    status, text = health(kind, obj(kind, phase, reason, message), tmp_path)
    assert status == expected
    assert text == phase + (f" ({reason})" if reason else "") + (f": {message}" if message else "")


@pytest.mark.parametrize("kind", KINDS)
def test_given_no_status_or_a_stale_one_when_argocd_asks_then_progressing(kind, tmp_path):
    assert health(kind, obj(kind, None), tmp_path) == ("Progressing", "Waiting for the operator to report a status")
    stale = obj(kind, "Failed", "X", "old", generation=3, observed=2)
    assert health(kind, stale, tmp_path) == ("Progressing", "Waiting for the operator to observe generation 3")
    stale["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"  # deleting bumps the generation, nothing to observe
    assert health(kind, stale, tmp_path) == ("Degraded", "Failed (X): old")
    unknown = obj(kind, "Exploded")
    assert health(kind, unknown, tmp_path)[0] == "Unknown"


def test_given_the_chart_when_listed_then_one_check_per_kind_and_the_docs_name_each_key():
    assert sorted(p.name for p in HEALTH.glob("*.lua")) == sorted(k.lower() + ".lua" for k in KINDS)
    docs = (REPO_ROOT / "docs" / "argocd.md").read_text()
    for kind in KINDS:
        assert f"resource.customizations.health.mlops.dev_{kind}" in docs
        assert f"resource.customizations.health.mlops.dev_{kind}" in (HEALTH / f"{kind.lower()}.lua").read_text()


def test_given_the_six_scripts_when_compared_then_generated_and_differing_only_in_their_phase_table():
    """Argo CD runs each script alone (no require), so the shared logic is in every file: each is rendered from
    the phase table (``make crds``), leaving each kind only its header comments and its ``health`` table."""
    def body(kind: str) -> list[str]:
        lines = (HEALTH / f"{kind.lower()}.lua").read_text().splitlines()
        return [line for line in lines if not line.startswith(("--", "local health = "))]

    assert argocd_health.stale_files(REPO_ROOT) == [], "run `make crds`"
    bodies = {kind: body(kind) for kind in KINDS}
    assert all(b == bodies["FeatureSet"] for b in bodies.values()), "argocd-health/*.lua drifted apart"


def test_given_the_docs_table_when_read_then_each_kind_row_names_the_phases_of_each_health():
    """docs/argocd.md's table (kind | Healthy | Progressing | Degraded | Suspended) is what the scripts do."""
    rows = {}
    for line in (REPO_ROOT / "docs" / "argocd.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] in KINDS:
            rows[cells[0]] = [{p.strip() for p in cell.split(",") if p.strip()} for cell in cells[1:]]
    assert set(rows) == set(KINDS)
    for kind, cells in rows.items():
        table = argocd_health.health_table(KINDS_BY_NAME[kind])
        expected = [{p for p, h in table.items() if h == health}
                    for health in ("Healthy", "Progressing", "Degraded", "Suspended")]
        assert cells == expected, kind


def test_given_each_phase_when_argocd_and_kstatus_read_it_then_they_agree(tmp_path):
    """Argo CD's verdict and the operator's Reconciling/Stalled conditions (logic.status) tell the same story:
    a failed phase is Degraded and Stalled, a working one Progressing and Reconciling, a settled one Healthy or
    Suspended. One documented difference: a ModelDeployment whose serving pods are missing is Degraded for Argo
    CD (like a Deployment with unavailable replicas) while the operator is still reconciling it."""
    assert {(k, p) for k, m in PHASE_MEANINGS.items() for p in m.impaired} == {("ModelDeployment", "Degraded")}
    for kind, meaning in PHASE_MEANINGS.items():
        for phase in sorted(KINDS_BY_NAME[kind].phases):
            verdict = health(kind, obj(kind, phase), tmp_path)[0]
            if phase in meaning.failed:
                assert verdict == "Degraded", (kind, phase)
            elif phase in meaning.impaired:
                assert verdict == "Degraded"
            elif phase in meaning.working:
                assert verdict == "Progressing", (kind, phase)
            else:
                assert verdict in ("Healthy", "Suspended"), (kind, phase)
                assert (verdict == "Suspended") == (phase in meaning.suspended), (kind, phase)


def test_given_a_stalled_condition_on_a_waiting_phase_when_argocd_asks_then_degraded_with_its_reason(tmp_path):
    body = obj("ModelDeployment", "Pending", "WaitingForVersion", "waiting")
    body["status"]["conditions"].append({"type": "Stalled", "status": "True", "reason": "VersionNotFound",
                                         "message": "ModelVersion bc-v9 not found"})
    assert health("ModelDeployment", body, tmp_path) == (
        "Degraded", "Pending (WaitingForVersion): waiting; stalled (VersionNotFound): ModelVersion bc-v9 not found")
    body["status"]["conditions"][-1]["status"] = "False"
    assert health("ModelDeployment", body, tmp_path)[0] == "Progressing"
