"""Reading a training Job and its pods: which outcome, and a reason the user can act on."""

from __future__ import annotations

import json

import pytest

from mlops_operator.logic.jobs import JobState, observe_job, parse_termination, termination_text

pytestmark = pytest.mark.unit


def _job(*conditions: tuple[str, str], failed: int = 0, **status) -> dict:
    conds = [{"type": t, "status": "True", "reason": r, "lastTransitionTime": "2026-03-01T12:05:00Z",
              "message": f"job {r}"} for t, r in conditions]
    return {"spec": {"activeDeadlineSeconds": 1800},
            "status": {"startTime": "2026-03-01T12:00:00Z", "conditions": conds, "failed": failed, **status}}


def _pod(exit_code: int, message: str = "", reason: str = "Error", finished: str = "2026-03-01T12:04:00Z",
         container: str = "train") -> dict:
    term = {"exitCode": exit_code, "reason": reason, "message": message, "finishedAt": finished}
    return {"status": {"containerStatuses": [{"name": container, "state": {"terminated": term}}]}}


def _summary(message: str, code: int) -> str:
    return json.dumps({"result": "Failed", "reason": "X", "message": message, "exitCode": code})


def test_given_no_job_when_observed_then_missing():
    assert observe_job("j", None, []).state == JobState.MISSING


def test_given_running_job_when_observed_then_active_with_start_time():
    obs = observe_job("j", _job(active=1), [])
    assert obs.state == JobState.ACTIVE and obs.started_at == "2026-03-01T12:00:00Z" and obs.failed_attempts == 0


def test_given_complete_job_when_observed_then_succeeded_with_completion_time():
    obs = observe_job("j", _job(("SuccessCriteriaMet", "CompletionsReached"), ("Complete", "CompletionsReached"),
                                completionTime="2026-03-01T12:06:00Z"), [])
    assert obs.state == JobState.SUCCEEDED and obs.finished_at == "2026-03-01T12:06:00Z"


@pytest.mark.parametrize("code, reason", [
    (2, "InvalidTrainingInput"),
    (3, "StorageError"),
    (4, "ArtifactExists"),
    (1, "TrainingError"),
    (137, "TrainingError"),
])
def test_given_failed_job_when_observed_then_reason_from_exit_code_and_message_from_summary(code, reason):
    obs = observe_job("j", _job(("Failed", "PodFailurePolicy")), [_pod(code, _summary(f"boom {code}", code))])
    assert obs.state == JobState.FAILED
    assert (obs.reason, obs.exit_code, obs.message) == (reason, code, f"boom {code}")
    assert obs.finished_at == "2026-03-01T12:05:00Z"


def test_given_deadline_exceeded_when_observed_then_timeout_whatever_the_pods_said():
    obs = observe_job("j", _job(("Failed", "DeadlineExceeded")), [_pod(137, reason="Error")])
    assert obs.reason == "Timeout" and "1800s" in obs.message


def test_given_oom_killed_container_when_observed_then_out_of_memory():
    obs = observe_job("j", _job(("Failed", "BackoffLimitExceeded")), [_pod(137, reason="OOMKilled")])
    assert obs.reason == "OutOfMemory" and "memory" in obs.message


def test_given_several_attempts_when_observed_then_the_latest_termination_counts():
    pods = [_pod(3, _summary("s3 down", 3), finished="2026-03-01T12:01:00Z"),
            _pod(2, _summary("bad column", 2), finished="2026-03-01T12:03:00Z")]
    obs = observe_job("j", _job(("Failed", "PodFailurePolicy")), pods)
    assert (obs.reason, obs.message) == ("InvalidTrainingInput", "bad column")


def test_given_pods_already_gone_when_failed_then_job_message_is_used():
    obs = observe_job("j", _job(("Failed", "BackoffLimitExceeded")), [])
    assert obs.reason == "TrainingError" and obs.message == "job BackoffLimitExceeded"


def test_given_active_job_with_a_failed_attempt_when_observed_then_attempts_and_last_reason():
    obs = observe_job("j", _job(failed=1, active=1), [_pod(3, _summary("endpoint unreachable", 3))])
    assert obs.state == JobState.ACTIVE
    assert (obs.failed_attempts, obs.reason, obs.message) == (1, "StorageError", "endpoint unreachable")


def test_given_other_containers_when_observed_then_only_train_container_counts():
    obs = observe_job("j", _job(("Failed", "BackoffLimitExceeded")), [_pod(9, "sidecar", container="sidecar")])
    assert obs.exit_code is None


@pytest.mark.parametrize("raw, expected", [
    (None, ""),
    ("plain text\n", "plain text"),
    ('{"message": "from json"}', "from json"),
    ('{"error": "err field"}', "err field"),
    ('["not", "a", "dict"]', '["not", "a", "dict"]'),
])
def test_given_termination_message_when_read_then_human_part(raw, expected):
    assert termination_text(raw) == expected


def test_given_huge_termination_message_when_read_then_bounded():
    assert len(termination_text("x" * 10_000)) == 1024


def test_given_the_termination_message_then_only_a_json_object_is_a_summary():
    assert parse_termination('{"reason": "QualityCheckFailed"}') == {"reason": "QualityCheckFailed"}
    assert parse_termination("Traceback ...") is None and parse_termination(None) is None
    assert parse_termination("[1]") is None
