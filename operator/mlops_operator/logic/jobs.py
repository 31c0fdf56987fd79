"""What a Job and its pods say about a training run, reduced to one observation.

Pure: the inputs are the Job and Pod objects as the API returns them (plain dicts), so every outcome is
tested with literal dicts. The trainer's contract decides the mapping: exit code 2 = invalid input,
3 = storage error, 4 = the version already exists; its JSON summary in ``/dev/termination-log`` carries
the message. A Job that hit ``activeDeadlineSeconds`` is a timeout whatever its pods said.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any, Iterable, Mapping

from mlops_operator.api.v1alpha1.pod import PodOverrides

EXIT_INVALID_INPUT = 2
EXIT_STORAGE_ERROR = 3
EXIT_ALREADY_EXISTS = 4
MAX_MESSAGE = 1024  # a condition message must stay readable in `kubectl describe`

_REASON_BY_EXIT = {
    EXIT_INVALID_INPUT: "InvalidTrainingInput",
    EXIT_STORAGE_ERROR: "StorageError",
    EXIT_ALREADY_EXISTS: "ArtifactExists",
}


@dataclass(frozen=True)
class JobSettings:
    """Operator configuration every runtime Job (training, materializing) is built from."""

    image: str
    s3_secret: str
    image_pull_policy: str = "IfNotPresent"
    backoff_limit: int = 1
    default_timeout: str = "1h"  # activeDeadlineSeconds of a Job whose spec names no timeout
    # spec.ttlSecondsAfterFinished; None = finished Jobs stay (the record of what ran) until their owner goes
    ttl_seconds_after_finished: int | None = None
    pod_defaults: PodOverrides | None = None  # chart value podDefaults: under each resource's own pod block
    online_store_url: str = ""  # the online feature store materialize Jobs write to ("" = none)
    online_store_secret: str = "mlops-redis"  # its password's Secret (key REDIS_PASSWORD) in each namespace


class JobState(str, Enum):
    MISSING = "Missing"      # not created yet, or deleted by someone
    ACTIVE = "Active"        # pods pending or running, retries left
    SUCCEEDED = "Succeeded"  # condition Complete=True
    FAILED = "Failed"        # condition Failed=True (terminal; no more retries)


@dataclass(frozen=True)
class JobObservation:
    """The training Job as the ModelVersion logic needs it."""

    name: str
    state: JobState
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    failed_attempts: int = 0  # pods that failed so far (an ACTIVE Job may be retrying)


def _condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cond
    return None


def termination_text(raw: str | None) -> str:
    """The human part of the trainer's termination summary (JSON), else the raw text, bounded."""
    if not raw:
        return ""
    text = raw.strip()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        for key in ("message", "error", "detail"):
            if isinstance(doc.get(key), str) and doc[key]:
                text = doc[key]
                break
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def parse_termination(raw: str | None) -> dict[str, Any] | None:
    """A runtime Job's termination summary (JSON object), or None when absent or not JSON."""
    try:
        doc = json.loads(raw or "")
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def last_termination(pods: Iterable[Mapping[str, Any]], container: str) -> Mapping[str, Any] | None:
    """The most recent terminated state of ``container`` across the Job's pods (retries make several)."""
    found: list[Mapping[str, Any]] = []
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") != container:
                continue
            state = (status.get("state") or {}).get("terminated") or (status.get("lastState") or {}).get("terminated")
            if state:
                found.append(state)
    return max(found, key=lambda s: s.get("finishedAt") or "") if found else None


def observe_job(name: str, job: Mapping[str, Any] | None, pods: Iterable[Mapping[str, Any]],
                container: str = "train") -> JobObservation:
    """Reduce a Job and its pods to one observation with a reason a user can act on."""
    if job is None:
        return JobObservation(name=name, state=JobState.MISSING)
    status = job.get("status") or {}
    started = status.get("startTime")
    if complete := _condition(job, "Complete"):
        return JobObservation(name=name, state=JobState.SUCCEEDED, started_at=started,
                              finished_at=status.get("completionTime") or complete.get("lastTransitionTime"))
    failed = _condition(job, "Failed")
    if failed is None:
        attempts = int(status.get("failed") or 0)
        if not attempts:
            return JobObservation(name=name, state=JobState.ACTIVE, started_at=started)
        reason, code, text = _failure(last_termination(pods, container))
        return JobObservation(name=name, state=JobState.ACTIVE, started_at=started, failed_attempts=attempts,
                              reason=reason, exit_code=code, message=text)
    finished = failed.get("lastTransitionTime")
    if failed.get("reason") == "DeadlineExceeded":
        return JobObservation(name=name, state=JobState.FAILED, reason="Timeout", started_at=started,
                              finished_at=finished, message=f"training exceeded its timeout "
                              f"({job.get('spec', {}).get('activeDeadlineSeconds')}s) and was stopped")
    reason, code, text = _failure(last_termination(pods, container))
    return JobObservation(name=name, state=JobState.FAILED, reason=reason, exit_code=code, started_at=started,
                          finished_at=finished, message=text or failed.get("message") or "training Job failed")


def _failure(term: Mapping[str, Any] | None) -> tuple[str, int | None, str]:
    """(reason, exit code, message) of one terminated training container; pods may already be gone."""
    if term is None:
        return "TrainingError", None, ""
    code = term.get("exitCode")
    text = termination_text(term.get("message"))
    if term.get("reason") == "OOMKilled":
        return "OutOfMemory", code, text or "the training container ran out of memory; raise its memory limit"
    return _REASON_BY_EXIT.get(code, "TrainingError"), code, text or f"trainer exited with code {code}"
