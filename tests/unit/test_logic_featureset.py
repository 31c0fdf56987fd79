"""FeatureSet steps: triggers, version numbering, Job outcomes, schedule — one change per pass."""

from __future__ import annotations

import dataclasses

import copy
import json
from datetime import datetime, timedelta, timezone

import pytest

from mlops_operator.api.v1alpha1.common import get_condition
from mlops_operator.api.v1alpha1.featureset import FeatureSet
from mlops_operator.logic import featureset as logic
from mlops_operator.logic.jobs import JobObservation, JobState
from tests.unit.decisions import cond, job_env, reasons

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, 30, tzinfo=timezone.utc)
CFG = logic.JobSettings(image="localhost/mlops-runtime:dev", s3_secret="mlops-s3")
SPEC = {"source": {"builtin": "breast_cancer"}, "target": "target",
        "features": [{"name": "mean radius", "transform": "standardize", "impute": {"strategy": "mean"}}]}
QUALITY_OK = {"passed": True, "checkedAt": "2026-03-01T12:00:10Z", "rows": 569, "violations": [],
              "missingFraction": {"mean radius": 0.0}}


def body(status: dict | None = None, generation: int = 1, annotations: dict | None = None, **spec) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "FeatureSet",
            "metadata": {"name": "bc", "namespace": "team-a", "uid": "u-1", "generation": generation,
                         "creationTimestamp": "2026-03-01T11:00:00Z", "annotations": annotations or {}},
            "spec": {**SPEC, **spec}, "status": status or {}}


def decide(b: dict, world: logic.World = logic.World(bucket="mlops"), now: datetime = NOW) -> logic.JobOutcome:
    return logic.decide(FeatureSet.from_body(b), b["status"], world, CFG, now)


def job(state: JobState, **kw) -> JobObservation:
    return JobObservation(name="fs-bc-v1", state=state, **kw)


def active(version: str = "v1", generation: int = 1, **extra) -> dict:
    return {"activeVersion": version, "activeJob": f"fs-bc-{version}", "activeTrigger": "Created",
            "activeGeneration": generation, "lastVersionNumber": int(version[1:]),
            "lastStartedAt": "2026-03-01T12:00:00Z", "phase": "Materializing", **extra}


def committed(version: str = "v1", **kw) -> logic.Committed:
    return logic.Committed(f"s3://mlops/features/bc/{version}/", rows=569, sha256="d" * 64,
                           created_at="2026-03-01T12:00:20Z", quality=kw.pop("quality", QUALITY_OK), **kw)


def ready_with(*versions: tuple[str, int], **extra) -> dict:
    refs = [{"version": v, "uri": f"s3://mlops/features/bc/{v}/", "rows": 569, "generation": g} for v, g in versions]
    return {"phase": "Ready", "latestVersion": refs[-1]["version"], "versions": refs,
            "lastVersionNumber": max(int(v[1:]) for v, _ in versions), "lastStartedAt": "2026-03-01T11:30:00Z",
            **extra}


# ------------------------------------------------------------------------------------------ triggers


def test_given_a_new_featureset_then_v1_is_recorded_before_any_job_is_created():
    d = decide(body())
    assert d.job is None
    assert d.status["activeVersion"] == "v1" and d.status["activeJob"] == "fs-bc-v1"
    assert d.status["activeTrigger"] == "Created" and d.status["phase"] == "Materializing"
    assert reasons(d) == [("Normal", "Materializing")]


def test_given_a_recorded_version_without_a_job_then_its_job_is_built_for_that_version():
    d = decide(body(active()), logic.World(job=job(JobState.MISSING), bucket="mlops"))
    env = job_env(d)
    assert d.job["metadata"]["name"] == "fs-bc-v1"
    assert env["MLOPS_SNAPSHOT_PREFIX"] == "s3://mlops/features/team-a/bc/v1/"
    assert env["MLOPS_SNAPSHOT_VERSION"] == "v1" and env["MLOPS_FEATURESET_UID"] == "u-1"
    assert json.loads(env["MLOPS_OWNER"]) == {"namespace": "team-a", "kind": "FeatureSet", "name": "bc", "uid": "u-1"}
    assert env["MLOPS_SPEC_HASH"] == logic.spec_hash(FeatureSet.from_body(body(active())))
    assert '"target":"target"' in env["MLOPS_FEATURESET_SPEC"]


def test_given_no_s3_secret_when_the_job_is_due_then_it_retries_with_the_reason():
    d = decide(body(active()), logic.World(job=job(JobState.MISSING), storage_problem="Secret 'mlops-s3' not found"))
    assert d.job is None and d.retry
    assert cond(d, "Retrying") == ("True", "StorageNotConfigured")


