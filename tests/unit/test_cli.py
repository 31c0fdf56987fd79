"""`kubectl mlops` without a cluster: argument parsing, the pure data of every verb, its text and JSON /
YAML, and each verb end to end against a fake client (the real apiserver: tests/integration/test_cli_cluster.py)."""

from __future__ import annotations

import copy
import io
import json
from datetime import datetime, timezone

import pytest
import yaml

from mlops_operator.cli import actions, compare, explain, history, main, render, tree
from mlops_operator.cli.client import CliError
from mlops_operator.cli.kinds import Ref, kind_of, parse_ref
from mlops_operator.cli.world import World, job_for, job_state, jobs_of, pod_termination, pods_of_job
from tests.unit.cli_world import FS, HPS, JOB, MDEP, NS, POD, RP, V1, V2, V3, cond, world

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


# ------------------------------------------------------------------------------------------- kinds


@pytest.mark.parametrize("text,kind", [("mv", "ModelVersion"), ("modelversion", "ModelVersion"),
                                       ("ModelVersions", "ModelVersion"), ("modelversions.mlops.dev", "ModelVersion"),
                                       ("fs", "FeatureSet"), ("mdep", "ModelDeployment"), ("rp", "RetrainPolicy"),
                                       ("retrainpolicies", "RetrainPolicy"), ("hps", "HyperparameterSearch")])
def test_given_a_kind_alias_when_resolved_then_the_kind(text, kind):
    assert kind_of(text) == kind


def test_given_refs_in_both_forms_when_parsed_then_the_same_ref():
    assert parse_ref(["mv/bc-v1"]) == parse_ref(["mv", "bc-v1"]) == Ref("ModelVersion", "bc-v1")
    assert str(Ref("ModelDeployment", "bc")) == "mdep/bc"


@pytest.mark.parametrize("args,message", [(["pod/x"], "unknown kind"), (["mv/"], "no name"), (["bc"], "expected"),
                                          (["mv", "a", "b"], "expected")])
def test_given_a_bad_ref_when_parsed_then_valueerror_says_why(args, message):
    with pytest.raises(ValueError, match=message):
        parse_ref(args)


def test_given_a_kind_not_allowed_when_parsed_then_the_allowed_ones_are_named():
    with pytest.raises(ValueError, match="use mv or fs"):
        parse_ref(["mdep/bc"], ("ModelVersion", "FeatureSet"))


# ------------------------------------------------------------------------------------------ parser


@pytest.mark.parametrize("argv,expected", [
    (["get"], {"verb": "get", "model": None, "watch": False, "all_namespaces": False, "output": "text", "namespace": None}),
    (["-n", "a", "get", "bc", "-w", "--interval", "0.5"], {"namespace": "a", "model": "bc", "watch": True, "interval": 0.5}),
    (["get", "-A", "-o", "yaml"], {"all_namespaces": True, "output": "yaml"}),
    (["-o", "json", "get", "-n", "b"], {"output": "json", "namespace": "b"}),
    (["promote", "bc"], {"verb": "promote", "mdep": "bc", "wait": False}),
    (["abort", "mdep/bc", "--wait", "--timeout", "5"], {"verb": "abort", "mdep": "mdep/bc", "wait": True, "timeout": 5.0}),
    (["retry", "bc"], {"verb": "retry", "mdep": "bc"}),
    (["pause", "bc", "-n", "x"], {"verb": "pause", "mdep": "bc", "namespace": "x"}),
    (["resume", "bc"], {"verb": "resume", "mdep": "bc"}),
    (["history", "bc", "-o", "json"], {"verb": "history", "mdep": "bc", "output": "json"}),
    (["compare", "bc-v1", "mv/bc-v2"], {"verb": "compare", "a": "bc-v1", "b": "mv/bc-v2"}),
    (["why", "mdep/bc"], {"verb": "why", "ref": ["mdep/bc"]}),
    (["why", "mv", "bc-v3"], {"verb": "why", "ref": ["mv", "bc-v3"]}),
    (["logs", "fs/f", "-f", "--tail", "10", "--all-pods"], {"verb": "logs", "ref": ["fs/f"], "follow": True, "tail": 10,
                                                            "all_pods": True}),
    (["--context", "c", "--kubeconfig", "/k", "logs", "mv/x"], {"context": "c", "kubeconfig": "/k", "tail": None}),
])
def test_given_each_verb_when_parsed_then_its_arguments(argv, expected):
    args = vars(main.parser().parse_args(argv))
    assert {k: args[k] for k in expected} == expected


@pytest.mark.parametrize("argv", [[], ["get", "-o", "wide"], ["promote"], ["compare", "a"], ["frobnicate"],
                                  ["logs"], ["get", "--interval", "x"]])
def test_given_bad_usage_when_parsed_then_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main.parser().parse_args(argv)
    assert e.value.code == 2


