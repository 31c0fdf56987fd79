"""`kubectl mlops` against the real apiserver, through kubectl's own plugin lookup (`kubectl mlops ...`
finds the `kubectl-mlops` console script on PATH).

One restricted namespace holds breast-cancer as a user would see it mid-rollout: a FeatureSet, three
ModelVersions (Production, Staging, and one whose training Job failed), a canary ModelDeployment moving
to the failed one, and a RetrainPolicy. The objects are created with kubectl and their status written
with `kubectl patch --subresource=status` (the operator is paused for the integration tier, so nothing
else writes them). The Jobs are real: pods of the runtime image under the restricted profile, shaped by
builders/job.py, one printing `hello`, one failing with exit 2, one materializing. Every verb runs.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
import uuid

import pytest

from mlops_operator.builders.job import build_runtime_job, training_job_name
from mlops_operator.builders.labels import model_labels
from mlops_operator.builders.materialize import featureset_labels, materialize_job_name
from tests.conftest import kubectl

pytestmark = pytest.mark.integration

RUNTIME_IMAGE = "localhost/mlops-runtime:dev"
MODEL = "breast-cancer"
TRAINING = {"featureSet": {"name": "bc-features"}, "estimator": "sklearn.linear_model.LogisticRegression",
            "metrics": ["accuracy", "f1_macro"]}


# What the trainer does on bad input (runtime/job_main.py): a log line, the JSON summary in the termination
# message, exit code 2.
FAILING_TRAINER = """import json, sys
print('loading', flush=True)
print("ERROR: column 'target' not found in the dataset", file=sys.stderr, flush=True)
open('/dev/termination-log', 'w').write(json.dumps({'result': 'Failed', 'reason': 'InvalidInput', 'exitCode': 2,
    'message': "column 'target' not found in the dataset"}))
sys.exit(2)
"""


def plugin(ns: str | None, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    """`kubectl mlops <args> [-n ns]`, with this interpreter's bin directory (kubectl-mlops) first on PATH."""
    env = {**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    argv = ["kubectl", "mlops", *args] + (["-n", ns] if ns else [])
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def apply(ns: str, obj: dict) -> dict:
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(obj))
    return get(ns, obj["kind"].lower(), obj["metadata"]["name"])


def get(ns: str, kind: str, name: str) -> dict:
    return json.loads(kubectl("-n", ns, "get", kind, name, "-o", "json").stdout)


def set_status(ns: str, kind: str, name: str, status: dict) -> None:
    kubectl("-n", ns, "patch", kind, name, "--subresource=status", "--type=merge", "-p", json.dumps({"status": status}))


def cr(kind: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def cond(type_: str, status: str, reason: str, message: str = "") -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}


