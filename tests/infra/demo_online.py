"""`make demo`'s online-features step: a FeatureSet keyed by customer id materializes its newest values per
entity into the online store (the local cluster's Redis); a version trained on its snapshot is served; the
deployment answers requests that name only entities, V1 and V2, with the snapshot's fitted transform applied
at serving; an entity whose newest values are past the TTL is refused with a message naming it.

Run by ``tests/infra/demo-features.sh`` (from ``demo.sh``) as ``python -m tests.infra.demo_online`` in the
repository root with the cluster's environment and DEMO_NS set. Reuses the e2e flow's source data
(tests/e2e/test_online_serving_e2e.py) and the loop step's waits.
"""

from __future__ import annotations

import json
import os
import sys
import time

import boto3
import httpx
from botocore.config import Config

from tests.conftest import kubectl
from tests.e2e import rollout_kit as kit
from tests.e2e.test_online_serving_e2e import STALE_IDS, online_featureset, put_csv, source_frame
from tests.infra.demo_loop import DemoFailed, apply, say, wait, wait_phase

FEATURESET, VERSION, DEPLOYMENT, MODEL = "demo-customers", "demo-customers-v1", "customers", "customers"


def s3_client():
    return boto3.client(
        "s3", endpoint_url=os.environ["S3_ENDPOINT_URL"], region_name=os.environ.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"], aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        config=Config(request_checksum_calculation="when_required", response_checksum_validation="when_required",
                      s3={"addressing_style": "path"}))


def online_state(ns: str) -> tuple[bool, str]:
    st = json.loads(kubectl("-n", ns, "get", "fs", FEATURESET, "-o", "json").stdout).get("status") or {}
    cond = next((c for c in st.get("conditions") or [] if c["type"] == "OnlineServing"), {})
    online = st.get("online") or {}
    return cond.get("status") == "True", (f"phase={st.get('phase') or '-'} OnlineServing={cond.get('reason') or '-'} "
                                          f"entities={online.get('entities', '-')}")


def deployment() -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": DEPLOYMENT},
            "spec": {"model": MODEL, "version": VERSION, "strategy": {"type": "Recreate"},
                     "serving": {"replicas": 1}, "progressDeadline": "5m"}}


def ask(base: str, v2: bool, entities: list[dict]) -> httpx.Response:
    path = f"/v2/models/{MODEL}/infer" if v2 else f"/v1/models/{MODEL}:predict"
    return httpx.post(base + path, json={"entities": entities}, timeout=10)


def main() -> int:
    ns = os.environ["DEMO_NS"]
    source = source_frame(time.time())
    uri = put_csv(s3_client(), os.environ["S3_BUCKET"], f"demo/{ns}/customers.csv", source)
    say(f"source: {len(source)} customers with id and event time at {uri} ({len(STALE_IDS)} of them two days old)")
    apply(ns, online_featureset(FEATURESET, uri))
    apply(ns, {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": VERSION},
               "spec": {"model": MODEL, "training": {
                   "featureSet": {"name": FEATURESET}, "estimator": "sklearn.linear_model.LogisticRegression",
                   "hyperparameters": {"max_iter": 500}, "metrics": ["accuracy"]}}})
    wait(f"FeatureSet {FEATURESET} published to the online store", lambda: online_state(ns), 300,
         f"kubectl -n {ns} describe fs {FEATURESET}")
    wait_phase(ns, "mv", VERSION, {"Ready"}, {"Ready", "Rejected", "Failed"}, 420)
    kubectl("-n", ns, "delete", "mdep", DEPLOYMENT, "--ignore-not-found", "--wait=true", "--timeout=120s", timeout=150)
    apply(ns, deployment())
    wait_phase(ns, "mdep", DEPLOYMENT, {"Succeeded"}, {"Succeeded", "Failed", "Degraded"}, 300)
    base = kit.service_url(ns, DEPLOYMENT)
    kit.wait_ready(base, timeout=30)
    entities = [{"id": 10}, {"id": 42}, {"id": 77}]
    for v2 in (False, True):
        got = ask(base, v2, entities)
        if got.status_code != 200:
            raise DemoFailed(f"entity request answered {got.status_code}: {got.text}. Next: "
                             f"kubectl -n {ns} describe mdep {DEPLOYMENT}")
        say(f"{'V2' if v2 else 'V1'} {json.dumps({'entities': entities})} -> {got.text}")
    stale = ask(base, False, [{"id": STALE_IDS[0]}])
    say(f"an entity past the 1h TTL -> {stale.status_code} {stale.text}")
    if stale.status_code != 422:
        raise DemoFailed(f"a stale entity was answered {stale.status_code}, not refused")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DemoFailed as failed:
        print(f"demo failed: {failed}", file=sys.stderr)
        sys.exit(1)