# ------------------------------------------------------------------------------------------- world


def test_given_jobs_when_looked_up_then_found_by_label_and_by_recorded_name():
    w = world()
    v3 = w.get("ModelVersion", "bc-v3")
    assert [j["metadata"]["name"] for j in jobs_of(w, "ModelVersion", v3)] == ["mv-bc-v3-train"]
    unlabelled = copy.deepcopy(JOB)
    unlabelled["metadata"]["labels"] = {}
    assert job_for(World(jobs=[unlabelled]), "ModelVersion", v3)["metadata"]["name"] == "mv-bc-v3-train"
    assert job_for(w, "ModelVersion", w.get("ModelVersion", "bc-v1")) is None
    assert [p["metadata"]["name"] for p in pods_of_job(w, JOB)] == ["mv-bc-v3-train-abcde"]
    with pytest.raises(ValueError, match="mv, fs or bp"):
        jobs_of(w, "ModelDeployment", MDEP)


def test_given_a_featureset_with_an_active_job_when_looked_up_then_that_job():
    fs = copy.deepcopy(FS)
    fs["status"]["activeJob"] = "fs-bc-features-v3"
    jobs = [{"metadata": {"name": n, "namespace": NS, "creationTimestamp": t,
                          "labels": {"mlops.dev/featureset": "bc-features", "app.kubernetes.io/component": "materialize"}}}
            for n, t in (("fs-bc-features-v3", "2026-01-01T00:00:00Z"), ("fs-bc-features-v2", "2026-01-02T00:00:00Z"))]
    assert job_for(World(jobs=jobs), "FeatureSet", fs)["metadata"]["name"] == "fs-bc-features-v3"
    fs["status"].pop("activeJob")
    assert job_for(World(jobs=jobs), "FeatureSet", fs)["metadata"]["name"] == "fs-bc-features-v2"


def test_given_job_and_pod_states_when_summarized_then_reason_and_exit_code():
    assert job_state(JOB) == "Failed"
    assert job_state({"status": {"active": 1}}) == "Running"
    assert job_state({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == "Complete"
    assert pod_termination(POD) == "exit 2 (Error): column 'target' not found in the dataset"
    waiting = {"status": {"containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff", "message": "no"}}}]}}
    assert pod_termination(waiting) == "ImagePullBackOff: no"
    assert pod_termination({"status": {"containerStatuses": [{"state": {"running": {}}}]}}) is None


# --------------------------------------------------------------------------------------------- get


def test_given_a_namespace_when_treed_then_features_versions_deployments_policies_per_model():
    [m] = tree.models(world())
    assert m["model"] == "breast-cancer" and m["namespace"] == NS
    assert [r["name"] for r in m["features"]] == ["bc-features"]
    assert [r["name"] for r in m["versions"]] == ["bc-v1", "bc-v2", "bc-v3"]  # oldest first
    assert m["versions"][2]["notReady"] == {"reason": "BackoffLimitExceeded",
                                            "message": "Job has reached the specified backoff limit"}
    [d] = m["deployments"]
    assert d["weights"] == {"bc-v1": 80, "bc-v2": 20} and d["step"] == "1/2" and d["strategy"] == "Canary"
    assert [p["kind"] for p in m["policies"]] == ["RetrainPolicy", "HyperparameterSearch"]
    assert tree.models(world(), "other") == []


def test_given_a_featureset_no_model_uses_when_treed_then_listed_apart():
    w = world()
    lone = copy.deepcopy(FS)
    lone["metadata"]["name"] = "lonely"
    w.featuresets.append(lone)
    models = tree.models(w)
    assert models[-1]["model"] is None and [f["name"] for f in models[-1]["features"]] == ["lonely"]
    assert "(FeatureSets no model uses)" in render.tree(models)


@pytest.mark.parametrize("strategy,st,expected", [
    ("Canary", {"stableVersion": "a", "candidateVersion": "b", "canaryWeight": 30}, {"a": 70, "b": 30}),
    ("Canary", {"stableVersion": "a"}, {"a": 100}),
    ("Recreate", {"candidateVersion": "b"}, {"b": 100}),  # the first version: no stable yet
    ("Shadow", {"stableVersion": "a", "candidateVersion": "b", "canaryWeight": 0}, {"a": 100, "b": 0}),
    ("BlueGreen", {"stableVersion": "a", "candidateVersion": "b"}, {"a": 100, "b": 0}),
    ("Canary", {}, {}),
])
def test_given_a_rollout_state_when_weighed_then_live_traffic_per_version(strategy, st, expected):
    assert tree.weights({"spec": {"strategy": {"type": strategy}}, "status": st}) == expected


