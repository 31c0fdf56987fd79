"""BatchPrediction steps: run ids from triggers, references that block a run, Job outcomes, history — one change per pass."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from mlops_operator.api.v1alpha1.batchprediction import BatchPrediction
from mlops_operator.logic import batchprediction as logic
from mlops_operator.logic.jobs import JobObservation, JobSettings, JobState
from mlops_operator.logic.references import Problem
from tests.unit.decisions import cond, job_env, reasons

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, 30, tzinfo=timezone.utc)
CFG = JobSettings(image="localhost/mlops-runtime:dev", s3_secret="mlops-s3")
SHA = "a" * 64
MODEL = {"metadata": {"name": "bc-v1"},
         "status": {"phase": "Ready", "artifact": {"uri": "s3://mlops/models/team-a/bc/bc-v1/", "sha256": SHA}}}
FEATURES = {"metadata": {"name": "bc-features"}, "spec": {"entityKey": "id"},
            "status": {"latestVersion": "v2", "versions": [
                {"version": "v1", "uri": "s3://mlops/features/team-a/bc-features/v1/"},
                {"version": "v2", "uri": "s3://mlops/features/team-a/bc-features/v2/"}]}}
URI_INPUT = {"uri": "s3://mlops/data/rows.parquet"}


def body(status: dict | None = None, generation: int = 1, annotations: dict | None = None, namespace: str = "team-a",
         **spec) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "BatchPrediction",
            "metadata": {"name": "nightly", "namespace": namespace, "uid": "u-1", "generation": generation,
                         "creationTimestamp": "2026-03-01T11:00:00Z", "annotations": annotations or {}},
            "spec": {"modelVersion": "bc-v1", "input": URI_INPUT, **spec}, "status": status or {}}


def world(**kw) -> logic.World:
    return logic.World(**{"model": MODEL, "bucket": "mlops", **kw})


def decide(b: dict, w: logic.World | None = None, now: datetime = NOW) -> logic.JobOutcome:
    return logic.decide(BatchPrediction.from_body(b), b["status"], w or world(), CFG, now)


def job(state: JobState, **kw) -> JobObservation:
    return JobObservation(name="bp-nightly-g1", state=state, **kw)


def started(b: dict, w: logic.World | None = None) -> dict:
    """The status after the pass that records a run (its Job is created on the next pass)."""
    return decide(b, w).status


def test_given_no_schedule_when_created_then_the_generation_run_is_recorded_before_its_job():
    d = decide(body())
    run = d.status["activeRun"]
    assert run.startswith("g1-") and d.job is None
    assert d.status["activeJob"] == f"bp-nightly-{run}"
    assert d.status["phase"] == "Running" and d.status["handledGeneration"] == 1
    assert json.loads(d.status["activeInput"]) == URI_INPUT
    assert d.status["activeModelSha256"] == SHA
    assert reasons(d) == [("Normal", "Scoring")]


def test_given_a_recorded_run_when_its_job_is_missing_then_the_job_scores_into_the_namespaced_run_prefix():
    b = body()
    b["status"] = started(b)
    d = decide(b, world(job=job(JobState.MISSING)))
    env = job_env(d)
    run = b["status"]["activeRun"]
    assert d.job["metadata"]["name"] == f"bp-nightly-{run}"
    assert env["MLOPS_BATCH_OUTPUT_PREFIX"] == f"s3://mlops/predictions/team-a/nightly/{run}/"
    assert env["MLOPS_BATCH_MODEL_URI"] == MODEL["status"]["artifact"]["uri"]
    assert env["MLOPS_BATCH_MODEL_SHA256"] == SHA


def test_given_equal_names_in_two_namespaces_when_jobs_built_then_their_output_prefixes_differ():
    prefixes = []
    for ns in ("team-a", "team-b"):
        b = body(namespace=ns)
        b["status"] = started(b)
        d = decide(b, world(job=job(JobState.MISSING)))
        env = job_env(d)
        prefixes.append(env["MLOPS_BATCH_OUTPUT_PREFIX"])
        assert json.loads(env["MLOPS_OWNER"])["namespace"] == ns
    assert prefixes[0] != prefixes[1] and all("/nightly/" in p for p in prefixes)


def test_given_a_running_job_when_parts_were_written_then_progress_is_reported():
    b = body(chunkRows=100)
    b["status"] = started(b)
    d = decide(b, world(job=job(JobState.ACTIVE), chunks_written=3))
    assert d.status["progress"] == {"run": b["status"]["activeRun"], "chunksWritten": 3, "rowsAtMost": 300}
    assert d.status["phase"] == "Running" and d.job is None


def test_given_a_completed_job_when_its_output_is_committed_then_the_run_succeeds_and_ready():
    b = body()
    b["status"] = started(b)
    out = f"s3://mlops/predictions/team-a/nightly/{b['status']['activeRun']}/"
    d = decide(b, world(job=job(JobState.SUCCEEDED), committed=logic.Committed(out, rows=569, files=1)))
    assert d.status["phase"] == "Succeeded" and "activeRun" not in d.status and "progress" not in d.status
    assert d.status["lastOutputUri"] == out and d.status["rowsScored"] == 569
    assert d.status["runs"][-1]["result"] == "Succeeded" and d.status["runs"][-1]["rows"] == 569
    assert cond(d, "Ready") == ("True", "RunSucceeded")
    assert ("Normal", "Scored") in reasons(d)


def test_given_a_completed_job_when_s3_cannot_be_read_then_retrying_and_the_run_stays_active():
    b = body()
    b["status"] = started(b)
    d = decide(b, world(job=job(JobState.SUCCEEDED),
                        committed=logic.Committed("s3://x/", problem="StorageUnavailable", message="down")))
    assert d.retry and d.status["activeRun"] == b["status"]["activeRun"]
    assert cond(d, "Retrying") == ("True", "StorageUnavailable")


def test_given_a_failed_job_when_the_dataset_was_unreadable_then_ready_false_with_the_reason_and_a_warning():
    b = body()
    b["status"] = started(b)
    term = {"ok": False, "reason": "DatasetUnreadable", "message": "input.uri: not found", "exitCode": 2}
    d = decide(b, world(job=job(JobState.FAILED, reason="InvalidTrainingInput"), termination=term))
    assert d.status["phase"] == "Failed" and "activeRun" not in d.status
    assert cond(d, "Ready") == ("False", "DatasetUnreadable")
    assert d.status["runs"][-1]["reason"] == "DatasetUnreadable"
    assert ("Warning", "DatasetUnreadable") in reasons(d)
    again = decide({**b, "status": d.status})
    assert again.status.get("activeRun") is None  # the same generation is not retried by itself


def test_given_a_missing_model_version_then_no_run_starts_and_the_reason_is_a_condition_and_an_event():
    problem = Problem("ModelVersionNotFound", "spec.modelVersion: ModelVersion 'bc-v1' not found in namespace 'team-a'")
    d = decide(body(), world(problems=(problem,), model=None))
    assert "activeRun" not in d.status and d.job is None
    assert cond(d, "Ready") == ("False", "ModelVersionNotFound")
    assert cond(d, "InvalidSpec") == ("True", "ModelVersionNotFound")
    assert ("Warning", "ModelVersionNotFound") in reasons(d)
    assert d.status["phase"] == "Pending"
    again = decide({**body(), "status": d.status}, world(problems=(problem,), model=None))
    assert reasons(again) == []  # an unchanged verdict posts no second event


def test_given_a_model_version_not_ready_then_waiting_with_a_warning_once():
    training = {"metadata": {"name": "bc-v1"}, "status": {"phase": "Training"}}
    d = decide(body(), world(model=training))
    assert "activeRun" not in d.status
    assert cond(d, "Ready") == ("False", "ModelVersionNotReady")
    assert reasons(d) == [("Warning", "ModelVersionNotReady")]
    assert reasons(decide({**body(), "status": d.status}, world(model=training))) == []


def test_given_a_feature_set_input_then_its_latest_snapshot_and_entity_key_are_used():
    b = body(input={"featureSet": {"name": "bc-features"}})
    b["status"] = started(b, world(feature_set=FEATURES))
    assert json.loads(b["status"]["activeInput"]) == {
        "snapshotUri": "s3://mlops/features/team-a/bc-features/v2/", "featureSet": "bc-features", "version": "v2",
        "entityKey": "id"}
    d = decide(b, world(feature_set=FEATURES, job=job(JobState.MISSING)))
    env = job_env(d)
    assert json.loads(env["MLOPS_BATCH_PASSTHROUGH"]) == ["id"]


def test_given_a_feature_set_without_an_entity_key_then_the_snapshot_row_number_is_passed_through():
    no_key = {**FEATURES, "spec": {}}
    b = body(input={"featureSet": {"name": "bc-features", "version": "v1"}})
    b["status"] = started(b, world(feature_set=no_key))
    resolved = json.loads(b["status"]["activeInput"])
    assert resolved["entityKey"] == "__row__" and resolved["version"] == "v1"


def test_given_a_feature_set_without_a_snapshot_then_waiting_for_it():
    empty = {"metadata": {"name": "bc-features"}, "spec": {}, "status": {}}
    d = decide(body(input={"featureSet": {"name": "bc-features"}}), world(feature_set=empty))
    assert "activeRun" not in d.status and cond(d, "Ready") == ("False", "SnapshotNotReady")


def test_given_a_finished_run_without_schedule_when_only_history_is_edited_then_no_rerun_but_a_model_change_reruns():
    b = body()
    status = {k: v for k, v in decide(b).status.items() if not k.startswith("active")}
    assert "activeRun" not in decide(body(status=status, generation=2, historyLimit=3)).status
    rerun = decide(body(status=status, generation=3, modelVersion="bc-v2")).status
    assert rerun["activeRun"].startswith("g3-") and rerun["activeRun"] != decide(b).status["activeRun"]


def test_given_a_run_annotation_when_new_then_run_r_value_once():
    b = body(annotations={"mlops.dev/run": "Backfill 1"})
    b["status"] = {k: v for k, v in decide(body()).status.items() if not k.startswith("active")}
    d = decide(b)
    assert d.status["activeRun"].startswith("r-backfill-1-") and d.status["handledRequest"] == "Backfill 1"
    assert d.status["activeTrigger"] == "Request"
    done = {k: v for k, v in d.status.items() if not k.startswith("active")}
    assert "activeRun" not in decide({**b, "status": done}).status


def test_given_a_schedule_when_a_slot_falls_due_then_one_run_named_after_the_latest_slot():
    b = body(schedule="*/10 * * * *")
    assert "activeRun" not in decide(b, now=datetime(2026, 3, 1, 11, 5, tzinfo=timezone.utc)).status
    d = decide(b, now=datetime(2026, 3, 1, 11, 47, tzinfo=timezone.utc))  # 11:10 ... 11:40 missed: one run
    assert d.status["activeRun"] == "t-20260301-1140"
    assert d.status["lastScheduledAt"] == "2026-03-01T11:40:00Z"
    assert d.status["nextScheduledAt"] == "2026-03-01T11:50:00Z"


def test_given_two_slots_when_each_run_finishes_then_two_distinct_runs_in_a_bounded_history():
    b = body(schedule="* * * * *", historyLimit=2)
    status: dict = {}
    runs = []
    for minute in range(3):
        now = datetime(2026, 3, 1, 12, minute, 30, tzinfo=timezone.utc)
        status = decide({**b, "status": status}, now=now).status
        run = status["activeRun"]
        runs.append(run)
        out = f"s3://mlops/predictions/team-a/nightly/{run}/"
        status = decide({**b, "status": status}, world(job=job(JobState.SUCCEEDED),
                                                        committed=logic.Committed(out, rows=10, files=1)),
                        now=now + timedelta(seconds=5)).status
    assert len(set(runs)) == 3
    assert [r["run"] for r in status["runs"]] == runs[-2:]


def test_given_a_spec_hash_then_schedule_and_history_do_not_change_it_but_the_model_does():
    base = BatchPrediction.from_body(body())
    same = BatchPrediction.from_body(body(schedule="0 2 * * *", historyLimit=3))
    other = BatchPrediction.from_body(body(modelVersion="bc-v2"))
    assert logic.spec_hash(base) == logic.spec_hash(same) != logic.spec_hash(other)
