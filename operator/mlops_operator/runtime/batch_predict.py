"""``mlops-batch-predict``: score one BatchPrediction run and commit it to S3. Runs as the scoring Job.

Environment (set by the operator's Job builder, ``builders.batchprediction``):

==============================  ======================================================================
``MLOPS_BATCH_RUN``             the run id (names the output prefix)
``MLOPS_BATCH_OUTPUT_PREFIX``   ``s3://<bucket>/predictions/<namespace>/<name>/<run>/``
``MLOPS_BATCH_MODEL_URI``       the ModelVersion's artifact prefix
``MLOPS_BATCH_MODEL_SHA256``    the registry's sha256 (of the manifest or of model.joblib)
``MLOPS_BATCH_MODEL_VERSION``   the ModelVersion's name (recorded in run.json)
``MLOPS_BATCH_INPUT``           ``{"uri", "format"?}`` or ``{"snapshotUri", "featureSet", "version", ...}``
``MLOPS_BATCH_PASSTHROUGH``     JSON list of input columns copied next to each prediction
``MLOPS_BATCH_CHUNK_ROWS``      rows scored at a time
``MLOPS_OWNER``, ``MLOPS_SPEC_HASH``, ``S3_*``/``AWS_*``: as the materializer
==============================  ======================================================================

The model is loaded exactly as the model server loads it (``serve_model.ArtifactSource``: every file
verified against the manifest and the registry's sha256 before anything is unpickled). A model trained on
a FeatureSet is a pipeline whose first step is the snapshot's fitted transform, so raw rows — a dataset's,
or a snapshot's ``data.parquet`` (verified against its manifest) — go through the same fitted transform
as in training and serving.

Bounded memory: the input is streamed to ``/tmp`` (hashed on the way), then read ``chunkRows`` rows at a
time (pyarrow record batches); each chunk's predictions are uploaded as ``part-NNNNN.parquet`` under the
run's attempt directory before the next chunk is read. ``run.json`` (rows per part, model, input and its
sha256) and then ``manifest.json`` (the commit, conditional) come last.

Exit codes: ``0`` committed, or the prefix already holds this object's output of the same spec (reported
unchanged: a committed run is never written again); ``2`` invalid input (reason ``DatasetUnreadable`` for a
dataset that cannot be read, ``MissingColumns``, ``InvalidInput``, ``ModelIntegrity``); ``3`` storage error;
``4`` reason ``RunTaken``: the prefix holds another spec's output; ``1`` a bug.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import pandas as pd

from mlops_operator.providers.storage import (
    AlreadyExistsError,
    ArtifactStore,
    IntegrityError,
    ObjectNotFound,
    S3Uri,
    same_owner,
)
from mlops_operator.runtime.job_main import (
    EXIT_INVALID_INPUT,
    EXIT_TAKEN,
    InvalidInput,
    classify,
    env_owner,
    env_prefix,
    parse_json_object,
    run_job,
)
from mlops_operator.runtime.serve_model import ArtifactSource
from mlops_operator.runtime.train_artifacts import TERMINATION_LOG_LIMIT, to_json
from mlops_operator.runtime.train_data import format_by_name
from mlops_operator.timeutil import iso_utc

log = logging.getLogger("mlops.batch")

RUN_FILE = "run.json"
SNAPSHOT_DATA = "data.parquet"
PREDICTION = "prediction"
READ_BUFFER = 1 << 20  # bytes read at a time from the downloaded input
ENV = ("MLOPS_BATCH_RUN", "MLOPS_BATCH_OUTPUT_PREFIX", "MLOPS_BATCH_MODEL_URI", "MLOPS_BATCH_INPUT")

Clock = Callable[[], datetime]


class DatasetUnreadable(InvalidInput):
    """The input file is missing or is not parquet/csv."""


class MissingColumns(InvalidInput):
    """The input lacks columns the model (or passthrough) needs."""


class RunTaken(Exception):
    """The run's prefix holds output committed by another object or from another spec."""


@dataclass(frozen=True)
class BatchConfig:
    run: str
    prefix: S3Uri
    model_uri: str
    model_sha256: str | None
    model_version: str
    input: Mapping[str, Any]
    passthrough: tuple[str, ...]
    chunk_rows: int
    owner: Mapping[str, str] | None = None
    spec_hash: str | None = None