def test_given_a_namespace_when_rendered_then_an_aligned_tree():
    text = render.tree(tree.models(world()))
    assert text == """breast-cancer
├── features
│   └── fs/bc-features  Ready        latest v2 (569 rows)
├── versions
│   ├── mv/bc-v1        Ready        Production  accuracy=0.95  data bc-features@v1
│   ├── mv/bc-v2        Ready        Staging     accuracy=0.97  data bc-features@v2
│   └── mv/bc-v3        Failed       -           BackoffLimitExceeded: Job has reached the specified backoff limit
├── deployments
│   └── mdep/bc         Progressing  Canary  step 1/2  bc-v1:80% bc-v2:20%  analysis error-rate ok 0, latency FAIL 0.31
└── policies
    ├── rp/bc-retrain   Idle         retrains 1  last schedule 2026-01-01T03:00:00Z -> bc-v3
    └── hps/bc-search   Succeeded    trials 4/4  best bc-search-t2=0.98  registered bc-search-best
"""


def test_given_all_namespaces_when_rendered_then_titles_carry_the_namespace():
    assert render.tree(tree.models(world()), all_namespaces=True).startswith(f"{NS}/breast-cancer\n")
    assert render.tree([]) == "No mlops.dev resources found.\n"


def test_given_a_shadow_paused_in_a_window_when_rendered_then_mirror_pause_and_window_show():
    mdep = copy.deepcopy(MDEP)
    mdep["spec"]["strategy"] = {"type": "Shadow", "shadow": {"mirrorPercent": 50}}
    mdep["spec"]["paused"] = True
    mdep["status"]["postPromotion"] = {"version": "bc-v1", "previous": "bc-v0", "until": "2026-01-01T05:00:00Z"}
    mdep["status"]["blockedVersions"] = ["bc-v0"]
    line = render._deployment(tree.deployment_row(mdep))
    for part in ("Shadow", "mirror 50% to bc-v2", "spec.paused", "post-promotion until 2026-01-01T05:00:00Z",
                 "(previous bc-v0 warm)", "blocked bc-v0"):
        assert part in line


def test_given_the_tree_when_dumped_then_json_and_yaml_carry_the_same_data():
    models = tree.models(world())
    assert json.loads(render.dump(models, "json")) == models
    assert yaml.safe_load(render.dump(models, "yaml")) == models
    with pytest.raises(ValueError):
        render.dump(models, "xml")


def test_given_watch_when_run_then_redraws_until_the_count_with_a_time_line():
    out, frames, sleeps = io.StringIO(), iter(["one\n", "two\n"]), []
    main.watch(lambda: next(frames), out, interval=2, clear=False, sleep=sleeps.append, now=lambda: NOW, iterations=2)
    text = out.getvalue()
    assert text.count("Every 2s: kubectl mlops get    2026-01-02T03:04:05Z") == 2
    assert text.index("one") < text.index("two") and sleeps == [2]
    out = io.StringIO()
    main.watch(lambda: "x\n", out, interval=1, clear=True, sleep=lambda _: None, now=lambda: NOW, iterations=1)
    assert out.getvalue().startswith("\033[H\033[2J")


def test_given_ctrl_c_when_watching_then_it_stops_quietly():
    def draw():
        raise KeyboardInterrupt
    main.watch(draw, io.StringIO(), interval=1, clear=False)


# ---------------------------------------------------------------------------------------- requests


def test_given_a_request_when_built_then_the_annotation_the_operator_reads_with_a_new_value():
    body, value = actions.request_patch(MDEP, "promote", NOW)
    assert value == "2026-01-02T03:04:05.678901Z"
    assert body == {"metadata": {"annotations": {"mlops.dev/promote": value}}}
    again = copy.deepcopy(MDEP)
    again["metadata"]["annotations"] = {"mlops.dev/promote": value}
    assert actions.request_patch(again, "promote", NOW)[1] != value  # the same instant twice still acts
    assert actions.pause_patch(True) == {"spec": {"paused": True}}
    assert actions.pause_patch(False) == {"spec": {"paused": False}}


def test_given_requests_the_operator_would_ignore_when_advised_then_a_warning():
    idle = {"spec": {}, "status": {"phase": "Succeeded", "stableVersion": "a"}}
    assert "no rollout in progress" in actions.advice(idle, "promote")
    assert "no rollout in progress" in actions.advice(idle, "abort")
    assert "nothing was aborted" in actions.advice(idle, "retry")
    assert actions.advice(idle, "pause") is None and "not paused" in actions.advice(idle, "resume")
    assert actions.advice(MDEP, "promote") is None
    window = {"spec": {}, "status": {"postPromotion": {"version": "a"}}}
    assert actions.advice(window, "abort") is None
    assert actions.advice({"status": {"blockedVersions": ["b"]}}, "retry") is None
    assert actions.advice({"spec": {"paused": True}}, "pause") == "already paused"


