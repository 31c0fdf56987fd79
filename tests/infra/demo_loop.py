"""`make demo`'s last step: continuous training, shown on the local cluster with real load, the real
Prometheus and the real Alertmanager. Nobody edits a spec once it is applied.

Branch 1, drift: a ModelDeployment follows a label channel; drifted traffic raises the model server's drift
gauge; a (time-compressed) copy of the shipped drift rule fires; Alertmanager calls the operator; the
RetrainPolicy has the FeatureSet materialize a fresh snapshot, trains on it, scores the serving version on the
new version's own test rows (the fair gate), and the deployment rolls the winner out as a canary judged by
Prometheus, then promotes it.

Branch 3, labels: a canary whose analysis includes the builtin ``accuracy`` check is judged on true labels
sent back as feedback through the entry Service, and promoted. Inside its post-promotion window the labels
turn against it: accuracy falls, all traffic returns to the previous version at once (``RolledBack``), and
``track`` does not pick the failed version again.

Run by ``tests/infra/demo-loop.sh`` (from ``demo.sh``) as ``python -m tests.infra.demo_loop`` in the repository
root, with the cluster's environment (KUBECONFIG, PROMETHEUS_URL, PROMETHEUS_RULES_DIR, ALERTMANAGER_URL) and
DEMO_NS set. Every wait polls a condition and prints what changed; a failure says what to look at next.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections import Counter
from typing import Callable

import httpx

from tests.conftest import kubectl
from tests.e2e import drift_kit
from tests.e2e import rollout_kit as kit

POLL = 2.0
T0 = time.monotonic()
LOOP_DEPLOYMENT, ACCURACY_DEPLOYMENT = "bc-loop", "bc-acc"
FEATURESET = "demo-loop-features"
ACCURACY = {"name": "accuracy", "builtin": "accuracy", "min": 0.9}


class DemoFailed(Exception):
    """A step did not end as shown; the message says what to inspect next."""


def say(message: str) -> None:
    print(f"  [{time.monotonic() - T0:5.0f}s] {message}", flush=True)


def apply(ns: str, doc: dict) -> None:
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(doc))


def wait(what: str, probe: Callable[[], tuple[bool, str]], timeout: float, next_step: str) -> str:
    """Poll ``probe`` (done?, state to show) until done; print every new state; DemoFailed after ``timeout``."""
    say(f"waiting for {what}")
    deadline, last = time.monotonic() + timeout, None
    while True:
        done, state = probe()
        if state != last:
            say(f"  {state}")
            last = state
        if done:
            return state
        if time.monotonic() > deadline:
            raise DemoFailed(f"{what}: not within {timeout:.0f}s (last: {state}). Next: {next_step}")
        time.sleep(POLL)


def phase_of(ns: str, kind: str, name: str) -> str:
    return ((kit.get(ns, kind, name) or {}).get("status") or {}).get("phase") or "<none>"


def wait_phase(ns: str, kind: str, name: str, wanted: set[str], ends: set[str], timeout: float) -> str:
    """Wait until ``kind/name`` reaches one of ``ends``; DemoFailed unless it is one of ``wanted``."""
    phase = wait(f"{kind} {name} ({' or '.join(sorted(ends))})",
                 lambda: (phase_of(ns, kind, name) in ends, f"phase: {phase_of(ns, kind, name)}"), timeout,
                 f"kubectl -n {ns} describe {kind} {name}")
    phase = phase.removeprefix("phase: ")
    if phase not in wanted:
        raise DemoFailed(f"{kind} {name} ended {phase}. Next: kubectl -n {ns} describe {kind} {name} (conditions, events)")
    return phase


def rollout_line(st: dict) -> str:
    return (f"stable={st.get('stableVersion') or '-'} candidate={st.get('candidateVersion') or '-'} "
            f"weight={st.get('canaryWeight') or 0} step={st.get('currentStep', '-')} phase={st.get('phase') or '-'}")


def follow(ns: str, name: str, until: Callable[[dict], bool], timeout: float, what: str) -> dict:
    """Print each rollout state of ModelDeployment ``name`` until ``until(status)``."""
    wait(what, lambda: (until(kit.status(ns, name)), rollout_line(kit.status(ns, name))), timeout,
         f"kubectl -n {ns} describe mdep {name}; kubectl -n mlops-system logs deploy/mlops-operator --tail=50")
    return kit.status(ns, name)


def deploy(ns: str, md: dict, first: str) -> str:
    """Apply ``md`` and wait until ``first`` serves through its entry Service; the entry URL."""
    name = md["metadata"]["name"]
    kubectl("-n", ns, "delete", "mdep", name, "--ignore-not-found", "--wait=true", "--timeout=120s", timeout=150)
    apply(ns, md)
    st = follow(ns, name, lambda s: s.get("phase") in {"Succeeded", "Failed", "Degraded"}, 300,
                f"ModelDeployment {name} to serve {first}")
    if st.get("phase") != "Succeeded" or st.get("stableVersion") != first:
        raise DemoFailed(f"{name} did not serve {first}: {rollout_line(st)}. Next: kubectl -n {ns} describe mdep {name}")
    base = kit.service_url(ns, name)
    kit.wait_ready(base, timeout=30)
    say(f"{name} serves {first} at {base}")
    return base


def analysis_lines(st: dict, metric: str | None = None) -> list[str]:
    return [f"{a['at']} {a['metric']}={a.get('value')} samples={a.get('samples')} passed={a['passed']}"
            for a in st.get("analysis", []) if metric in (None, a["metric"])]


# ------------------------------------------------------------------------------------ branch 1: drift
def prometheus_value(url: str, query: str) -> str:
    try:
        result = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=5).json()["data"]["result"]
    except (httpx.HTTPError, ValueError, KeyError):
        return "?"
    return f"{float(result[0]['value'][1]):.2f}" if result else "n/a"


def alerts_firing(url: str, marker: dict[str, str]) -> str:
    filters = [f'{k}="{v}"' for k, v in marker.items()]
    try:
        return str(len(httpx.get(f"{url}/api/v2/alerts", params={"filter": filters}, timeout=5).json()))
    except (httpx.HTTPError, ValueError):
        return "?"


def drift_branch(ns: str, run: str, env: dict[str, str]) -> None:
    v1, policy_name = f"demo-loop-{run}-v1", f"demo-retrain-{run}"
    channel, marker = {"channel": f"loop-{run}"}, {"demo_run": run}
    # A rerun starts the loop over: a fresh channel and policy name (versions are immutable; a policy names
    # its versions <policy>-r<N>, so a new name really trains).
    kubectl("-n", ns, "delete", "rp", "--all", "--wait=true", "--timeout=60s", timeout=90)
    apply(ns, drift_kit.featureset(FEATURESET))
    say(f"v1 = {v1}: a deliberately weak model (2 shallow trees) trained on FeatureSet {FEATURESET}")
    apply(ns, {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": v1, "labels": channel},
               "spec": {"model": kit.MODEL, "training": drift_kit.training(FEATURESET, 2, depth=1)}})
    wait_phase(ns, "mv", v1, {"Ready"}, {"Ready", "Rejected", "Failed"}, 480)
    md = kit.deployment(v1, {"type": "Canary", "canary": {"steps": [{"weight": 50, "pause": "10s"}]}},
                        kit.analysis(kit.ERROR_RATE), name=LOOP_DEPLOYMENT)
    del md["spec"]["version"]
    md["spec"]["track"] = {"policy": "latestReady", "matchLabels": channel}
    base = deploy(ns, md, v1)
    apply(ns, drift_kit.policy(policy_name, marker, channel, drift_kit.training(FEATURESET, 60), LOOP_DEPLOYMENT))
    snapshots = len(((kit.get(ns, "fs", FEATURESET) or {}).get("status") or {}).get("versions") or [])
    say(f"RetrainPolicy {policy_name}: on the drift alert, retrain on fresh data; the new version must beat the "
        f"one {LOOP_DEPLOYMENT} serves")

    drift = f'max(mlops_feature_drift{{test="psi",namespace="{ns}",version="{v1}"}})'
    with drift_kit.DriftRule(env["PROMETHEUS_RULES_DIR"], env["PROMETHEUS_URL"], f"demo-drift-{run}", ns, v1, marker):
        say("sending drifted traffic (every feature x3) through the entry Service")

        def triggered() -> tuple[bool, str]:
            drift_kit.send_drifted(base, requests=5)
            made = ((kit.get(ns, "rp", policy_name) or {}).get("status") or {}).get("lastTriggered") or {}
            return bool(made.get("modelVersion")), (
                f"drift (PSI, max over features) {prometheus_value(env['PROMETHEUS_URL'], drift)}, alerts in "
                f"Alertmanager (one per drifted feature): {alerts_firing(env['ALERTMANAGER_URL'], marker)}, "
                f"retrain: {made.get('modelVersion') or 'not yet'}")
        wait("the drift alert to reach the RetrainPolicy", triggered, 300,
             f"look at {env['PROMETHEUS_URL']}/alerts, {env['ALERTMANAGER_URL']}/#/alerts and "
             f"kubectl -n {ns} describe rp {policy_name}")
    record = kit.get(ns, "rp", policy_name)["status"]["lastTriggered"]
    new = record["modelVersion"]
    say(f"alert -> RetrainPolicy created {new}: {record.get('detail')}")
    say(f"fresh data asked for: FeatureSet snapshot request {record.get('snapshotRequest')}")
    wait_phase(ns, "mv", new, {"Ready"}, {"Ready", "Rejected", "Failed"}, 600)
    fs = kit.get(ns, "fs", FEATURESET)["status"]["versions"]
    mv = kit.get(ns, "mv", new)
    say(f"FeatureSet snapshots: {snapshots} before, {len(fs)} now; {new} trained on snapshot "
        f"{mv['status'].get('lineage', {}).get('featureSetVersion')}")
    gate = next(g for g in mv["status"].get("gateResults", []) if g["gate"] == "mustBeatStable")
    say(f"fair gate ({gate['comparison']}): on the same {gate['rows']} test rows {new} scored roc_auc "
        f"{gate['value']:.3f}, the serving {gate['baselineVersion']} {gate['baseline']:.3f}; margin {gate['margin']:g}: "
        f"{'passed' if gate['passed'] else 'failed'}")

    say(f"{new} is the newest Ready version of the channel: {LOOP_DEPLOYMENT} canaries it under load")
    with kit.Load(base) as load:
        st = follow(ns, LOOP_DEPLOYMENT, lambda s: s.get("stableVersion") == new and s.get("phase") == "Succeeded"
                    or s.get("phase") in {"RolledBack", "Failed"}, 420, f"the canary of {new}")
    answered = Counter(s.version for s in load.samples if s.code == 200)
    say(f"load: {dict(answered)} answered, {len(load.failures())} failed")
    for line in analysis_lines(st)[-4:]:
        say(f"analysis: {line}")
    if st.get("stableVersion") != new:
        raise DemoFailed(f"{LOOP_DEPLOYMENT} did not promote {new}: {rollout_line(st)}. "
                         f"Next: kubectl -n {ns} describe mdep {LOOP_DEPLOYMENT}")
    say(f"branch 1 done: drift alert -> fresh snapshot -> {new} trained, fairly gated, canaried and promoted")


# ------------------------------------------------------------------------------------ branch 3: labels
def accuracy_branch(ns: str, run: str) -> None:
    v1, v2 = f"demo-acc-{run}-v1", f"demo-acc-{run}-v2"
    channel = {"channel": f"acc-{run}"}
    apply(ns, kit.modelversion(v1, kit.FAST, channel))
    wait_phase(ns, "mv", v1, {"Ready"}, {"Ready", "Rejected", "Failed"}, 480)
    md = kit.deployment(v1, {"type": "Canary", "canary": {"steps": [{"weight": 50, "pause": "10s"}]}},
                        {**kit.analysis(kit.ERROR_RATE, ACCURACY, failure_limit=1), "postPromotion": {"duration": "10m"}},
                        name=ACCURACY_DEPLOYMENT)
    del md["spec"]["version"]
    md["spec"]["track"] = {"policy": "latestReady", "matchLabels": channel}
    base = deploy(ns, md, v1)
    say("every prediction is followed by its true labels, sent by the answer's id to the entry Service")
    seen: set[str] = set()

    def accuracy_news(st: dict) -> None:
        for line in analysis_lines(st, "accuracy"):
            if line not in seen:
                seen.add(line)
                say(f"  accuracy check: {line}")

    def progress(until: Callable[[dict], bool]) -> Callable[[dict], bool]:
        def check(st: dict) -> bool:
            accuracy_news(st)
            return until(st)
        return check

    with kit.LabelledLoad(base) as load:
        say(f"{v2} (60 trees) joins the channel: a canary judged on error rate and accuracy")
        apply(ns, kit.modelversion(v2, 60, channel))
        wait_phase(ns, "mv", v2, {"Ready"}, {"Ready", "Rejected", "Failed"}, 480)
        st = follow(ns, ACCURACY_DEPLOYMENT, progress(lambda s: s.get("stableVersion") == v2
                                                      or s.get("phase") in {"RolledBack", "Failed"}),
                    420, f"the accuracy-checked canary of {v2}")
        if st.get("stableVersion") != v2 or not st.get("postPromotion"):
            raise DemoFailed(f"{v2} was not promoted into a post-promotion window: {rollout_line(st)}. "
                             f"Next: kubectl -n {ns} describe mdep {ACCURACY_DEPLOYMENT}")
        window = st["postPromotion"]
        say(f"promoted; {v1} stays warm until {window['until']} (postPromotion)")
        say("the labels now say the promoted version is wrong (users report its mistakes)")
        load.wrong = True
        st = follow(ns, ACCURACY_DEPLOYMENT, progress(lambda s: s.get("phase") == "RolledBack" or not s.get("postPromotion")),
                    300, "accuracy to fall and the post-promotion analysis to roll back")
    fed = Counter((version, code) for version, code in load.answers)
    say(f"feedback answers (version, HTTP status): {dict(fed)}")
    if st.get("phase") != "RolledBack" or st.get("stableVersion") != v1:
        raise DemoFailed(f"no rollback inside the window: {rollout_line(st)}. Next: kubectl -n {ns} describe mdep "
                         f"{ACCURACY_DEPLOYMENT} (status.analysis, status.history)")
    last = st["history"][-1]
    say(f"history: {last['version']} {last['event']}: {last.get('reason')}")
    say(f"blocked versions: {st.get('blockedVersions')}")

    # A fresh pass over track: v2 is still the newest Ready version of the channel.
    nonce = kit.annotate(ns, "promote", ACCURACY_DEPLOYMENT)
    st = follow(ns, ACCURACY_DEPLOYMENT, lambda s: (s.get("handledRequests") or {}).get("promote") == nonce, 60,
                "a fresh reconcile of track")
    if st.get("desiredVersion") != v1 or st.get("candidateVersion"):
        raise DemoFailed(f"{v2} was tracked again: {rollout_line(st)}. Next: kubectl -n {ns} describe mdep {ACCURACY_DEPLOYMENT}")
    say(f"branch 3 done: {v2} promoted on accuracy, rolled back to {v1} when its labels turned, and not re-tracked "
        f"(kubectl annotate mdep {ACCURACY_DEPLOYMENT} mlops.dev/retry=<new value> to allow it again)")


def main() -> int:
    ns = os.environ.get("DEMO_NS", "mlops-demo")
    missing = [k for k in ("KUBECONFIG", "PROMETHEUS_URL", "PROMETHEUS_RULES_DIR", "ALERTMANAGER_URL") if not os.environ.get(k)]
    if missing:
        print(f"ERROR: {', '.join(missing)} not set: source .local/env (make cluster-up writes it)", file=sys.stderr)
        return 2
    run = uuid.uuid4().hex[:5]
    try:
        print("\nbranch 1: drifted traffic -> alert -> fresh snapshot -> retrain -> fair gate -> canary", flush=True)
        drift_branch(ns, run, dict(os.environ))
        print("\nbranch 3: a canary checked on label feedback, then rolled back after promotion", flush=True)
        accuracy_branch(ns, run)
    except (DemoFailed, AssertionError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