def test_given_a_running_job_then_nothing_changes_but_the_phase():
    d = decide(body(active()), logic.World(job=job(JobState.ACTIVE), bucket="mlops"))
    assert d.job is None and not d.events and d.status["activeVersion"] == "v1"
    assert d.status["phase"] == "Materializing"


def test_given_a_completed_job_then_the_snapshot_is_recorded_and_the_featureset_is_ready():
    d = decide(body(active()), logic.World(job=job(JobState.SUCCEEDED), bucket="mlops", committed=committed()))
    assert d.status["latestVersion"] == "v1" and "activeVersion" not in d.status
    assert d.status["versions"] == [{"version": "v1", "uri": "s3://mlops/features/bc/v1/", "rows": 569,
                                     "createdAt": "2026-03-01T12:00:20Z", "sha256": "d" * 64, "generation": 1,
                                     "trigger": "Created", "qualityPassed": True}]
    assert d.status["phase"] == "Ready" and cond(d, "Ready") == ("True", "SnapshotAvailable")
    assert cond(d, "Materialized") == ("True", "Materialized")
    assert cond(d, "QualityWarning") == ("False", "QualityChecksPassed")
    assert d.status["quality"]["passed"] is True
    assert reasons(d) == [("Normal", "Materialized")]


def test_given_a_completed_job_whose_files_cannot_be_read_then_it_retries_and_keeps_the_job_active():
    broken = logic.Committed("s3://mlops/features/bc/v1/", problem="StorageUnavailable", message="MinIO down")
    d = decide(body(active()), logic.World(job=job(JobState.SUCCEEDED), bucket="mlops", committed=broken))
    assert d.retry and d.status["activeVersion"] == "v1" and "latestVersion" not in d.status
    assert cond(d, "Retrying") == ("True", "StorageUnavailable")


def test_given_quality_violations_under_warn_then_published_with_a_warning():
    quality = {**QUALITY_OK, "passed": False,
               "violations": [{"feature": "mean radius", "check": "max", "message": "3 of 569 values above max 25"}]}
    d = decide(body(active(), qualityPolicy={"onViolation": "warn"}),
               logic.World(job=job(JobState.SUCCEEDED), bucket="mlops", committed=committed(quality=quality)))
    assert d.status["latestVersion"] == "v1" and d.status["versions"][-1]["qualityPassed"] is False
    assert cond(d, "QualityWarning") == ("True", "QualityChecksFailed")
    assert ("Warning", "QualityWarning") in reasons(d)
    assert "mean radius max: 3 of 569 values above max 25" in get_condition(d.status["conditions"],
                                                                            "QualityWarning")["message"]


def test_given_a_failed_first_job_then_failed_with_the_materializers_reason_and_quality():
    summary = {"ok": False, "reason": "QualityCheckFailed", "message": "mean radius: 40 values above max 10",
               "exitCode": 2, "quality": {"passed": False, "violations": [{"feature": "mean radius", "check": "max",
                                                                        "message": "40 values above max 10"}]}}
    d = decide(body(active()), logic.World(job=job(JobState.FAILED, reason="InvalidTrainingInput", exit_code=2),
                                           termination=summary, bucket="mlops"))
    assert "activeVersion" not in d.status and "latestVersion" not in d.status
    assert d.status["phase"] == "Failed" and cond(d, "Ready") == ("False", "QualityCheckFailed")
    assert cond(d, "Materialized") == ("False", "QualityCheckFailed")
    assert d.status["quality"]["violations"][0]["check"] == "max"
    assert reasons(d) == [("Warning", "QualityCheckFailed")]


def test_given_a_failed_generation_then_it_is_not_retried_until_the_spec_changes():
    failed = decide(body(active()), logic.World(job=job(JobState.FAILED, message="boom"), bucket="mlops")).status
    again = decide(body(failed))
    assert "activeVersion" not in again.status and not again.events and again.status["phase"] == "Failed"
    edited = decide(body(failed, generation=2))
    assert edited.status["activeVersion"] == "v2" and edited.status["activeTrigger"] == "Created"


def test_given_a_failure_after_a_good_snapshot_then_it_stays_ready_on_the_last_good_one():
    status = {**ready_with(("v1", 1)), **active("v2", generation=2)}
    d = decide(body(status, generation=2), logic.World(job=job(JobState.FAILED, message="cannot read source"),
                                                       bucket="mlops"))
    assert d.status["phase"] == "Ready" and d.status["latestVersion"] == "v1"
    assert cond(d, "Materialized") == ("False", "MaterializeFailed")
    assert "v1 is still the latest snapshot" in get_condition(d.status["conditions"], "Materialized")["message"]