def test_given_a_handled_request_when_checked_then_only_that_value_counts():
    mdep = {"status": {"handledRequests": {"promote": "v1"}}}
    assert actions.handled(mdep, "promote", "v1")
    assert not actions.handled(mdep, "promote", "v2") and not actions.handled(mdep, "abort", "v1")


# ----------------------------------------------------------------------------------------- history


def test_given_a_deployment_when_its_history_is_rendered_then_a_table_newest_last():
    mdep = copy.deepcopy(MDEP)
    mdep["status"]["history"].append({"version": "bc-v2", "event": "rolledBack", "at": "2026-01-01T02:20:00Z",
                                      "reason": "latency failed 3 times"})
    mdep["status"]["blockedVersions"] = ["bc-v2"]
    data = history.history(mdep)
    assert [e["event"] for e in data["entries"]] == ["promoted", "rolledBack"]
    assert render.history(data) == """bc: phase Progressing, stable bc-v1, candidate bc-v2
blocked (track skips them until `kubectl mlops retry bc`): bc-v2

AT                     EVENT        VERSION   REASON
2026-01-01T01:40:00Z   promoted     bc-v1     first version
2026-01-01T02:20:00Z   rolledBack   bc-v2     latency failed 3 times
"""
    assert render.history(history.history({"metadata": {"name": "x"}})).endswith("No finished rollouts yet.\n")


# ----------------------------------------------------------------------------------------- compare


def test_given_two_versions_when_compared_then_sections_differences_and_deltas():
    w = world()
    data = compare.compare(w, w.get("ModelVersion", "bc-v1"), w.get("ModelVersion", "bc-v2"))
    rows = {(r["section"], r["field"]): r for r in data["rows"]}
    assert rows[("metrics", "accuracy")]["delta"] == 0.02 and rows[("metrics", "accuracy")]["differs"]
    assert not rows[("parameters", "max_iter")]["differs"] and rows[("parameters", "C")]["differs"]
    assert rows[("lineage", "featureSetVersion")]["a"] == "v1"
    assert (rows[("data", "rows")]["a"], rows[("data", "rows")]["b"]) == (500, 569)  # the snapshots trained on
    assert rows[("version", "stage")]["b"] == "Staging"
    assert [s for s in compare.SECTIONS if any(r["section"] == s for r in data["rows"])] == [
        "version", "metrics", "parameters", "lineage", "data"]
    text = render.compare(data)
    assert text.splitlines()[0].split() == ["FIELD", "bc-v1", "bc-v2", "DELTA"]
    assert any(line.startswith("*  metrics.accuracy") and line.endswith("+0.02") for line in text.splitlines())
    assert any(line.startswith("   max_iter") for line in text.splitlines())


def test_given_gates_and_artifacts_when_compared_then_verdicts_side_by_side():
    a, b = copy.deepcopy(V1), copy.deepcopy(V2)
    a["status"]["artifact"] = {"sha256": "x", "sizeBytes": 10}
    b["status"]["gateResults"] = [{"gate": "minMetrics", "metric": "accuracy", "value": 0.97, "threshold": 0.98,
                                   "passed": False}]
    rows = {(r["section"], r["field"]): r for r in compare.compare(World(), a, b)["rows"]}
    assert rows[("artifact", "sha256")]["a"] == "x" and rows[("artifact", "sha256")]["b"] is None
    assert rows[("gates", "minMetrics.accuracy")]["b"] == "FAIL (0.97 vs 0.98)"


# --------------------------------------------------------------------------------------------- why


def _objects(data):
    return [s["object"] for s in data["chain"]]


def test_given_a_canary_whose_candidate_failed_training_when_asked_why_then_down_to_the_pod():
    w = world()
    w.get("ModelDeployment", "bc")["status"]["candidateVersion"] = "bc-v3"
    data = explain.explain(w, "ModelDeployment", w.get("ModelDeployment", "bc"))
    assert _objects(data) == ["mdep/bc", "mv/bc-v3", "job/mv-bc-v3-train"]
    assert [s["depth"] for s in data["chain"]] == [0, 1, 2]
    assert data["chain"][1]["ready"]["reason"] == "BackoffLimitExceeded"
    assert "pod mv-bc-v3-train-abcde: exit 2 (Error): column 'target' not found in the dataset" in data["chain"][2]["detail"]
    assert data["next"][0] == "kubectl mlops logs mv/bc-v3 -n team-a" and not data["healthy"]
    text = render.why(data)
    assert "   └─ mv/bc-v3  Failed  Ready=False BackoffLimitExceeded" in text
    assert "\nNext:\n  kubectl mlops logs mv/bc-v3 -n team-a\n" in text


def test_given_a_healthy_version_when_asked_why_then_healthy():
    w = world()
    data = explain.explain(w, "ModelVersion", w.get("ModelVersion", "bc-v1"))
    assert data["healthy"] and _objects(data) == ["mv/bc-v1"] and data["next"] == []
    assert render.why(data).endswith("Healthy: nothing to fix.\n")


