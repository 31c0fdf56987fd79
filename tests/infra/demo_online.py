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
import uuid


from tests.conftest import make_s3_client
from tests.e2e.test_featureset_e2e import condition, fs_status
from tests.e2e.test_online_serving_e2e import STALE_IDS, online_featureset, post, put_csv, source_frame
from tests.infra.demo_loop import DemoFailed, apply, deploy, say, wait, wait_phase

DEPLOYMENT = MODEL = "customers"
# A rerun starts over with new names: the same FeatureSet and version re-applied would adopt their committed
# snapshot and artifact, whose online values are by then older than the TTL.
RUN = uuid.uuid4().hex[:5]
FEATURESET, VERSION = f"demo-customers-{RUN}", f"demo-customers-{RUN}-v1"


def online_state(ns: str) -> tuple[bool, str]:
    st = fs_status(ns, FEATURESET)
    cond = condition(st, "OnlineServing")
    return cond.get("status") == "True", (f"phase={st.get('phase') or '-'} OnlineServing={cond.get('reason') or '-'} "
                                          f"entities={(st.get('online') or {}).get('entities', '-')}")


def deployment() -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": DEPLOYMENT},
            "spec": {"model": MODEL, "version": VERSION, "strategy": {"type": "Recreate"},
                     "serving": {"replicas": 1}, "progressDeadline": "5m"}}


def main() -> int:
    ns = os.environ["DEMO_NS"]
    source = source_frame(time.time())
    uri = put_csv(make_s3_client(os.environ), os.environ["S3_BUCKET"], f"demo/{ns}/customers-{RUN}.csv", source)
    say(f"source: {len(source)} customers with id and event time at {uri} ({len(STALE_IDS)} of them two days old)")
    apply(ns, online_featureset(FEATURESET, uri))
    apply(ns, {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": VERSION},
               "spec": {"model": MODEL, "training": {
                   "featureSet": {"name": FEATURESET}, "estimator": "sklearn.linear_model.LogisticRegression",
                   "hyperparameters": {"max_iter": 500}, "metrics": ["accuracy"]}}})
    wait(f"FeatureSet {FEATURESET} published to the online store", lambda: online_state(ns), 300,
         f"kubectl -n {ns} describe fs {FEATURESET}")
    wait_phase(ns, "mv", VERSION, {"Ready"}, {"Ready", "Rejected", "Failed"}, 420)
    base = deploy(ns, deployment(), VERSION)
    entities = [{"id": 10}, {"id": 42}, {"id": 77}]
    for v2 in (False, True):
        got = post(base, v2, entities, MODEL)
        if got.status_code != 200:
            raise DemoFailed(f"entity request answered {got.status_code}: {got.text}. Next: "
                             f"kubectl -n {ns} describe mdep {DEPLOYMENT}")
        say(f"{'V2' if v2 else 'V1'} {json.dumps({'entities': entities})} -> {got.text}")
    stale = post(base, False, [{"id": STALE_IDS[0]}], MODEL)
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
