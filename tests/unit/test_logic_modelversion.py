"""ModelVersion steps: one change per pass, every transition with its conditions and events."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import datetime, timezone

import pytest

from mlops_operator.api.v1alpha1.common import get_condition
from mlops_operator.api.v1alpha1.modelversion import ModelVersion
from mlops_operator.logic import modelversion as logic
from mlops_operator.logic.gates import Baseline
from mlops_operator.logic.jobs import JobObservation, JobState
from mlops_operator.logic.references import Problem, Reference
from mlops_operator.logic.status import status_delta
from tests.unit.decisions import cond, job_env, reasons

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
CFG = logic.JobSettings(image="localhost/mlops-runtime:dev", s3_secret="mlops-s3")
PREFIX = "s3://mlops/models/team-a/breast-cancer/bc-v7/"
MODEL_SHA = "a" * 64
TRAINING = {"dataset": {"builtin": "breast_cancer"}, "estimator": "sklearn.linear_model.LogisticRegression",
            "metrics": ["accuracy", "roc_auc"], "timeout": "10m"}
REPORT = {"metrics": {"accuracy": 0.95, "roc_auc": 0.99}, "parameters": {"C": 1.0},
          "signature": {"inputs": [{"name": "a", "dtype": "float"}], "outputs": [{"name": "prediction", "dtype": "int"}]},
          "data": {"sha256": "d" * 64}}
OWNER = {"namespace": "team-a", "kind": "ModelVersion", "name": "bc-v7", "uid": "u-1"}
OK = logic.World(artifact_prefix=PREFIX)


def body(status: dict | None = None, owners: list | None = None, **spec) -> dict:
    spec = spec or {"training": TRAINING}
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion",
            "metadata": {"name": "bc-v7", "namespace": "team-a", "uid": "u-1", "generation": 1,
                         "creationTimestamp": "2026-03-01T11:59:00Z", "ownerReferences": owners or []},
            "spec": {"model": "breast-cancer", **spec}, "status": status or {}}


SPEC_HASH = logic.spec_hash(ModelVersion.from_body(body()))
VERIFIED = logic.ArtifactCheck(PREFIX, model_sha256=MODEL_SHA, model_size=1234, format="mlflow-sklearn",
                               committed_at="2026-03-01T12:10:00Z", report=REPORT, owner=OWNER, spec_hash=SPEC_HASH)


def decide(b: dict, world: logic.World = OK) -> logic.JobOutcome:
    return logic.decide(ModelVersion.from_body(b), b["status"], world, CFG, NOW)


def in_phase(phase: str, **extra) -> dict:
    return {"phase": phase, "stage": "None", "observedGeneration": 1, **extra}


# ------------------------------------------------------------------------------------------ Pending


def test_given_new_version_when_decided_then_job_created_and_training_recorded():
    d = decide(body())
    assert d.job is not None and d.job["metadata"]["name"] == "mv-bc-v7-train"
    assert d.status["phase"] == "Training" and d.status["stage"] == "None" and d.status["observedGeneration"] == 1
    assert d.status["lineage"] == {"job": "mv-bc-v7-train", "image": CFG.image, "dataset": "breast_cancer"}
    assert cond(d, "Ready") == ("False", "Training") and cond(d, "InvalidSpec") == ("False", "Valid")
    assert reasons(d) == [("Normal", "TrainingStarted")]
    env = job_env(d)
    assert env["MLOPS_ARTIFACT_PREFIX"] == PREFIX
    assert d.job["spec"]["activeDeadlineSeconds"] == 600
    assert not d.retry


def test_given_missing_featureset_when_decided_then_pending_with_invalid_spec_and_no_job():
    b = body(training={**TRAINING, "dataset": None, "featureSet": {"name": "bc-features"}})
    d = decide(b, logic.World(problems=[Problem("FeatureSetNotFound", "FeatureSet 'bc-features' not found")],
                              artifact_prefix=PREFIX))
    assert d.job is None and d.status["phase"] == "Pending"
    assert cond(d, "InvalidSpec") == ("True", "FeatureSetNotFound")
    assert reasons(d) == [("Warning", "FeatureSetNotFound")]


def test_given_featureset_without_snapshot_when_decided_then_waits_without_backoff_even_without_secret():
    b = body(training={**{k: v for k, v in TRAINING.items() if k != "dataset"}, "featureSet": {"name": "f"}})
    d = decide(b, logic.World(storage_problem="no secret"))
    assert d.job is None and d.status["phase"] == "Pending" and not d.retry
    assert cond(d, "Ready") == ("False", "WaitingForFeatureSet")


def test_given_featureset_snapshot_when_decided_then_job_pinned_to_resolved_version():
    b = body(training={**{k: v for k, v in TRAINING.items() if k != "dataset"}, "featureSet": {"name": "f"}})
    d = decide(b, logic.World(snapshot={"version": "v3", "uri": "s3://mlops/features/f/v3/"}, artifact_prefix=PREFIX))
    env = job_env(d)
    assert json.loads(env["MLOPS_TRAINING"])["featureSet"] == {"name": "f", "version": "v3"}
    assert env["MLOPS_FEATURESET_URI"] == "s3://mlops/features/f/v3/"
    assert d.status["lineage"]["featureSet"] == "f" and d.status["lineage"]["featureSetVersion"] == "v3"


def test_given_no_s3_secret_when_decided_then_retrying_with_backoff_and_no_job():
    d = decide(body(), logic.World(storage_problem="Secret 'mlops-s3' not found"))
    assert d.job is None and d.retry and d.status["phase"] == "Pending"
    assert cond(d, "Retrying") == ("True", "S3SecretNotFound")


@pytest.mark.parametrize("labels, owners, expected", [
    ({"mlops.dev/retrainpolicy": "bc-retrain"}, [], {"kind": "RetrainPolicy", "name": "bc-retrain"}),
    ({"mlops.dev/hyperparametersearch": "bc-hps"}, [], {"kind": "HyperparameterSearch", "name": "bc-hps"}),
    ({}, [{"kind": "HyperparameterSearch", "name": "bc-hps", "controller": True, "uid": "x", "apiVersion": "v"}],
     {"kind": "HyperparameterSearch", "name": "bc-hps"}),
    ({}, [{"kind": "HyperparameterSearch", "name": "bc-hps", "controller": False, "uid": "x", "apiVersion": "v"}], None),
    ({"channel": "stable"}, [], None),
])
def test_given_creator_label_or_controller_owner_when_training_starts_then_lineage_names_it(labels, owners, expected):
    b = body(owners=owners)
    b["metadata"]["labels"] = labels
    assert decide(b).status["lineage"].get("trainedBy") == expected


# ----------------------------------------------------------------------------------------- Training

TRAINING_STATUS = in_phase("Training", lineage={"job": "mv-bc-v7-train"})


def job(state: JobState, **kw) -> logic.World:
    return logic.World(artifact_prefix=PREFIX, job=JobObservation("mv-bc-v7-train", state, **kw))


def test_given_running_job_when_decided_twice_then_nothing_changes_after_start_time():
    first = decide(body(copy.deepcopy(TRAINING_STATUS)), job(JobState.ACTIVE, started_at="2026-03-01T12:00:01Z"))
    assert first.status["lineage"]["startedAt"] == "2026-03-01T12:00:01Z" and first.job is None
    second = decide(body(first.status), job(JobState.ACTIVE, started_at="2026-03-01T12:00:01Z"))
    assert status_delta(first.status, second.status) == {} and second.events == []


@pytest.mark.parametrize("obs, phase, ready, event", [
    (dict(state=JobState.SUCCEEDED, finished_at="2026-03-01T12:09:00Z"), "Validating", "Verifying",
     ("Normal", "TrainingSucceeded")),
    (dict(state=JobState.FAILED, reason="InvalidTrainingInput", exit_code=2, message="bad column x"), "Failed",
     "InvalidTrainingInput", ("Warning", "TrainingFailed")),
    (dict(state=JobState.FAILED, reason="StorageError", exit_code=3, message="s3 down"), "Failed", "StorageError",
     ("Warning", "TrainingFailed")),
    (dict(state=JobState.FAILED, reason="Timeout", message="exceeded"), "Failed", "Timeout",
     ("Warning", "TrainingFailed")),
    (dict(state=JobState.FAILED, reason="ArtifactExists", exit_code=4, message="already committed"), "Validating",
     "Verifying", ("Warning", "ArtifactExists")),
])
def test_given_finished_job_when_decided_then_phase_ready_reason_and_event(obs, phase, ready, event):
    d = decide(body(copy.deepcopy(TRAINING_STATUS)), job(**obs))
    assert d.status["phase"] == phase
    assert cond(d, "Ready") == ("False", ready)
    assert event in reasons(d)


def test_given_failed_job_when_decided_then_message_reaches_the_ready_condition():
    d = decide(body(copy.deepcopy(TRAINING_STATUS)),
               job(JobState.FAILED, reason="InvalidTrainingInput", message="training.dataset.target: missing"))
    assert get_condition(d.status["conditions"], "Ready")["message"] == "training.dataset.target: missing"


def test_given_deleted_job_while_training_when_decided_then_recreated_with_same_name():
    d = decide(body(copy.deepcopy(TRAINING_STATUS)), job(JobState.MISSING))
    assert d.job["metadata"]["name"] == "mv-bc-v7-train" and d.status["phase"] == "Training"
    assert ("Warning", "JobRecreated") in reasons(d)


def test_given_job_retrying_after_storage_error_when_decided_then_retrying_condition_without_backoff():
    d = decide(body(copy.deepcopy(TRAINING_STATUS)),
               job(JobState.ACTIVE, failed_attempts=1, reason="StorageError", message="endpoint unreachable"))
    assert cond(d, "Retrying") == ("True", "StorageError") and not d.retry and d.status["phase"] == "Training"


# --------------------------------------------------------------------------------------- Validating

VALIDATING = in_phase("Validating", lineage={"job": "mv-bc-v7-train"})


def verify(check: logic.ArtifactCheck, status: dict | None = None, **spec) -> logic.JobOutcome:
    return decide(body(copy.deepcopy(status or VALIDATING), **spec), logic.World(artifact_prefix=PREFIX, artifact=check))


def test_given_verified_artifact_when_decided_then_artifact_metrics_and_lineage_recorded_still_validating():
    d = verify(VERIFIED)
    assert d.status["phase"] == "Validating"
    assert d.status["artifact"] == {"uri": PREFIX, "sha256": MODEL_SHA, "sizeBytes": 1234, "format": "mlflow-sklearn"}
    assert d.status["metrics"] == {"accuracy": 0.95, "roc_auc": 0.99}
    assert d.status["primaryMetric"] == {"name": "accuracy", "value": 0.95}
    assert d.status["parameters"] == {"C": 1.0} and d.status["signature"] == REPORT["signature"]
    assert d.status["lineage"]["datasetSha256"] == "d" * 64
    assert cond(d, "IntegrityError") == ("False", "Verified")
    assert reasons(d) == [("Normal", "ArtifactVerified"), ("Normal", "NotCompiled")]
    assert d.status["compiled"]["available"] is False and cond(d, "Compiled") == ("False", "NotCompiled")


def test_given_report_with_non_finite_metric_when_recorded_then_dropped():
    check = dataclasses.replace(VERIFIED, report={"metrics": {"accuracy": float("nan"), "roc_auc": 0.9}})
    assert verify(check).status["metrics"] == {"roc_auc": 0.9}


def test_given_an_oversized_report_when_recorded_then_status_copies_are_bounded():
    report = {"metrics": {f"m{i}": 0.5 for i in range(100)},
              "parameters": {f"p{i}": "x" * 100 for i in range(1000)},
              "signature": {"inputs": [{"name": f"c{i}", "dtype": "float"} for i in range(100_000)]}}
    d = verify(dataclasses.replace(VERIFIED, report=report))
    assert len(d.status["metrics"]) == logic.MAX_METRICS
    assert 0 < len(json.dumps(d.status["parameters"])) <= logic.MAX_PARAMETERS_BYTES
    assert "signature" not in d.status or len(json.dumps(d.status["signature"])) <= logic.MAX_SIGNATURE_BYTES


@pytest.mark.parametrize("reason", ["ChecksumMismatch", "ManifestMissing"])
def test_given_tampered_artifact_when_decided_then_rejected_with_integrity_error(reason):
    d = verify(logic.ArtifactCheck(PREFIX, problem="integrity", reason=reason, message="sha256 mismatch"))
    assert d.status["phase"] == "Rejected" and "artifact" not in d.status
    assert cond(d, "IntegrityError") == ("True", reason) and cond(d, "Ready") == ("False", "IntegrityError")


@pytest.mark.parametrize("problem, reason", [("unavailable", "StorageUnavailable"), ("denied", "AccessDenied"),
                                             ("storage", "StorageError")])
def test_given_storage_trouble_when_verifying_then_retrying_with_backoff_and_phase_kept(problem, reason):
    d = verify(logic.ArtifactCheck(PREFIX, problem=problem, reason=reason, message="..."))
    assert d.retry and d.status["phase"] == "Validating" and cond(d, "Retrying") == ("True", reason)


def test_given_committed_version_at_own_prefix_when_pending_then_validating_without_training():
    d = decide(body(), logic.World(artifact_prefix=PREFIX, committed=True))
    assert d.job is None and d.status["phase"] == "Validating"
    assert reasons(d) == [("Normal", "ArtifactFound")]


def test_given_same_namespace_name_and_spec_but_new_uid_when_verified_then_adopted_and_ready_as_adopted():
    adopted = verify(dataclasses.replace(VERIFIED, owner={**OWNER, "uid": "u-0-deleted"}))
    assert cond(adopted, "Adopted") == ("True", "Adopted") and ("Normal", "Adopted") in reasons(adopted)
    assert adopted.status["artifact"]["sha256"] == MODEL_SHA
    ready = decide(body(adopted.status))
    assert ready.status["phase"] == "Ready" and cond(ready, "Ready") == ("True", "Adopted")


def test_given_own_uid_when_verified_then_not_called_adopted():
    d = verify(VERIFIED)
    assert cond(d, "Adopted") is None and cond(decide(body(d.status)), "Ready") == ("True", "GatesPassed")


@pytest.mark.parametrize("owner, spec_hash, reason", [
    ({**OWNER, "uid": "u-0"}, "f" * 64, "ArtifactExists"),                       # same name, other spec
    ({**OWNER, "namespace": "team-b"}, SPEC_HASH, "ArtifactNotOwned"),           # another namespace wrote it
    ({**OWNER, "kind": "FeatureSet"}, SPEC_HASH, "ArtifactNotOwned"),
    ({**OWNER, "name": "bc-v8"}, SPEC_HASH, "ArtifactNotOwned"),
    (None, SPEC_HASH, "ArtifactNotOwned"),                                       # no owner recorded at all
])
def test_given_a_version_another_object_or_spec_committed_when_verified_then_failed_and_nothing_adopted(
        owner, spec_hash, reason):
    d = verify(dataclasses.replace(VERIFIED, owner=owner, spec_hash=spec_hash))
    assert d.status["phase"] == "Failed" and cond(d, "Ready") == ("False", reason)
    assert "artifact" not in d.status and "metrics" not in d.status
    assert ("Warning", reason) in reasons(d)
    assert "name" in get_condition(d.status["conditions"], "Ready")["message"]  # says what to do: use a new name


def test_given_registered_artifact_written_by_anyone_when_verified_then_only_the_sha256_decides():
    check = dataclasses.replace(VERIFIED, owner=None, spec_hash=None)
    d = verify(check, artifact=ARTIFACT)
    assert d.status["phase"] == "Validating" and d.status["artifact"]["sha256"] == MODEL_SHA


def test_given_owner_and_spec_hash_when_job_built_then_the_trainer_gets_them_for_the_manifest():
    d = decide(body())
    env = job_env(d)
    assert json.loads(env["MLOPS_OWNER"]) == OWNER and env["MLOPS_SPEC_HASH"] == SPEC_HASH
    other = body(training={**TRAINING, "hyperparameters": {"C": 2.0}})
    assert logic.spec_hash(ModelVersion.from_body(other)) != SPEC_HASH


def test_given_gates_pass_when_decided_then_ready_with_gate_results():
    status = {**VALIDATING, "artifact": {"uri": PREFIX}, "metrics": {"accuracy": 0.95}}
    d = decide(body(status, training=TRAINING, gates={"minMetrics": {"accuracy": 0.9}}))
    assert d.status["phase"] == "Ready" and cond(d, "Ready") == ("True", "GatesPassed")
    assert d.status["gateResults"] == [{"gate": "minMetrics", "metric": "accuracy", "value": 0.95, "threshold": 0.9,
                                        "passed": True}]
    assert reasons(d) == [("Normal", "Ready")]


def test_given_gates_fail_when_decided_then_rejected_listing_every_failed_gate():
    status = {**VALIDATING, "artifact": {"uri": PREFIX}, "metrics": {"accuracy": 0.8, "roc_auc": 0.85}}
    d = decide(body(status, training=TRAINING, gates={"minMetrics": {"accuracy": 0.9, "roc_auc": 0.9}}))
    assert d.status["phase"] == "Rejected" and cond(d, "Ready") == ("False", "GatesFailed")
    message = get_condition(d.status["conditions"], "Ready")["message"]
    assert "accuracy 0.8" in message and "roc_auc 0.85" in message
    assert reasons(d) == [("Warning", "Rejected")]


def test_given_must_beat_stable_deployment_missing_when_validating_then_blocked_until_it_appears():
    gates = {"mustBeatStable": {"modelDeployment": "bc", "metric": "roc_auc"}}
    status = {**VALIDATING, "artifact": {"uri": PREFIX}, "metrics": {"roc_auc": 0.97}}
    blocked = decide(body(copy.deepcopy(status), training=TRAINING, gates=gates),
                     logic.World(problems=[Problem("ModelDeploymentNotFound", "not found")]))
    assert blocked.status["phase"] == "Validating" and cond(blocked, "InvalidSpec") == ("True", "ModelDeploymentNotFound")
    resolved = decide(body(blocked.status, training=TRAINING, gates=gates),
                      logic.World(artifact_prefix=PREFIX, report=logic.ArtifactCheck(PREFIX, report=REPORT),
                                  baseline=Baseline("bc", "bc-v6", {"roc_auc": 0.98})))
    assert cond(resolved, "InvalidSpec") == ("False", "Valid")
    assert resolved.status["phase"] == "Rejected"  # 0.97 does not beat stable bc-v6's 0.98


def test_given_retrying_before_when_a_transition_happens_then_retrying_closes():
    status = copy.deepcopy(VALIDATING)
    status = decide(body(status), logic.World(artifact_prefix=PREFIX, artifact=logic.ArtifactCheck(
        PREFIX, problem="unavailable", reason="StorageUnavailable", message="down"))).status
    recovered = decide(body(status), logic.World(artifact_prefix=PREFIX, artifact=VERIFIED))
    assert cond(recovered, "Retrying") == ("True", "StorageUnavailable")  # recorded the artifact, not a phase change
    ready = decide(body(recovered.status))
    assert ready.status["phase"] == "Ready" and cond(ready, "Retrying") == ("False", "Recovered")


# ------------------------------------------------------------------------------------------ artifact

ARTIFACT = {"uri": "s3://models/bc/v7", "sha256": MODEL_SHA}


def test_given_registered_artifact_when_new_then_validating_without_a_job():
    d = decide(body(artifact=ARTIFACT), logic.World())
    assert d.job is None and d.status["phase"] == "Validating" and reasons(d) == [("Normal", "Registering")]


def test_given_registered_artifact_with_other_sha256_when_verified_then_rejected_integrity_error():
    check = logic.ArtifactCheck("s3://models/bc/v7/", model_sha256="b" * 64)
    d = verify(check, artifact=ARTIFACT)
    assert d.status["phase"] == "Rejected" and cond(d, "IntegrityError") == ("True", "Sha256Mismatch")


def test_given_registered_artifact_with_matching_sha256_and_old_manifest_when_verified_then_recorded():
    check = logic.ArtifactCheck("s3://models/bc/v7/", model_sha256=MODEL_SHA, committed_at="2020-01-01T00:00:00Z")
    d = verify(check, artifact=ARTIFACT)
    assert d.status["phase"] == "Validating" and d.status["artifact"]["sha256"] == MODEL_SHA


# ------------------------------------------------------------------------------------- needs/terminal


@pytest.mark.parametrize("status, spec, expected", [
    ({}, {"training": TRAINING}, logic.Needs(storage=True, committed=True)),
    ({}, {"artifact": ARTIFACT}, logic.Needs()),
    ({"phase": "Training"}, {"training": TRAINING}, logic.Needs(storage=True, job=True)),
    ({"phase": "Validating"}, {"training": TRAINING}, logic.Needs(storage=True, artifact=True)),
    ({"phase": "Validating", "artifact": {"uri": PREFIX}}, {"training": TRAINING}, logic.Needs()),
    ({"phase": "Validating", "artifact": {"uri": PREFIX}},
     {"training": TRAINING, "gates": {"mustBeatStable": {"modelDeployment": "bc", "metric": "roc_auc"}}},
     logic.Needs(references=[Reference("ModelDeployment", "bc", "spec.gates.mustBeatStable.modelDeployment")],
                 storage=True, baseline="bc", report=True)),  # the gate re-reads the report's same-rows score
    ({}, {"training": TRAINING, "gates": {"mustBeatStable": {"modelDeployment": "bc", "metric": "roc_auc"}}},
     logic.Needs(references=[Reference("ModelDeployment", "bc", "spec.gates.mustBeatStable.modelDeployment")],
                 storage=True, committed=True, baseline="bc")),  # stable resolved before the Job exists
    ({}, {"artifact": ARTIFACT, "gates": {"mustBeatStable": {"modelDeployment": "bc", "metric": "roc_auc"}}},
     logic.Needs(references=[Reference("ModelDeployment", "bc", "spec.gates.mustBeatStable.modelDeployment")])),
    ({"phase": "Training"}, {"training": TRAINING, "gates": {"mustBeatStable": {"modelDeployment": "bc",
                                                                                "metric": "roc_auc"}}},
     logic.Needs(storage=True, job=True, baseline="bc")),  # a Job created again scores stable too
    ({"phase": "Ready"}, {"training": TRAINING}, logic.Needs()),
])
def test_given_phase_when_needs_asked_then_only_what_the_step_uses(status, spec, expected):
    assert logic.needs(ModelVersion.from_body(body(status, **spec))) == expected


@pytest.mark.parametrize("phase", ["Ready", "Rejected", "Failed"])
def test_given_terminal_phase_when_decided_then_nothing_changes(phase):
    status = in_phase(phase, conditions=[])
    d = decide(body(copy.deepcopy(status)), logic.World(problems=[Problem("FeatureSetNotFound", "gone")]))
    assert status_delta(status, d.status) == {} and d.events == [] and d.job is None


def test_given_a_whole_run_when_passes_apply_their_deltas_then_phase_sequence_is_the_documented_one():
    b = body(training=TRAINING, gates={"minMetrics": {"accuracy": 0.9}})
    worlds = {None: OK, "Training": job(JobState.SUCCEEDED, finished_at="2026-03-01T12:09:00Z"),
              "Validating": logic.World(artifact_prefix=PREFIX, artifact=VERIFIED)}
    phases, jobs = [], 0
    for _ in range(10):
        d = decide(b, worlds.get(b["status"].get("phase"), OK))
        jobs += d.job is not None
        delta = status_delta(b["status"], d.status)
        if not delta:
            break
        b["status"] = {k: v for k, v in {**b["status"], **delta}.items() if v is not None}
        phases.append(b["status"]["phase"])
    assert phases == ["Training", "Validating", "Validating", "Ready"]
    assert jobs == 1


def test_given_deletion_when_annotation_absent_or_artifact_registered_then_artifacts_retained():
    plain = ModelVersion.from_body(body())
    assert logic.should_delete_artifacts(plain)[0] is False
    annotated = body()
    annotated["metadata"]["annotations"] = {logic.DELETE_ARTIFACTS: "true"}
    assert logic.should_delete_artifacts(ModelVersion.from_body(annotated))[0] is True
    registered = body(artifact=ARTIFACT)
    registered["metadata"]["annotations"] = {logic.DELETE_ARTIFACTS: "true"}
    assert logic.should_delete_artifacts(ModelVersion.from_body(registered))[0] is False


def test_given_a_job_ttl_configured_when_the_training_job_is_built_then_it_carries_it():
    assert "ttlSecondsAfterFinished" not in decide(body()).job["spec"]
    cfg = dataclasses.replace(CFG, ttl_seconds_after_finished=600)
    d = logic.decide(ModelVersion.from_body(body()), {}, OK, cfg, NOW)
    assert d.job["spec"]["ttlSecondsAfterFinished"] == 600


# ------------------------------------------------------------------- mustBeatStable: a fair comparison

MBS = {"mustBeatStable": {"modelDeployment": "bc", "metric": "accuracy", "margin": 0.01}}
STABLE_PREFIX = "s3://mlops/models/team-a/breast-cancer/bc-v6/"
STABLE = Baseline("bc", "bc-v6", {"accuracy": 0.99}, uri=STABLE_PREFIX, sha256="b" * 64)


@pytest.mark.parametrize("baseline, expected", [
    (STABLE, {"version": "bc-v6", "uri": STABLE_PREFIX, "sha256": "b" * 64}),
    (Baseline("bc"), None),                                       # no stable version yet: nothing to score
    (Baseline("bc", "bc-v6", {"accuracy": 0.99}), None),          # stable without a verified artifact
    (None, None),                                                 # no mustBeatStable
])
def test_given_a_stable_version_when_training_starts_then_the_job_is_told_which_artifact_to_score(baseline, expected):
    d = decide(body(training=TRAINING, gates=MBS), logic.World(artifact_prefix=PREFIX, baseline=baseline))
    env = job_env(d)
    assert (json.loads(env[logic.BASELINE_ENV]) if logic.BASELINE_ENV in env else None) == expected
    message = get_condition(d.status["conditions"], "Ready")["message"]
    assert ("scores stable version bc-v6" in message) is (expected is not None)


def test_given_a_job_deleted_mid_run_when_created_again_then_it_still_scores_the_stable_version():
    world = dataclasses.replace(job(JobState.MISSING), baseline=STABLE)
    d = decide(body(copy.deepcopy(TRAINING_STATUS), training=TRAINING, gates=MBS), world)
    assert json.loads(job_env(d)[logic.BASELINE_ENV])["version"] == "bc-v6"


def gate(content: dict | None, metrics: dict, baseline: Baseline = STABLE, **world) -> logic.JobOutcome:
    """The gate pass; ``content`` is the re-read metrics.json (None: the version has none)."""
    status = {**VALIDATING, "artifact": {"uri": PREFIX}, "metrics": metrics}
    w = logic.World(artifact_prefix=PREFIX, baseline=baseline, report=logic.ArtifactCheck(PREFIX, report=content))
    return decide(body(copy.deepcopy(status), training=TRAINING, gates=MBS), dataclasses.replace(w, **world))


SAME_ROWS = {**REPORT, "baseline": {"version": "bc-v6", "uri": STABLE_PREFIX, "rows": 114,
                                   "metrics": {"accuracy": 0.95, "roc_auc": 0.98}}}


@pytest.mark.parametrize("report, accuracy, phase, ready, comparison, fragments", [
    (SAME_ROWS, 0.62, "Rejected", "GatesFailed", "sameRows",
     ["accuracy 0.62", "stable bc-v6 (0.95, on the same 114 test rows)", "margin 0.01"]),
    (SAME_ROWS, 0.97, "Ready", "GatesPassed", "sameRows",
     ["accuracy 0.97 beats stable bc-v6 (0.95, on the same 114 test rows)"]),
    ({**REPORT, "baseline": {"version": "bc-v6", "rows": 114, "reason": "cannot load bc-v6: IntegrityError: x"}},
     0.99, "Rejected", "GatesFailed", "sameRows", ["could not be scored", "IntegrityError: x"]),
    (REPORT, 0.97, "Rejected", "GatesFailed", "recorded",          # no baseline in the report: today's bar (0.99)
     ["stable bc-v6 (0.99, recorded at its own training"]),
    (None, 0.995, "Rejected", "GatesFailed", "recorded", ["0.995 does not beat"]),   # registered: no metrics.json
    ({**REPORT, "baseline": {**SAME_ROWS["baseline"], "version": "bc-v5"}}, 0.97, "Rejected", "GatesFailed",
     "recorded", ["the training Job scored bc-v5, but the stable version of bc is now bc-v6"]),
])
def test_given_the_reports_baseline_when_gated_then_phase_message_and_gate_result_name_both_scores(
        report, accuracy, phase, ready, comparison, fragments):
    d = gate(report, {"accuracy": accuracy})
    assert d.status["phase"] == phase and cond(d, "Ready") == ("False" if phase == "Rejected" else "True", ready)
    message = get_condition(d.status["conditions"], "Ready")["message"]
    for fragment in fragments:
        assert fragment in message
    (result,) = d.status["gateResults"]
    assert result["comparison"] == comparison and result["baselineVersion"] == "bc-v6" and result["margin"] == 0.01
    event = ("Warning", "Rejected") if phase == "Rejected" else ("Normal", "Ready")
    assert event in reasons(d) and fragments[0] in next(e.message for e in d.events if e.reason == event[1])


def test_given_no_stable_version_when_gated_then_ready_with_a_note_and_the_report_unused():
    d = gate(SAME_ROWS, {"accuracy": 0.5}, baseline=Baseline("bc"))
    assert d.status["phase"] == "Ready" and "no stable version" in get_condition(d.status["conditions"], "Ready")["message"]


@pytest.mark.parametrize("world, phase, retry, condition", [
    (dict(report=logic.ArtifactCheck(PREFIX, problem="unavailable", reason="StorageUnavailable", message="down")),
     "Validating", True, ("Retrying", ("True", "StorageUnavailable"))),
    (dict(report=logic.ArtifactCheck(PREFIX, problem="integrity", reason="ChecksumMismatch", message="tampered")),
     "Rejected", False, ("IntegrityError", ("True", "ChecksumMismatch"))),
    (dict(artifact_prefix=None, report=None, storage_problem="Secret 'mlops-s3' not found"),
     "Validating", True, ("Retrying", ("True", "S3SecretNotFound"))),
])
def test_given_the_report_cannot_be_read_at_the_gate_when_gated_then_no_verdict_on_a_guess(world, phase, retry, condition):
    d = gate(SAME_ROWS, {"accuracy": 0.99}, **world)
    assert d.status["phase"] == phase and d.retry is retry and cond(d, condition[0]) == condition[1]
    assert "gateResults" not in d.status


def test_given_a_status_as_stored_with_every_field_when_a_pass_decides_then_its_typed_copy_writes_nothing_back():
    """The pass reads and writes the typed status and serializes it once: that round trip is the identity
    for what the apiserver stores (times, nested objects, nulls in parameters, integer metrics)."""
    stored = {
        "phase": "Ready", "stage": "Production", "observedGeneration": 1,
        "artifact": {"uri": PREFIX, "sha256": "a" * 64, "sizeBytes": 1234, "format": "sklearn-joblib"},
        "metrics": {"accuracy": 1, "roc_auc": 0.97}, "primaryMetric": {"name": "accuracy", "value": 1},
        "parameters": {"max_depth": None, "n_estimators": 100, "criterion": "gini"},
        "signature": {"inputs": [{"name": "f0", "dtype": "float64"}], "outputs": [{"name": "y", "dtype": "int64"}]},
        "lineage": {"job": "mv-bc-v7-train", "image": "img", "trainedBy": {"kind": "RetrainPolicy", "name": "r"},
                    "featureSet": "fs", "featureSetVersion": "v2", "dataset": "s3://d/", "datasetSha256": "b" * 64,
                    "startedAt": "2026-03-01T12:00:01Z", "finishedAt": "2026-03-01T12:09:00.250000Z",
                    "labels": {"source": "s3://b/labels.csv", "maxAge": "1h", "asOf": "t <= label time",
                               "labels": 3, "joined": 2, "dropped": {"tooOld": 1}}},
        "compiled": {"available": True, "format": "onnx", "maxDifference": 0.0, "tolerance": 1e-05,
                     "inputType": "double", "rows": 114, "conversionSeconds": 0.5},
        "gateResults": [{"gate": "minMetrics", "metric": "accuracy", "value": 1, "threshold": 0.9, "passed": True},
                        {"gate": "mustBeatStable", "metric": "roc_auc", "value": 0.97, "threshold": 0.95,
                         "passed": True, "baseline": 0.95, "baselineVersion": "v6", "margin": 0.0,
                         "comparison": "sameRows", "rows": 114}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "GatesPassed", "message": "every gate passed",
                        "lastTransitionTime": "2026-03-01T12:10:00Z", "observedGeneration": 1}],
    }
    d = decide(body(copy.deepcopy(stored)))
    assert status_delta(stored, d.status) == {} and d.events == [] and d.job is None