def test_given_a_progressing_canary_with_a_ready_candidate_when_asked_why_then_the_analysis_and_watch():
    w = world()
    data = explain.explain(w, "ModelDeployment", w.get("ModelDeployment", "bc"))
    assert _objects(data) == ["mdep/bc"]
    assert "analysis latency: value 0.31 (120 samples) did not pass: 0.31 > max 0.25" in data["chain"][0]["detail"]
    assert data["next"] == ["kubectl mlops get breast-cancer --watch -n team-a"]


@pytest.mark.parametrize("phase,paused,expected", [
    ("Paused", True, ["kubectl mlops resume bc -n team-a"]),
    ("Paused", False, ["kubectl mlops promote bc -n team-a", "kubectl mlops abort bc -n team-a"]),
    ("RolledBack", False, ["kubectl mlops history bc -n team-a", "kubectl mlops retry bc -n team-a"]),
    ("Degraded", False, ["kubectl get pods -l mlops.dev/model=breast-cancer -n team-a", "kubectl describe mdep bc -n team-a"]),
])
def test_given_a_deployment_phase_when_asked_why_then_the_next_command(phase, paused, expected):
    mdep = copy.deepcopy(MDEP)
    mdep["status"].update(phase=phase, candidateVersion=None, conditions=[cond("Ready", "False", phase)])
    mdep["spec"]["paused"] = paused
    mdep["status"]["history"].append({"version": "bc-v2", "event": "rolledBack", "at": "t", "reason": "latency"})
    data = explain.explain(world(), "ModelDeployment", mdep)
    assert data["next"][: len(expected)] == expected
    if phase == "RolledBack":
        assert "last: rolledBack bc-v2 at t: latency" in data["chain"][0]["detail"]


def test_given_a_pinned_version_that_does_not_exist_when_asked_why_then_not_found():
    mdep = copy.deepcopy(MDEP)
    mdep["spec"] = {"model": "breast-cancer", "version": "bc-v9"}
    mdep["status"] = {"phase": "Pending", "conditions": [cond("Ready", "False", "VersionNotFound")]}
    data = explain.explain(world(), "ModelDeployment", mdep)
    assert _objects(data) == ["mdep/bc", "mv/bc-v9"]
    assert data["chain"][1]["detail"] == ["not found: spec.version of ModelDeployment bc"]


def test_given_a_tracking_deployment_with_no_version_when_asked_why_then_says_so():
    mdep = {"kind": "ModelDeployment", "metadata": {"name": "x", "namespace": NS},
            "spec": {"model": "nothing", "track": {"policy": "latestReady"}}, "status": {"phase": "Pending"}}
    data = explain.explain(world(), "ModelDeployment", mdep)
    assert data["chain"][1]["detail"] == ["no ModelVersion of model nothing exists"]


def test_given_a_version_waiting_for_a_failed_featureset_when_asked_why_then_the_materialize_job():
    w = world()
    fs = w.get("FeatureSet", "bc-features")
    fs["status"].update(phase="Failed", activeJob=None, conditions=[cond("Ready", "False", "QualityFailed", "2 checks failed")],
                        quality={"passed": False, "violations": [{"feature": "age", "check": "min", "message": "-1 < 0"}]})
    w.jobs.append({"metadata": {"name": "fs-bc-features-v3", "namespace": NS, "creationTimestamp": "2026-01-02T00:00:00Z",
                                "labels": {"mlops.dev/featureset": "bc-features", "app.kubernetes.io/component": "materialize"}},
                   "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
                                              "message": "exit 2"}]}})
    pending = copy.deepcopy(V3)
    pending["metadata"]["name"] = "bc-v4"
    pending["status"] = {"phase": "Pending", "conditions": [cond("Ready", "False", "WaitingForFeatureSet")]}
    w.modelversions.append(pending)
    data = explain.explain(w, "ModelVersion", pending)
    assert _objects(data) == ["mv/bc-v4", "fs/bc-features", "job/fs-bc-features-v3"]
    assert "quality age min: -1 < 0" in data["chain"][1]["detail"]
    assert "kubectl mlops logs fs/bc-features -n team-a" in data["next"]


def test_given_a_rejected_version_when_asked_why_then_the_failed_gate_and_compare_with_stable():
    w = world()
    v = w.get("ModelVersion", "bc-v2")
    v["status"].update(phase="Rejected", gateResults=[{"gate": "mustBeatStable", "metric": "accuracy", "value": 0.9,
                                                      "threshold": 0.95, "passed": False}])
    data = explain.explain(w, "ModelVersion", v)
    assert data["chain"][0]["detail"] == ["gate mustBeatStable accuracy: 0.9 vs 0.95"]
    assert data["next"] == ["kubectl mlops compare bc-v1 bc-v2 -n team-a"]