def test_given_a_spec_edit_then_a_new_version_is_built_from_the_new_generation():
    d = decide(body(ready_with(("v1", 1)), generation=2))
    assert d.status["activeVersion"] == "v2" and d.status["activeTrigger"] == "SpecChanged"
    assert d.status["activeGeneration"] == 2 and d.status["latestVersion"] == "v1"


def test_given_an_unchanged_ready_featureset_then_nothing_happens():
    d = decide(body(ready_with(("v1", 1))))
    assert "activeVersion" not in d.status and not d.events and d.job is None


def test_given_a_request_annotation_then_it_acts_once():
    d = decide(body(ready_with(("v1", 1)), annotations={"mlops.dev/materialize": "now-1"}))
    assert d.status["activeVersion"] == "v2" and d.status["activeTrigger"] == "Request"
    assert d.status["handledRequest"] == "now-1"
    done = decide(body(active("v2"), annotations={"mlops.dev/materialize": "now-1"}),
                  logic.World(job=JobObservation("fs-bc-v2", JobState.SUCCEEDED), bucket="mlops",
                              committed=committed("v2")))
    done.status["handledRequest"] = "now-1"
    after = decide(body(done.status, annotations={"mlops.dev/materialize": "now-1"}))
    assert "activeVersion" not in after.status


def test_given_version_numbers_then_they_are_never_reused():
    status = ready_with(("v1", 1))
    status["lastVersionNumber"] = 4  # v2..v4 failed or were skipped
    d = decide(body(status, generation=2))
    assert d.status["activeVersion"] == "v5"


def test_given_a_taken_prefix_then_the_next_number_is_used_at_once():
    summary = {"ok": False, "reason": "VersionTaken", "message": "s3://mlops/features/bc/v1/ holds another FeatureSet"}
    d = decide(body(active()), logic.World(job=job(JobState.FAILED, exit_code=4), termination=summary, bucket="mlops"))
    assert d.status["activeVersion"] == "v2" and d.status["activeTrigger"] == "Created"
    assert cond(d, "Materialized") is None and d.status["phase"] == "Materializing"


# ------------------------------------------------------------------------------------------ schedule


def test_given_a_schedule_then_the_next_run_is_shown_and_fires_once_when_due():
    status = ready_with(("v1", 1))
    status["lastStartedAt"] = "2026-03-01T11:50:00Z"
    spec = {"materialize": {"schedule": "*/30 * * * *"}}
    before = decide(body(status, **spec), now=datetime(2026, 3, 1, 11, 59, tzinfo=timezone.utc))
    assert before.status["nextScheduledAt"] == "2026-03-01T12:00:00Z" and "activeVersion" not in before.status
    due = decide(body(status, **spec), now=NOW)
    assert due.status["activeVersion"] == "v2" and due.status["activeTrigger"] == "Schedule"
    assert due.status["nextScheduledAt"] == "2026-03-01T12:30:00Z"


def test_given_many_missed_ticks_then_the_schedule_fires_once_not_once_per_tick():
    status = ready_with(("v1", 1))
    status["lastStartedAt"] = "2026-03-01T06:00:00Z"  # operator was down for hours
    first = decide(body(status, materialize={"schedule": "*/5 * * * *"}), now=NOW)
    assert first.status["activeVersion"] == "v2"
    finished = decide(body(first.status, materialize={"schedule": "*/5 * * * *"}),
                      logic.World(job=JobObservation("fs-bc-v2", JobState.SUCCEEDED), bucket="mlops",
                                  committed=committed("v2")), now=NOW + timedelta(seconds=20))
    assert "activeVersion" not in finished.status
    idle = decide(body(finished.status, materialize={"schedule": "*/5 * * * *"}), now=NOW + timedelta(seconds=30))
    assert "activeVersion" not in idle.status


def test_given_a_failed_generation_then_the_schedule_still_tries_again():
    status = copy.deepcopy(decide(body(active()), logic.World(job=job(JobState.FAILED), bucket="mlops")).status)
    d = decide(body(status, materialize={"schedule": "0 * * * *"}), now=datetime(2026, 3, 1, 13, 0, 1, tzinfo=timezone.utc))
    assert d.status["activeVersion"] == "v2" and d.status["activeTrigger"] == "Schedule"


def test_given_history_limit_then_old_snapshots_leave_status():
    status = {**ready_with(("v1", 1), ("v2", 1), ("v3", 1)), **active("v4")}
    d = decide(body(status, historyLimit=2), logic.World(job=JobObservation("fs-bc-v4", JobState.SUCCEEDED),
                                                         bucket="mlops", committed=committed("v4")))
    assert [v["version"] for v in d.status["versions"]] == ["v3", "v4"]