def runtime_job(owner: dict, name: str, labels: dict, container: str, script: str) -> dict:
    """A Job shaped as the operator's (restricted pod, read-only root, /tmp scratch), running ``script``."""
    job = build_runtime_job(name=name, owner=owner, labels=labels, container_name=container,
                            command=["python", "-c", script], env=[], image=RUNTIME_IMAGE, image_pull_policy="Never",
                            backoff_limit=0, active_deadline_seconds=240,
                            resources={"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                            tmp_size_limit="64Mi")
    job["spec"].pop("podFailurePolicy")  # exit 2 should fail the Job through backoffLimit 0 either way
    return job


def wait_job(ns: str, name: str, condition: str) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        job = get(ns, "job", name)
        if any(c["type"] == condition and c["status"] == "True" for c in job["status"].get("conditions") or ()):
            return
        time.sleep(1)
    pytest.fail(f"job {name} not {condition}: {job['status']}")


@pytest.fixture(scope="module")
def ns(kube_env, node_enabled):
    if not node_enabled:
        pytest.fail("the node is disabled (MLOPS_NODE=0): the logs test needs real pods; run `make cluster-up`")
    name = f"t-cli-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest")
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def model(ns):
    """The namespace's objects with their statuses, and the three Jobs finished."""
    fs = apply(ns, cr("FeatureSet", "bc-features", {"source": {"builtin": "breast_cancer"}, "target": "target"}))
    mvs = {n: apply(ns, cr("ModelVersion", n, {"model": MODEL, "training": TRAINING})) for n in ("bc-v1", "bc-v2", "bc-v3")}
    apply(ns, cr("ModelDeployment", "bc", {"model": MODEL, "track": {"policy": "latestReady"},
                                           "strategy": {"type": "Canary", "canary": {"steps": [{"weight": 20}, {"weight": 50}]}}}))
    apply(ns, cr("RetrainPolicy", "bc-retrain", {"model": MODEL, "template": {"training": TRAINING},
                                                 "triggers": {"schedule": "0 3 * * 0"}}))

    jobs = {
        training_job_name("bc-v2"): ("Complete", runtime_job(mvs["bc-v2"], training_job_name("bc-v2"),
                                                             model_labels(MODEL, "bc-v2", "training"), "train",
                                                             "print('hello')")),
        training_job_name("bc-v3"): ("Failed", runtime_job(mvs["bc-v3"], training_job_name("bc-v3"),
                                                           model_labels(MODEL, "bc-v3", "training"), "train",
                                                           FAILING_TRAINER)),
        materialize_job_name("bc-features", "v1"): ("Complete", runtime_job(
            fs, materialize_job_name("bc-features", "v1"), featureset_labels("bc-features", "v1"), "materialize",
            "print('materialized 569 rows')")),
    }
    for _, job in jobs.values():
        kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(job))

    snapshot = {"version": "v1", "uri": "s3://mlops/features/x/v1/", "rows": 569, "sha256": "ab" * 32, "qualityPassed": True}
    set_status(ns, "featureset", "bc-features", {"phase": "Ready", "latestVersion": "v1", "versions": [snapshot],
                                                 "quality": {"passed": True}, "conditions": [cond("Ready", "True", "Materialized")]})
    for name, phase, stage, acc, c in (("bc-v1", "Ready", "Production", 0.951, 1.0), ("bc-v2", "Ready", "Staging", 0.965, 0.5)):
        set_status(ns, "modelversion", name, {
            "phase": phase, "stage": stage, "metrics": {"accuracy": acc, "f1_macro": acc - 0.01},
            "primaryMetric": {"name": "accuracy", "value": acc}, "parameters": {"C": c, "max_iter": 100},
            "lineage": {"featureSet": "bc-features", "featureSetVersion": "v1", "job": training_job_name(name),
                        "image": RUNTIME_IMAGE}, "conditions": [cond("Ready", "True", "GatesPassed")]})
    set_status(ns, "modelversion", "bc-v3", {
        "phase": "Failed", "lineage": {"featureSet": "bc-features", "featureSetVersion": "v1", "job": training_job_name("bc-v3")},
        "conditions": [cond("Ready", "False", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]})
    set_status(ns, "modeldeployment", "bc", {
        "phase": "Progressing", "desiredVersion": "bc-v3", "stableVersion": "bc-v1", "candidateVersion": "bc-v3",
        "canaryWeight": 20, "currentStep": 0,
        "analysis": [{"at": "2026-01-01T02:10:00Z", "metric": "error-rate", "value": 0.0, "passed": True, "samples": 80}],
        "history": [{"version": "bc-v1", "event": "promoted", "at": "2026-01-01T01:40:00Z", "reason": "first version"},
                    {"version": "bc-v2", "event": "rolledBack", "at": "2026-01-01T02:00:00Z",
                     "reason": "latency failed 3 times"}],
        "conditions": [cond("Ready", "True", "Serving"), cond("Progressing", "True", "CanaryStep")]})
    set_status(ns, "retrainpolicy", "bc-retrain", {
        "phase": "Idle", "retrains": 1, "lastTriggered": {"at": "2026-01-01T03:00:00Z", "source": "schedule",
                                                          "modelVersion": "bc-v3", "outcome": "Created"},
        "conditions": [cond("Ready", "True", "Idle")]})
    for job_name, (condition, _) in jobs.items():
        wait_job(ns, job_name, condition)
    return ns


def test_given_a_model_when_get_then_the_tree_with_phases_stages_weights_and_metrics(model):
    out = plugin(model, "get").stdout
    lines = out.splitlines()
    assert lines[0] == MODEL
    expected = [("fs/bc-features", "Ready", "latest v1 (569 rows)"),
                ("mv/bc-v1", "Ready", "Production  accuracy=0.951  data bc-features@v1"),
                ("mv/bc-v2", "Ready", "Staging     accuracy=0.965  data bc-features@v1"),
                ("mv/bc-v3", "Failed", "BackoffLimitExceeded: Job has reached the specified backoff limit"),
                ("mdep/bc", "Progressing", "Canary  step 1/2  bc-v1:80% bc-v3:20%  analysis error-rate ok 0"),
                ("rp/bc-retrain", "Idle", "retrains 1  last schedule 2026-01-01T03:00:00Z -> bc-v3")]
    for ref, phase, detail in expected:
        [line] = [l for l in lines if f" {ref} " in l]
        assert line.split()[1 + line.split().index(ref)] == phase, line
        assert line.endswith(detail), line
    data = json.loads(plugin(model, "get", MODEL, "-o", "json").stdout)
    assert [d["weights"] for d in data[0]["deployments"]] == [{"bc-v1": 80, "bc-v3": 20}]
    assert json.loads(plugin(None, "get", "-A", "-o", "json").stdout)  # every namespace: this one among them


def test_given_watch_when_running_then_it_redraws(model):
    env = {**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(["kubectl", "mlops", "get", "-n", model, "--watch", "--interval", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen = ""
        deadline = time.monotonic() + 30
        while seen.count("Every 0.5s: kubectl mlops get") < 2 and time.monotonic() < deadline:
            seen += proc.stdout.readline()
        assert seen.count("Every 0.5s: kubectl mlops get") >= 2 and "mdep/bc" in seen
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("verb", ["promote", "abort", "retry"])
def test_given_a_request_verb_when_run_then_the_annotation_landed(model, verb):
    out = plugin(model, verb, "bc").stdout
    value = out.strip().rsplit("=", 1)[1].rstrip(")")
    annotations = get(model, "mdep", "bc")["metadata"]["annotations"]
    assert annotations[f"mlops.dev/{verb}"] == value
    again = plugin(model, verb, "mdep/bc", "-o", "json").stdout
    assert get(model, "mdep", "bc")["metadata"]["annotations"][f"mlops.dev/{verb}"] == json.loads(again)["value"] != value


def test_given_promote_wait_with_no_operator_when_run_then_it_times_out_and_says_so(model):
    result = plugin(model, "promote", "bc", "--wait", "--timeout", "2", check=False)
    assert result.returncode == 1 and "did not handle the request within 2s" in result.stderr


def test_given_pause_and_resume_when_run_then_spec_paused_follows(model):
    assert plugin(model, "pause", "bc").stdout == "mdep/bc paused (spec.paused=true)\n"
    assert get(model, "mdep", "bc")["spec"]["paused"] is True
    assert plugin(model, "resume", "bc").stdout == "mdep/bc resumed (spec.paused=false)\n"
    assert get(model, "mdep", "bc")["spec"]["paused"] is False


def test_given_a_deployment_when_history_then_its_rollouts(model):
    out = plugin(model, "history", "bc").stdout
    assert out.startswith("bc: phase Progressing, stable bc-v1, candidate bc-v3\n")
    assert "2026-01-01T02:00:00Z   rolledBack   bc-v2     latency failed 3 times" in out
    assert [e["event"] for e in json.loads(plugin(model, "history", "bc", "-o", "json").stdout)["entries"]] == [
        "promoted", "rolledBack"]


def test_given_two_versions_when_compared_then_side_by_side(model):
    out = plugin(model, "compare", "bc-v1", "mv/bc-v2").stdout
    rows = {line[3:].split()[0]: line for line in out.splitlines()[1:]}
    assert rows["metrics.accuracy"].startswith("*") and rows["metrics.accuracy"].split()[-1] == "+0.014"
    assert rows["parameters.C"].split()[2:4] == ["1", "0.5"]
    assert rows["max_iter"].startswith(" ")  # equal rows are not marked
    assert rows["data.qualityPassed"] and rows["rows"].split()[1:3] == ["569", "569"]  # the FeatureSet's snapshot
    data = json.loads(plugin(model, "compare", "bc-v1", "bc-v2", "-o", "json").stdout)
    assert {r["field"] for r in data["rows"] if r["section"] == "lineage"} >= {"featureSet", "featureSetVersion", "job"}


def test_given_a_canary_whose_candidate_failed_when_why_then_down_to_the_jobs_exit(model):
    out = plugin(model, "why", "mdep/bc").stdout
    assert out.splitlines()[0] == "mdep/bc  Progressing"
    assert "   └─ mv/bc-v3  Failed  Ready=False BackoffLimitExceeded" in out
    assert f"      └─ job/{training_job_name('bc-v3')}  Failed" in out
    assert "exit 2 (InvalidInput): column 'target' not found in the dataset" in out
    assert f"Next:\n  kubectl mlops logs mv/bc-v3 -n {model}\n" in out
    data = json.loads(plugin(model, "why", "rp", "bc-retrain", "-o", "json").stdout)
    assert [s["object"] for s in data["chain"]] == ["rp/bc-retrain", "mv/bc-v3", f"job/{training_job_name('bc-v3')}"]
    assert "Healthy: nothing to fix." in plugin(model, "why", "mv/bc-v1").stdout


def test_given_real_jobs_when_logs_then_their_output(model):
    assert plugin(model, "logs", "mv/bc-v2").stdout == "hello\n"
    # stdout and stderr interleave in whatever order the runtime wrote them
    assert sorted(plugin(model, "logs", "mv/bc-v3").stdout.splitlines()) == [
        "ERROR: column 'target' not found in the dataset", "loading"]
    assert plugin(model, "logs", "fs/bc-features", "--tail", "1").stdout == "materialized 569 rows\n"
    missing = plugin(model, "logs", "mv/bc-v1", check=False)
    assert missing.returncode == 1 and "no Job found" in missing.stderr


def test_given_an_unknown_object_when_asked_then_exit_1(model):
    result = plugin(model, "why", "mv/nope", check=False)
    assert result.returncode == 1 and result.stderr == f"error: mv/nope not found in namespace {model}\n"