def test_given_a_policy_whose_last_retrain_failed_when_asked_why_then_that_version():
    w = world()
    data = explain.explain(w, "RetrainPolicy", w.get("RetrainPolicy", "bc-retrain"))
    assert _objects(data) == ["rp/bc-retrain", "mv/bc-v3", "job/mv-bc-v3-train"]
    assert data["chain"][0]["detail"] == ["last trigger: schedule at 2026-01-01T03:00:00Z -> Created (bc-v3)"]


def test_given_a_failed_search_when_asked_why_then_its_failed_trial():
    w = world()
    hps = copy.deepcopy(HPS)
    hps["status"].update(phase="Failed", trials=[{"name": "bc-v3", "state": "Failed", "message": "training failed"}])
    data = explain.explain(w, "HyperparameterSearch", hps)
    assert _objects(data)[:2] == ["hps/bc-search", "mv/bc-v3"]
    assert "kubectl describe hps bc-search -n team-a" in data["next"]


def test_given_a_retrying_condition_when_asked_why_then_it_is_shown():
    v = copy.deepcopy(V3)
    v["status"]["conditions"].append(cond("Retrying", "True", "S3Unavailable", "connection refused"))
    text = render.why(explain.explain(World(), "ModelVersion", v))
    assert "Retrying=True S3Unavailable: connection refused" in text


# ----------------------------------------------------------------------------- verbs on a fake client


class FakeClient:
    default_namespace = NS

    def __init__(self, w: World | None = None, **_):
        self.w = w or world()
        self.patches: list[tuple] = []
        self.gets = 0

    def get(self, kind, name, namespace):
        self.gets += 1
        obj = self.w.get(kind, name, namespace)
        if obj is None:
            raise CliError(f"not found: {name}")
        return obj

    def list(self, kind, namespace):
        return [o for o in self.w.of_kind(kind) if namespace is None or o["metadata"]["namespace"] == namespace]

    def world(self, namespace, jobs=False):
        return self.w if namespace is None else self.w.only(namespace)

    def job_world(self, namespace):
        return World(jobs=list(self.w.jobs), pods=list(self.w.pods))

    def job_and_pods(self, namespace, job_name):
        return None, []

    def logs(self, namespace, pod, container, follow, tail):
        yield f"log of {pod} container {container} tail {tail}"

    def patch(self, kind, name, namespace, body):
        self.patches.append((kind, name, namespace, body))
        obj = self.w.get(kind, name, namespace)
        for key, value in body.items():
            obj.setdefault(key, {}).update(value) if key == "spec" else None
        if "metadata" in body:
            obj["metadata"].setdefault("annotations", {}).update(body["metadata"]["annotations"])
        return obj


def run(argv, client=None):
    client = client or FakeClient()
    out, err = io.StringIO(), io.StringIO()
    code = main.run(argv, out=out, err=err, make_client=lambda **_: client)
    return code, out.getvalue(), err.getvalue(), client


def test_given_get_when_run_then_the_tree_or_its_json():
    code, out, _, _ = run(["get"])
    assert code == 0 and out.startswith("breast-cancer\n├── features")
    code, out, _, _ = run(["get", "-o", "json", "-A"])
    assert json.loads(out)[0]["model"] == "breast-cancer"


@pytest.mark.parametrize("verb", ["promote", "abort", "retry"])
def test_given_a_request_verb_when_run_then_the_annotation_is_patched(verb):
    code, out, err, client = run([verb, "mdep/bc"])
    assert code == 0
    [(kind, name, ns, body)] = client.patches
    assert (kind, name, ns) == ("ModelDeployment", "bc", NS)
    value = body["metadata"]["annotations"][f"mlops.dev/{verb}"]
    assert out == f"mdep/bc: {verb} requested (mlops.dev/{verb}={value})\n"
    assert ("nothing was aborted" in err) == (verb == "retry")


def test_given_promote_with_wait_when_the_operator_handles_it_then_the_resulting_phase():
    client = FakeClient()
    real_get = client.get

    def get(kind, name, namespace):
        obj = real_get(kind, name, namespace)
        value = (obj["metadata"].get("annotations") or {}).get("mlops.dev/promote")
        if value and client.gets > 2:  # the operator acted on the second look
            obj["status"].update(handledRequests={"promote": value}, phase="Succeeded", stableVersion="bc-v2",
                                 candidateVersion=None)
        return obj

    client.get = get
    code, out, _, _ = run(["promote", "bc", "--wait", "--timeout", "30", "-o", "json"], client)
    data = json.loads(out)
    assert code == 0 and data["handled"] is True and data["phase"] == "Succeeded" and data["stable"] == "bc-v2"