def load_config(env: Mapping[str, str] | None = None) -> BatchConfig:
    env = os.environ if env is None else env
    missing = [n for n in ENV if not env.get(n)]
    if missing:
        raise InvalidInput(f"missing environment variable(s): {', '.join(missing)}")
    inp = parse_json_object(env["MLOPS_BATCH_INPUT"], "MLOPS_BATCH_INPUT", "the input")
    if ("uri" in inp) == ("snapshotUri" in inp):
        raise InvalidInput("MLOPS_BATCH_INPUT needs exactly one of uri or snapshotUri")
    try:
        passthrough = json.loads(env.get("MLOPS_BATCH_PASSTHROUGH") or "[]")
        chunk_rows = int(env.get("MLOPS_BATCH_CHUNK_ROWS") or "10000")
    except ValueError as exc:
        raise InvalidInput(f"MLOPS_BATCH_PASSTHROUGH / MLOPS_BATCH_CHUNK_ROWS: {exc}") from exc
    if not isinstance(passthrough, list) or not all(isinstance(c, str) for c in passthrough) or chunk_rows < 1:
        raise InvalidInput("MLOPS_BATCH_PASSTHROUGH must be a list of column names and chunk rows >= 1")
    owner, spec_hash = env_owner(env)
    return BatchConfig(env["MLOPS_BATCH_RUN"], env_prefix(env, "MLOPS_BATCH_OUTPUT_PREFIX"), env["MLOPS_BATCH_MODEL_URI"],
                       env.get("MLOPS_BATCH_MODEL_SHA256") or None, env.get("MLOPS_BATCH_MODEL_VERSION") or "",
                       inp, tuple(passthrough), chunk_rows, owner, spec_hash)


# ------------------------------------------------------------------------------------------------ input


def _format_of(inp: Mapping[str, Any]) -> str:
    if "snapshotUri" in inp:
        return "parquet"
    fmt = format_by_name(str(inp["uri"]), inp.get("format"))
    if fmt not in ("parquet", "csv"):
        raise InvalidInput(f"input.format is required: cannot tell parquet from csv by the name {inp['uri']!r}")
    return str(fmt)


