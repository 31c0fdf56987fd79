"""The shell every runtime Job entrypoint shares (trainer, materializer): one clear line per failure, an exit
code the operator's podFailurePolicy understands, and a compact JSON summary in the termination message.

Kubernetes keeps ``/dev/termination-log`` (at most 4 KiB) with the finished pod, which is how the operator
learns why a Job failed without reading logs; the same summary is printed to stdout for humans.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from typing import Any, Callable, Mapping

from mlops_operator.errors import InvalidInput  # noqa: F401  (re-exported: entrypoints import it from here)
from mlops_operator.providers.storage import AccessDenied, S3Uri, StorageError, StorageUnavailable, parse_s3_uri

# Exit codes the operator's podFailurePolicy and Job observation understand (2 and 4 fail the Job at once).
EXIT_OK, EXIT_INTERNAL, EXIT_INVALID_INPUT, EXIT_STORAGE, EXIT_TAKEN = 0, 1, 2, 3, 4
ENV_TERMINATION_LOG = "MLOPS_TERMINATION_LOG"
ENV_OWNER = "MLOPS_OWNER"          # {"namespace", "kind", "name", "uid"} of the object the Job works for
ENV_SPEC_HASH = "MLOPS_SPEC_HASH"  # the hash of the spec the version is built from (recorded in the manifest)
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


def parse_json_object(raw: str, env_name: str, what: str) -> dict[str, Any]:
    """``raw`` (an environment variable's value) as a JSON object, else InvalidInput naming the variable."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{env_name} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{env_name} must be a JSON object ({what})")
    return data


def classify(exc: BaseException, specific: tuple[tuple[type, int, str], ...] = ()) -> tuple[int, str]:
    """(exit code, reason) of a failure: an entrypoint's own exceptions first, then the shared ones."""
    for kind, code, reason in (*specific, (InvalidInput, EXIT_INVALID_INPUT, "InvalidInput"),
                               (AccessDenied, EXIT_STORAGE, "AccessDenied"),
                               (StorageUnavailable, EXIT_STORAGE, "StorageUnavailable"),
                               (StorageError, EXIT_STORAGE, "StorageError")):
        if isinstance(exc, kind):
            return code, reason
    return EXIT_INTERNAL, "InternalError"


def env_prefix(env: Mapping[str, str], name: str) -> S3Uri:
    """The s3:// prefix in environment variable ``name`` (with a key below the bucket), else InvalidInput."""
    try:
        prefix = parse_s3_uri(env[name]).as_prefix()
    except ValueError as exc:
        raise InvalidInput(f"{name}: {exc}") from exc
    if not prefix.key:
        raise InvalidInput(f"{name} needs a key below the bucket")
    return prefix


def env_owner(env: Mapping[str, str]) -> tuple[dict[str, str] | None, str | None]:
    """(owner, spec hash) the operator passes so the manifest records who committed the version, from what."""
    raw = env.get(ENV_OWNER)
    if not raw:
        return None, env.get(ENV_SPEC_HASH) or None
    owner = parse_json_object(raw, ENV_OWNER, "the owning object")
    missing = [k for k in ("namespace", "kind", "name") if not isinstance(owner.get(k), str) or not owner[k]]
    if missing:
        raise InvalidInput(f"{ENV_OWNER} lacks {', '.join(missing)}")
    return {k: str(v) for k, v in owner.items() if k in ("namespace", "kind", "name", "uid")}, \
        env.get(ENV_SPEC_HASH) or None


def _write(path: str, data: bytes) -> None:
    try:
        with open(path, "wb") as fh:
            fh.write(data)
    except OSError:
        pass  # not in a pod (or not writable): the summary is in the logs too


def run_job(work: Callable[[], Mapping[str, Any]], outcome: Callable[[BaseException], tuple[int, str]],
            failure: Callable[[str, str, int, BaseException], Mapping[str, Any]],
            compact: Callable[[Mapping[str, Any]], bytes]) -> int:
    """Run ``work``; map any exception to (exit code, reason) with ``outcome`` and a summary with ``failure``."""
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(message)s")
    termination_log = os.environ.get(ENV_TERMINATION_LOG, DEFAULT_TERMINATION_LOG)
    try:
        summary = work()
    except Exception as exc:  # every failure leaves one clear line and an exit code
        code, reason = outcome(exc)
        message = " ".join(str(exc).split())
        if code == EXIT_INTERNAL:
            traceback.print_exc(file=sys.stderr)
        print(f"ERROR: {message}", file=sys.stderr, flush=True)
        _write(termination_log, compact(failure(reason, message, code, exc)))
        return code
    _write(termination_log, compact(summary))
    print(compact(summary).decode(), flush=True)
    return EXIT_OK