def test_given_promote_with_wait_when_nobody_handles_it_then_exit_1():
    code, _, err, _ = run(["promote", "bc", "--wait", "--timeout", "0"])
    assert code == 1 and "did not handle the request within 0s" in err


@pytest.mark.parametrize("verb,paused", [("pause", True), ("resume", False)])
def test_given_pause_or_resume_when_run_then_spec_paused_is_patched(verb, paused):
    code, out, _, client = run([verb, "bc"])
    assert code == 0 and client.patches == [("ModelDeployment", "bc", NS, {"spec": {"paused": paused}})]
    assert out == f"mdep/bc {'paused' if paused else 'resumed'} (spec.paused={str(paused).lower()})\n"


def test_given_history_compare_why_when_run_then_their_text_and_yaml():
    code, out, _, _ = run(["history", "bc"])
    assert code == 0 and "promoted   bc-v1" in out
    code, out, _, _ = run(["history", "bc", "-o", "yaml"])
    assert yaml.safe_load(out)["entries"][0]["event"] == "promoted"
    code, out, _, _ = run(["compare", "bc-v1", "mv/bc-v2"])
    assert code == 0 and "metrics.accuracy" in out
    code, out, _, _ = run(["why", "mv", "bc-v3", "-o", "json"])
    assert code == 0 and json.loads(out)["chain"][-1]["object"] == "job/mv-bc-v3-train"


def test_given_logs_when_run_then_the_newest_pod_of_the_job():
    code, out, _, _ = run(["logs", "mv/bc-v3", "--tail", "5"])
    assert (code, out) == (0, "log of mv-bc-v3-train-abcde container train tail 5\n")
    code, out, _, _ = run(["logs", "mv/bc-v3", "--all-pods"])
    assert out.startswith("==> pod/mv-bc-v3-train-abcde <==\n")


def test_given_logs_without_a_job_when_run_then_exit_1_with_a_hint():
    code, _, err, _ = run(["logs", "mv/bc-v1"])
    assert code == 1 and "no Job found" in err and "kubectl mlops why mv/bc-v1" in err
    code, _, err, _ = run(["logs", "mdep/bc"])
    assert code == 1 and "use mv or fs or bp" in err


BP = {"kind": "BatchPrediction", "metadata": {"name": "nightly", "namespace": NS, "uid": "uid-bp",
                                              "creationTimestamp": "2026-01-02T00:00:00Z"},
      "spec": {"modelVersion": "bc-v1", "input": {"featureSet": {"name": "bc-features"}}, "schedule": "0 2 * * *"},
      "status": {"phase": "Running", "activeJob": "bp-nightly-t-20260102-0200", "rowsScored": 569,
                 "runs": [{"run": "t-20260101-0200", "result": "Succeeded", "rows": 569}],
                 "conditions": [{"type": "Ready", "status": "True", "reason": "RunSucceeded"}]}}
BP_LABELS = {"mlops.dev/batchprediction": "nightly", "app.kubernetes.io/component": "batch-predict"}


def batch_world() -> World:
    w = world()
    w.batchpredictions = [copy.deepcopy(BP)]
    w.jobs.append({"metadata": {"name": "bp-nightly-t-20260102-0200", "namespace": NS, "uid": "uid-bpjob",
                                "creationTimestamp": "2026-01-02T02:00:01Z", "labels": BP_LABELS}, "status": {}})
    w.pods.append({"metadata": {"name": "bp-nightly-t-20260102-0200-xyz", "namespace": NS,
                                "creationTimestamp": "2026-01-02T02:00:02Z",
                                "labels": {**BP_LABELS, "batch.kubernetes.io/job-name": "bp-nightly-t-20260102-0200"}},
                   "spec": {"containers": [{"name": "predict"}]}, "status": {}})
    return w


def test_given_a_batchprediction_when_treed_then_listed_under_its_versions_model():
    [m] = tree.models(batch_world())
    assert [(r["name"], r["lastRun"], r["rows"]) for r in m["batch"]] == [("nightly", "t-20260101-0200", 569)]
    text = render.tree([m])
    assert "bp/nightly" in text and "with bc-v1" in text and "last run t-20260101-0200 (569 rows)" in text


def test_given_a_batchprediction_when_logs_run_then_its_running_scoring_job_pod():
    code, out, _, _ = run(["logs", "bp/nightly"], FakeClient(batch_world()))
    assert (code, out) == (0, "log of bp-nightly-t-20260102-0200-xyz container predict tail None\n")