ONLINE = {"entityKey": "id", "online": {"enabled": True, "ttl": "1h"}}
ONLINE_CFG = dataclasses.replace(CFG, online_store_url="redis://10.0.0.1:6379/0")


def test_given_online_enabled_without_an_online_store_then_the_condition_says_not_configured():
    d = decide(body(ready_with(("v1", 1)), **ONLINE))
    assert cond(d, "OnlineServing") == ("False", "NotConfigured")
    assert cond(decide(body(ready_with(("v1", 1)))), "OnlineServing") is None


def test_given_a_job_that_wrote_online_then_status_online_and_published_and_the_job_env_names_the_store():
    b = body(active(), **ONLINE)
    summary = {"ok": True, "online": {"entities": 569, "key": "team-a/bc"}}
    world = logic.World(job=job(JobState.SUCCEEDED), termination=summary, bucket="mlops", committed=committed())
    d = logic.decide(FeatureSet.from_body(b), b["status"], world, ONLINE_CFG, NOW)
    assert d.status["online"]["version"] == "v1" and d.status["online"]["entities"] == 569
    assert cond(d, "OnlineServing") == ("True", "Published")
    env = {e["name"]: e for e in logic.build_job(FeatureSet.from_body(b), active(), "mlops", ONLINE_CFG)
           ["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLOPS_ONLINE_STORE_URL"]["value"] == "redis://10.0.0.1:6379/0"
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "mlops-redis", "key": "REDIS_PASSWORD",
                                                                  "optional": True}
    offline = logic.build_job(FeatureSet.from_body(body(active())), active(), "mlops", ONLINE_CFG)
    assert "MLOPS_ONLINE_STORE_URL" not in {e["name"] for e in offline["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_given_the_online_store_down_at_materialization_then_online_serving_false_with_the_reason():
    b = body(active(), **ONLINE)
    summary = {"ok": False, "reason": "OnlineStoreUnavailable", "exitCode": 3,
               "message": "snapshot v1 is committed, but online store redis://x unavailable"}
    world = logic.World(job=job(JobState.FAILED), termination=summary, bucket="mlops")
    d = logic.decide(FeatureSet.from_body(b), b["status"], world, ONLINE_CFG, NOW)
    assert cond(d, "OnlineServing") == ("False", "OnlineStoreUnavailable")
    assert cond(d, "Materialized") == ("False", "OnlineStoreUnavailable")


def test_given_a_schedule_or_history_edit_then_no_rebuild_but_a_data_edit_rebuilds():
    running = active(activeSpecHash=logic.spec_hash(FeatureSet.from_body(body())))
    built = decide(body(running), logic.World(job=job(JobState.SUCCEEDED), bucket="mlops", committed=committed()))
    assert built.status["versions"][-1]["specHash"] == logic.spec_hash(FeatureSet.from_body(body()))
    scheduled = decide(body(built.status, generation=2, materialize={"schedule": "0 0 1 1 *"}, historyLimit=3))
    assert "activeVersion" not in scheduled.status
    edited = decide(body(built.status, generation=3, target="mean texture",
                         features=[{"name": "mean radius", "transform": "minmax"}]))
    assert edited.status["activeTrigger"] == "SpecChanged" and edited.status["activeSpecHash"] != \
        built.status["versions"][-1]["specHash"]


def test_given_a_job_ttl_configured_when_the_job_is_built_then_it_carries_it_and_none_by_default():
    import dataclasses

    world = logic.World(job=job(JobState.MISSING), bucket="mlops")
    assert "ttlSecondsAfterFinished" not in decide(body(active()), world).job["spec"]
    with_ttl = logic.decide(FeatureSet.from_body(body(active())), active(), world,
                            dataclasses.replace(CFG, ttl_seconds_after_finished=3600), NOW)
    assert with_ttl.job["spec"]["ttlSecondsAfterFinished"] == 3600


def test_given_a_request_answered_when_recorded_then_the_snapshot_names_the_request_it_answered():
    started = decide(body(ready_with(("v1", 1)), annotations={"mlops.dev/materialize": "retrain/bc/r3"}))
    done = decide(body(started.status, annotations={"mlops.dev/materialize": "retrain/bc/r3"}),
                  logic.World(job=JobObservation("fs-bc-v2", JobState.SUCCEEDED), bucket="mlops",
                              committed=committed("v2")))
    newest = done.status["versions"][-1]
    assert newest["version"] == "v2" and newest["trigger"] == "Request" and newest["request"] == "retrain/bc/r3"
    assert "request" not in done.status["versions"][0]  # v1 was not built for a request
