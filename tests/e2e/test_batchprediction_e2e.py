"""BatchPrediction on the real cluster: scoring Jobs write verified, never-overwritten outputs to MinIO.

A scheduled BatchPrediction (every minute) scores a Parquet file twice into two run prefixes; the first run's
committed bytes are unchanged after the second; predictions equal the registered model's ``predict`` on
the same rows, in-process. The same names in a second namespace (a FeatureSet snapshot scored by a model
trained on it, run once per spec and again on request) write under that namespace's prefix only. A missing
ModelVersion and an unreadable dataset each become a condition with a reason and an event, not a crash.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_iris

from tests.conftest import kubectl
from tests.e2e.conftest import wait_for_phase
from tests.e2e.test_tenancy_e2e import FEATURESET, apply, events, get, read_committed, wait_event

pytestmark = pytest.mark.e2e


TRAINING = {"estimator": "sklearn.linear_model.LogisticRegression", "hyperparameters": {"max_iter": 5000},
            "metrics": ["accuracy"]}


def model_version(name: str, training: dict) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name},
            "spec": {"model": "breast-cancer", "training": {**TRAINING, **training},
                     "gates": {"minMetrics": {"accuracy": 0.8}}}}


def batch(name: str, model: str, inp: dict, **spec) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "BatchPrediction", "metadata": {"name": name},
            "spec": {"modelVersion": model, "input": inp, **spec}}


def rows_frame() -> pd.DataFrame:
    frame = load_breast_cancer(as_frame=True).data
    frame.insert(0, "id", np.arange(7000, 7000 + len(frame)))
    return frame


def put_rows(s3_client, bucket: str, frame: pd.DataFrame, suffix: str = "parquet") -> str:
    key = f"e2e-batch/{uuid.uuid4().hex}/rows.{suffix}"
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    s3_client.put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
    return f"s3://{bucket}/{key}"


def wait_status(ns: str, name: str, until, timeout: float = 300) -> dict:
    deadline, st = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        st = get(ns, "batchprediction", name).get("status") or {}
        if until(st):
            return st
        time.sleep(1)
    logs = kubectl("-n", "mlops-system", "logs", "deployment/mlops-operator", "--tail=30", check=False).stdout
    raise AssertionError(f"BatchPrediction {ns}/{name}: condition not met in {timeout}s; status={st}\n{logs}")


def succeeded(st: dict) -> list[dict]:
    return [r for r in st.get("runs") or [] if r.get("result") == "Succeeded"]


def condition(st: dict, type_: str) -> dict:
    return next((c for c in st.get("conditions") or [] if c["type"] == type_), {})


def predictions(s3_client, uri: str) -> tuple[pd.DataFrame, dict, dict[str, bytes]]:
    """Every part of a committed run (each checked against the manifest's sha256), in order; and run.json."""
    manifest, files = read_committed(s3_client, uri)
    run = json.loads(files["run.json"])
    parts = [pd.read_parquet(io.BytesIO(files[p["name"]])) for p in run["parts"]]
    return pd.concat(parts, ignore_index=True), manifest, files


def model_of(s3_client, ns: str, mv: str):
    artifact = get(ns, "mv", mv)["status"]["artifact"]
    _, files = read_committed(s3_client, artifact["uri"])
    return joblib.load(io.BytesIO(files["model.joblib"]))


def test_given_a_scheduled_batchprediction_then_two_runs_are_written_verified_and_never_overwritten(
        user_namespace, second_namespace, s3_client, s3_env):
    ns, other = user_namespace, second_namespace
    apply(ns, model_version("bc-v1", {"dataset": {"builtin": "breast_cancer"}}))
    apply(other, FEATURESET)
    apply(other, model_version("bc-v1", {"featureSet": {"name": "bc-features"}}))
    rows = rows_frame()
    uri = put_rows(s3_client, s3_env["S3_BUCKET"], rows)
    for n in (ns, other):
        assert wait_for_phase(n, "mv", "bc-v1", {"Ready", "Rejected", "Failed"}, 420)["status"]["phase"] == "Ready"
    apply(ns, batch("score", "bc-v1", {"uri": uri}, schedule="* * * * *", passthrough=["id"], chunkRows=200))
    apply(other, batch("score", "bc-v1", {"featureSet": {"name": "bc-features"}}, chunkRows=100))

    # The other namespace: no schedule, so the spec's generation runs once, on the FeatureSet snapshot.
    st_b = wait_status(other, "score", lambda s: s.get("phase") in ("Succeeded", "Failed"), 300)
    assert st_b["phase"] == "Succeeded" and st_b["runs"][-1]["trigger"] == "SpecChanged", st_b
    assert st_b["lastOutputUri"].endswith(f"/predictions/{other}/score/{st_b['runs'][-1]['run']}/")
    out_b, manifest_b, _ = predictions(s3_client, st_b["lastOutputUri"])
    assert manifest_b["owner"]["namespace"] == other and manifest_b["owner"]["kind"] == "BatchPrediction"
    snapshot = get(other, "fs", "bc-features")["status"]["versions"][-1]
    _, snap_files = read_committed(s3_client, snapshot["uri"])
    snap = pd.read_parquet(io.BytesIO(snap_files["data.parquet"]))
    pipeline = model_of(s3_client, other, "bc-v1")  # the snapshot's fitted transform, then the estimator
    assert len(out_b) == len(snap) == st_b["rowsScored"] == 569 and len(manifest_b["files"]) == 7  # 6 parts + run.json
    np.testing.assert_array_equal(out_b["__row__"].to_numpy(), snap["__row__"].to_numpy())
    np.testing.assert_array_equal(out_b["prediction"].to_numpy(), pipeline.predict(snap[list(pipeline.feature_names_in_)]))
    # Re-run on request: a new run id, a new prefix; the first run's output stays as it was.
    kubectl("-n", other, "annotate", "batchprediction", "score", "mlops.dev/run=again")
    st_b2 = wait_status(other, "score", lambda s: len(succeeded(s)) >= 2 or s.get("phase") == "Failed")
    assert [r["run"] for r in succeeded(st_b2)][-1].startswith("r-again"), st_b2
    assert read_committed(s3_client, st_b["lastOutputUri"])[0] == manifest_b

    # The scheduled one: two slots, two runs, two prefixes under this namespace.
    st = wait_status(ns, "score", lambda s: len(succeeded(s)) >= 1 or s.get("phase") == "Failed", 200)
    first = succeeded(st)[0]
    assert first["trigger"] == "Schedule" and first["run"].startswith("t-"), st
    out1, manifest1, files1 = predictions(s3_client, first["outputUri"])
    st = wait_status(ns, "score", lambda s: len(succeeded(s)) >= 2 or s.get("phase") == "Failed", 200)
    second = succeeded(st)[1]
    assert second["run"] != first["run"] and second["outputUri"] != first["outputUri"], st
    assert all(f"/predictions/{ns}/score/" in r["outputUri"] for r in (first, second))
    out2, manifest2, _ = predictions(s3_client, second["outputUri"])
    again, files_again = read_committed(s3_client, first["outputUri"])
    assert again == manifest1 and files_again == files1  # never overwritten
    assert manifest1["owner"]["namespace"] == ns and manifest2["attempt"] != manifest1["attempt"]
    model = model_of(s3_client, ns, "bc-v1")
    expected = model.predict(rows[list(model.feature_names_in_)])
    assert set(expected) == {0, 1}
    for out in (out1, out2):
        assert list(out.columns) == ["id", "prediction"] and len(out) == 569
        np.testing.assert_array_equal(out["id"].to_numpy(), rows["id"].to_numpy())
        np.testing.assert_array_equal(out["prediction"].to_numpy(), expected)
    assert condition(st, "Ready")["status"] == "True" and st["nextScheduledAt"], st
    assert {"Scoring", "Scored"} <= events(ns, "score")


def test_given_bad_inputs_then_conditions_with_reasons_and_events_and_a_later_model_version_is_picked_up(
        user_namespace, s3_client, s3_env):
    ns = user_namespace
    rows = rows_frame()
    uri = put_rows(s3_client, s3_env["S3_BUCKET"], rows)
    apply(ns, batch("waits", "bc-later", {"uri": uri}))
    st = wait_status(ns, "waits", lambda s: condition(s, "Ready").get("reason") == "ModelVersionNotFound", 120)
    assert st["phase"] == "Pending" and "bc-later" in condition(st, "Ready")["message"], st
    assert condition(st, "InvalidSpec")["status"] == "True"
    wait_event(ns, "waits", "ModelVersionNotFound")
    assert kubectl("-n", ns, "get", "jobs", "-l", "mlops.dev/batchprediction=waits", "-o", "name").stdout.strip() == ""

    apply(ns, model_version("bc-later", {"dataset": {"builtin": "breast_cancer"}}))
    assert wait_for_phase(ns, "mv", "bc-later", {"Ready", "Rejected", "Failed"}, 420)["status"]["phase"] == "Ready"
    apply(ns, batch("unreadable", "bc-later", {"uri": f"s3://{s3_env['S3_BUCKET']}/e2e-batch/{uuid.uuid4().hex}/none.csv"}))
    st = wait_status(ns, "unreadable", lambda s: s.get("phase") in ("Succeeded", "Failed"), 240)
    assert st["phase"] == "Failed" and condition(st, "Ready")["reason"] == "DatasetUnreadable", st
    assert "none.csv" in st["runs"][-1]["message"] and "lastOutputUri" not in st, st
    wait_event(ns, "unreadable", "DatasetUnreadable")

    # The reference appeared: the waiting object runs by itself (level-triggered), no re-apply.
    st = wait_status(ns, "waits", lambda s: s.get("phase") in ("Succeeded", "Failed"), 240)
    assert st["phase"] == "Succeeded" and st["rowsScored"] == 569, st
    assert condition(st, "InvalidSpec")["status"] == "False"


BIG_ROWS, BIG_PIECE, CHUNK, MEMORY_LIMIT_MIB = 40_000_000, 4_000_000, 100_000, 640


def iris_rows(start: int, count: int) -> pd.DataFrame:
    """Rows ``start`` .. ``start+count`` of a deterministic large input for an iris model (one decimal: the
    file stays small, the rows in memory do not)."""
    rng = np.random.default_rng(start)
    frame = pd.DataFrame({c: np.round(rng.uniform(0, 8, count), 1) for c in load_iris(as_frame=True).data.columns})
    frame.insert(0, "id", np.arange(start, start + count))
    return frame


def committed_file(s3_client, uri: str, manifest: dict, name: str) -> bytes:
    """One committed file of the version at ``uri``, checked against the manifest's sha256 here."""
    bucket, key = uri[len("s3://"):].split("/", 1)
    data = s3_client.get_object(Bucket=bucket, Key=f"{key}{manifest['attempt']}/{name}")["Body"].read()
    assert hashlib.sha256(data).hexdigest() == manifest["files"][name]["sha256"], (uri, name)
    return data


def delete_prefix(s3_client, bucket: str, prefix: str) -> None:
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3_client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def test_given_an_input_larger_than_the_jobs_memory_limit_then_scored_chunk_by_chunk_without_oom(
        user_namespace, s3_client, s3_env, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    ns, bucket = user_namespace, s3_env["S3_BUCKET"]
    apply(ns, model_version("iris-v1", {"dataset": {"builtin": "iris"}}))
    path, key, in_memory = tmp_path / "big.parquet", f"e2e-batch/{uuid.uuid4().hex}/big.parquet", 0
    with pq.ParquetWriter(path, pa.Schema.from_pandas(iris_rows(0, 1), preserve_index=False)) as writer:
        for start in range(0, BIG_ROWS, BIG_PIECE):  # written piece by piece: the test holds one piece at a time
            piece = iris_rows(start, BIG_PIECE)
            in_memory += int(piece.memory_usage(index=False, deep=True).sum())
            writer.write_table(pa.Table.from_pandas(piece, preserve_index=False), row_group_size=250_000)
    s3_client.upload_file(str(path), bucket, key)
    path.unlink()
    assert in_memory > 2 * MEMORY_LIMIT_MIB * 2**20, in_memory  # the rows would not fit the container twice over
    try:
        assert wait_for_phase(ns, "mv", "iris-v1", {"Ready", "Rejected", "Failed"}, 420)["status"]["phase"] == "Ready"
        limits = {"memory": f"{MEMORY_LIMIT_MIB}Mi", "cpu": "1"}
        apply(ns, batch("big", "iris-v1", {"uri": f"s3://{bucket}/{key}"}, passthrough=["id"], chunkRows=CHUNK,
                        resources={"limits": limits, "requests": {"memory": limits["memory"]}}))
        st = wait_status(ns, "big", lambda s: s.get("phase") in ("Succeeded", "Failed"), 420)
        [job] = json.loads(kubectl("-n", ns, "get", "jobs", "-l", "mlops.dev/batchprediction=big", "-o", "json").stdout)["items"]
        assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == limits["memory"]
        pods = json.loads(kubectl("-n", ns, "get", "pods", "-l", f"job-name={job['metadata']['name']}", "-o",
                                  "json").stdout)["items"]
        states = [s.get("state") or {} for p in pods for s in (p.get("status") or {}).get("containerStatuses") or []]
        assert pods and all((s.get("terminated") or {}).get("reason") == "Completed" for s in states), states
        assert st["phase"] == "Succeeded" and st["rowsScored"] == BIG_ROWS, st
        uri = st["lastOutputUri"]
        manifest = json.loads(s3_client.get_object(Bucket=bucket, Key=uri[len(f"s3://{bucket}/"):] + "manifest.json")[
            "Body"].read())
        run = json.loads(committed_file(s3_client, uri, manifest, "run.json"))
        assert len(run["parts"]) == BIG_ROWS // CHUNK and {p["rows"] for p in run["parts"]} == {CHUNK}
        assert len(manifest["files"]) == len(run["parts"]) + 1
        # The first and the last part: predicted exactly as the registered model does in-process.
        model = model_of(s3_client, ns, "iris-v1")
        for index, start in ((0, 0), (-1, BIG_ROWS - CHUNK)):
            part = pd.read_parquet(io.BytesIO(committed_file(s3_client, uri, manifest, run["parts"][index]["name"])))
            piece_start = start - start % BIG_PIECE
            rows = iris_rows(piece_start, BIG_PIECE).iloc[start - piece_start:start - piece_start + CHUNK]
            np.testing.assert_array_equal(part["id"].to_numpy(), rows["id"].to_numpy())
            np.testing.assert_array_equal(part["prediction"].to_numpy(), model.predict(rows[list(model.feature_names_in_)]))
    finally:
        delete_prefix(s3_client, bucket, key)
        delete_prefix(s3_client, bucket, f"predictions/{ns}/big/")