def test_given_a_batchprediction_waiting_for_a_missing_model_version_when_asked_why_then_not_found():
    w = batch_world()
    bp = w.batchpredictions[0]
    bp["spec"]["modelVersion"] = "bc-v9"
    bp["status"] = {"phase": "Pending", "conditions": [
        {"type": "Ready", "status": "False", "reason": "ModelVersionNotFound", "message": "spec.modelVersion: ..."},
        {"type": "InvalidSpec", "status": "True", "reason": "ModelVersionNotFound", "message": "spec.modelVersion: ..."}]}
    data = explain.explain(w, "BatchPrediction", bp)
    assert not data["healthy"] and [s["object"] for s in data["chain"]] == ["bp/nightly", "mv/bc-v9"]
    assert "not found" in data["chain"][1]["detail"][0] and "kubectl describe bp nightly -n team-a" in data["next"]


def test_given_a_batchprediction_whose_last_run_failed_when_asked_why_then_its_job_and_logs():
    w = batch_world()
    bp = w.batchpredictions[0]
    bp["status"].update(phase="Failed", runs=[{"run": "t-20260102-0200", "result": "Failed",
                                               "message": "input.uri: not found"}],
                        conditions=[{"type": "Ready", "status": "False", "reason": "DatasetUnreadable"}])
    data = explain.explain(w, "BatchPrediction", bp)
    assert [s["object"] for s in data["chain"]] == ["bp/nightly", "job/bp-nightly-t-20260102-0200"]
    assert data["chain"][0]["detail"] == ["run t-20260102-0200 Failed: input.uri: not found"]
    assert "kubectl mlops logs bp/nightly -n team-a" in data["next"]
    running = batch_world()
    assert explain.explain(running, "BatchPrediction", running.batchpredictions[0])["healthy"] is True


def test_given_an_unknown_object_when_run_then_exit_1():
    code, _, err, _ = run(["why", "mv/nope"])
    assert code == 1 and err == f"error: mv/nope not found in namespace {NS}\n"
    code, _, err, _ = run(["history", "nope"])
    assert code == 1 and "not found" in err


def test_given_the_runtime_json_summary_as_termination_message_when_summarized_then_its_reason_and_message():
    pod = copy.deepcopy(POD)
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    term["message"] = json.dumps({"result": "Failed", "reason": "InvalidInput", "message": "no column x", "exitCode": 2})
    assert pod_termination(pod) == "exit 2 (InvalidInput): no column x"
    term.update(exitCode=0, reason="Completed", message=json.dumps({"result": "Succeeded", "metrics": {}}))
    assert pod_termination(pod) == "exit 0 (Succeeded)"
    term["message"] = "{not json"
    assert pod_termination(pod) == "exit 0 (Completed): {not json"


def test_given_a_policy_with_only_its_last_trigger_when_asked_why_then_that_version():
    w = world()
    rp = w.get("RetrainPolicy", "bc-retrain")
    rp["status"].pop("history")
    data = explain.explain(w, "RetrainPolicy", rp)
    assert _objects(data)[:2] == ["rp/bc-retrain", "mv/bc-v3"]
    assert data["chain"][0]["detail"] == ["last trigger: schedule at 2026-01-01T03:00:00Z -> None (bc-v3)"]


# --------------------------------------------------------------------------------------------- krew


def test_given_the_krew_build_when_run_then_the_manifest_names_the_archive_sha_and_its_launcher_runs(tmp_path):
    import hashlib
    import os
    import pathlib
    import subprocess
    import sys
    import tarfile

    root = pathlib.Path(__file__).resolve().parents[2]
    subprocess.run(["bash", str(root / "manifests/krew/build.sh"), str(tmp_path)], check=True, capture_output=True)
    manifest = yaml.safe_load((tmp_path / "mlops.yaml").read_text())
    archive = tmp_path / "kubectl-mlops.tar.gz"
    assert manifest["kind"] == "Plugin" and manifest["metadata"]["name"] == "mlops"
    [platform] = manifest["spec"]["platforms"]
    assert platform["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert platform["bin"] == "kubectl-mlops"
    with tarfile.open(archive) as tar:
        assert {m.name for m in tar.getmembers()} == {f["from"] for f in platform["files"]}
        assert tar.getmember("kubectl-mlops").mode & 0o111
        tar.extractall(tmp_path / "x", filter="data")
    launcher = str(tmp_path / "x" / "kubectl-mlops")
    ok = subprocess.run([launcher, "--help"], capture_output=True, text=True, env={**os.environ, "MLOPS_PYTHON": sys.executable})
    assert ok.returncode == 0 and "usage: kubectl mlops" in ok.stdout
    missing = subprocess.run([launcher, "get"], capture_output=True, text=True, env={**os.environ, "MLOPS_PYTHON": "false"})
    assert missing.returncode == 1 and "pip install mlops-operator" in missing.stderr
    # the same sources give the same archive (krew pins its sha256)
    subprocess.run(["bash", str(root / "manifests/krew/build.sh"), str(tmp_path / "again")], check=True, capture_output=True)
    assert (tmp_path / "again" / "kubectl-mlops.tar.gz").read_bytes() == archive.read_bytes()