def fetch_input(store: ArtifactStore, inp: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Stream the input into ``path``; its lineage ``{uri|featureSet, version, sha256}``."""
    if "snapshotUri" in inp:
        prefix = str(inp["snapshotUri"])
        manifest = store.read_manifest(prefix)
        store.download_verified(prefix, SNAPSHOT_DATA, manifest, path)
        return {"featureSet": inp.get("featureSet"), "version": inp.get("version"), "uri": prefix,
                "sha256": manifest["files"][SNAPSHOT_DATA]["sha256"]}
    try:
        _, digest = store.download(str(inp["uri"]), path)
    except (ValueError, ObjectNotFound) as exc:
        raise DatasetUnreadable(f"input.uri: {exc}") from exc
    return {"uri": str(inp["uri"]), "format": _format_of(inp), "sha256": digest}


def read_chunks(path: str, fmt: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The rows of ``path``, at most ``chunk_rows`` at a time (never the whole file in memory)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if fmt == "parquet":
            # pre_buffer (pyarrow's default) caches the column chunks it read ahead for the whole file: memory
            # would grow with the input. A buffered stream reads one row group's pages at a time instead.
            source = pq.ParquetFile(path, pre_buffer=False, buffer_size=READ_BUFFER)
            batches: Iterator[pa.RecordBatch] = source.iter_batches(batch_size=chunk_rows)
        else:
            batches = iter(pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=4 * 1024 * 1024)))
        for batch in batches:
            for start in range(0, batch.num_rows, chunk_rows):
                yield batch.slice(start, chunk_rows).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise DatasetUnreadable(f"cannot read the input as {fmt}: {type(exc).__name__}: {exc}") from exc


# ------------------------------------------------------------------------------------------------ model


def feature_names(estimator: Any, reference: Mapping[str, Any] | None) -> list[str] | None:
    """The input columns the model takes, in order: fitted names, else the training reference's."""
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is not None:
        return [str(n) for n in fitted]
    if reference and isinstance(reference.get("features"), dict):
        return [str(n) for n in reference["features"]]
    return None


def predict_chunk(estimator: Any, names: list[str] | None, frame: pd.DataFrame,
                  passthrough: tuple[str, ...]) -> pd.DataFrame:
    """``passthrough`` columns plus ``prediction`` for one chunk of rows."""
    wanted = names if names is not None else [c for c in frame.columns if c not in passthrough]
    absent = [c for c in [*wanted, *passthrough] if c not in frame.columns]
    if absent:
        raise MissingColumns(f"input lacks column(s) {', '.join(repr(c) for c in absent[:10])}; "
                             f"it has {', '.join(repr(str(c)) for c in list(frame.columns)[:10])}")
    features: Any = frame[wanted] if names is not None else frame[wanted].to_numpy(dtype=np.float64)
    try:
        y = np.asarray(estimator.predict(features))
    except (ValueError, TypeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InvalidInput(f"the model cannot score these rows: {reason}") from exc
    out = frame[list(passthrough)].reset_index(drop=True).copy()
    out[PREDICTION] = y
    return out


def _parquet(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False, engine="pyarrow")
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------- run


def _summary(cfg: BatchConfig, run: Mapping[str, Any], existing: bool) -> dict[str, Any]:
    return {"ok": True, "run": cfg.run, "uri": str(cfg.prefix), "rows": run.get("rows"),
            "files": len(run.get("parts") or []), "existing": existing}


def existing_run(cfg: BatchConfig, store: ArtifactStore) -> dict[str, Any]:
    """The committed output at the prefix if this object committed it from the same spec; else RunTaken."""
    try:
        manifest = store.read_manifest(cfg.prefix)
        run = json.loads(store.fetch_verified(cfg.prefix, RUN_FILE, manifest))
    except (IntegrityError, ValueError) as exc:
        raise RunTaken(f"{cfg.prefix} already holds something that is not a valid run ({exc})") from exc
    if cfg.owner is not None and not same_owner(manifest, cfg.owner):
        raise RunTaken(f"{cfg.prefix} already holds a run committed by {manifest.get('owner') or 'another writer'}")
    if manifest.get("specHash") != cfg.spec_hash:
        raise RunTaken(f"{cfg.prefix} already holds run {cfg.run} of another spec; request a new run id "
                       "(a new mlops.dev/run value)")
    log.info("%s is already committed by this BatchPrediction: reported unchanged (never rewritten)", cfg.prefix)
    return _summary(cfg, run, existing=True)


def score(cfg: BatchConfig, store: ArtifactStore, now: Clock = lambda: datetime.now(UTC),
          scratch: str | None = None) -> dict[str, Any]:
    """Score and commit one run; return the success summary."""
    if store.has_manifest(cfg.prefix):  # a retried Job: its output is committed already
        return existing_run(cfg, store)
    started = now()
    try:
        loaded = ArtifactSource(store, cfg.model_uri, cfg.model_sha256).fetch()
    except IntegrityError as exc:
        raise ModelIntegrity(str(exc)) from exc
    names = feature_names(loaded.estimator, loaded.reference)
    log.info("model %s loaded from %s (%s input columns)", cfg.model_version, cfg.model_uri,
             len(names) if names is not None else "all")
    fmt = _format_of(cfg.input)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        path = os.path.join(tmp, f"input.{fmt}")
        lineage = fetch_input(store, cfg.input, path)
        log.info("input %s (%d bytes) downloaded", lineage["uri"], os.path.getsize(path))
        writer = store.begin_version(cfg.prefix)
        parts: list[dict[str, Any]] = []
        for index, frame in enumerate(read_chunks(path, fmt, cfg.chunk_rows)):
            out = predict_chunk(loaded.estimator, names, frame, cfg.passthrough)
            name = f"part-{index:05d}.parquet"
            writer.add(name, _parquet(out))
            parts.append({"name": name, "rows": len(out)})
            log.info("scored %s: %d rows", name, len(out))
    rows = sum(p["rows"] for p in parts)
    run = {"run": cfg.run, "owner": dict(cfg.owner or {}), "modelVersion": cfg.model_version,
           "model": {"uri": cfg.model_uri, "sha256": cfg.model_sha256}, "input": lineage,
           "passthrough": list(cfg.passthrough), "chunkRows": cfg.chunk_rows, "rows": rows, "parts": parts,
           "startedAt": iso_utc(started), "finishedAt": iso_utc(now())}
    writer.add(RUN_FILE, to_json(run))
    try:
        writer.commit(now(), owner=cfg.owner, spec_hash=cfg.spec_hash)
    except AlreadyExistsError:  # another attempt committed in between: report it if it is ours
        return existing_run(cfg, store)
    log.info("committed %s: %d rows in %d part(s)", cfg.prefix, rows, len(parts))
    return _summary(cfg, run, existing=False)


class ModelIntegrity(InvalidInput):
    """The model's files do not match their manifest or the registry's sha256: never unpickled."""


def compact(summary: Mapping[str, Any], limit: int = TERMINATION_LOG_LIMIT) -> bytes:
    doc = dict(summary)
    raw = json.dumps(doc, separators=(",", ":")).encode()
    if len(raw) > limit and "message" in doc:
        doc["message"] = doc["message"][: max(0, len(doc["message"]) - (len(raw) - limit) - 3)] + "..."
        raw = json.dumps(doc, separators=(",", ":")).encode()
    return raw


def outcome(exc: BaseException) -> tuple[int, str]:
    return classify(exc, ((DatasetUnreadable, EXIT_INVALID_INPUT, "DatasetUnreadable"),
                          (MissingColumns, EXIT_INVALID_INPUT, "MissingColumns"),
                          (ModelIntegrity, EXIT_INVALID_INPUT, "ModelIntegrity"),
                          (RunTaken, EXIT_TAKEN, "RunTaken")))


def main(argv: list[str] | None = None) -> int:
    return run_job(lambda: score(load_config(), ArtifactStore.from_settings()), outcome,
                   lambda reason, message, code, exc: {"ok": False, "reason": reason, "message": message[:3000],
                                                       "exitCode": code},
                   compact)


if __name__ == "__main__":
    sys.exit(main())
