"""serving.autoscaling in the rollout: stable's replicas are the autoscaler's, a candidate is sized from them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mlops_operator.api.v1alpha1.modeldeployment import ModelDeploymentSpec
from mlops_operator.builders.autoscaling import RPS_METRIC, autoscaling_name, build_hpa, build_pdb
from mlops_operator.builders.serving import COMPANIONS_ANNOTATION, ServingInput, build_serving_deployment, version_name
from mlops_operator.logic.rollout.state import Observations, Role, WorkloadInfo, WorkloadPlan
from mlops_operator.logic.rollout.workloads import (
    HPA,
    PDB,
    companions,
    hands_over_replicas,
    kept_compiled_model,
    plan_companions,
)
from mlops_operator.providers.kube import FIELD_MANAGER
from mlops_operator.providers.traffic.deployments import workload_info
from tests.unit.rollout_world import MODEL, World, serving, spec, version

pytestmark = pytest.mark.unit

STEPS = {"type": "Canary", "canary": {"steps": [{"weight": 10, "pause": "1m"}, {"weight": 30, "pause": "1m"},
                                                 {"weight": 60, "pause": "1m"}]}}
SCALING = {"minReplicas": 2, "maxReplicas": 10, "targetCpuUtilization": 70}
OWNER = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
         "metadata": {"name": "bc", "namespace": "team-a", "uid": "uid-1"}}


def _md(target: str, **serving_fields) -> ModelDeploymentSpec:
    return spec(version=target, strategy=STEPS, serving={"replicas": 1, **serving_fields})


def _planned(plan, version: str):
    return next((w.replicas for w in plan.workloads if w.version == version), "absent")


def test_given_an_autoscaled_stable_at_7_when_a_canary_runs_then_stable_is_never_sized_and_the_candidate_follows_the_weight():
    md = _md("v2", autoscaling=SCALING)
    world = serving(md, "v2")
    world.autoscaled_to = 7
    world.tick(md)                                   # the autoscaler has scaled stable to 7 meanwhile
    world.until(md, lambda w: w.status.get("stableVersion") == "v2")
    sizes = []
    for plan in world.plans[-40:]:
        if plan.status.get("candidateVersion") == "v2":
            assert _planned(plan, "v1") is None      # stable's replicas are the autoscaler's
            size = (plan.status.get("canaryWeight", 0), _planned(plan, "v2"))
            if not sizes or sizes[-1] != size:
                sizes.append(size)
    # the next weight's share of 7, rounded up: 10 % -> 1, 30 % -> 3, 60 % -> 5, promotion -> all 7
    assert sizes == [(0, 1), (10, 3), (30, 5), (60, 7)]
    assert _planned(world.plans[-1], "v2") is None   # promoted: now the autoscaler's


def test_given_no_stable_yet_when_the_first_version_rolls_out_then_it_starts_at_min_replicas_and_is_handed_over():
    md = spec(version="v1", serving={"autoscaling": SCALING})
    world = World(versions={"v1": version("v1")})
    first = world.tick(md)
    assert _planned(first, "v1") == 2
    world.until(md, lambda w: w.status.get("stableVersion") == "v1")
    assert _planned(world.plans[-1], "v1") is None


def test_given_no_autoscaling_when_a_canary_runs_then_both_versions_run_spec_replicas():
    md = _md("v2")
    world = serving(md, "v2")
    world.until(md, lambda w: w.status.get("canaryWeight") == 10)
    assert (_planned(world.plans[-1], "v1"), _planned(world.plans[-1], "v2")) == (1, 1)


@pytest.mark.parametrize("serving_fields, message", [
    ({"autoscaling": {"maxReplicas": 3}}, "targetCpuUtilization or targetRequestsPerSecond"),
    ({"autoscaling": {"minReplicas": 4, "maxReplicas": 3, "targetCpuUtilization": 50}}, "minReplicas must not"),
    ({"autoscaling": SCALING, "runtime": "kserve"}, "builtin runtime only"),
    ({"podDisruptionBudget": {}}, "exactly one of minAvailable or maxUnavailable"),
    ({"podDisruptionBudget": {"minAvailable": "120%"}}, "neither a pod count nor a percent"),
])
def test_given_an_invalid_scaling_block_when_parsed_then_it_is_refused_naming_the_field(serving_fields, message):
    with pytest.raises(ValidationError, match=message):
        ModelDeploymentSpec.model_validate({"model": MODEL, "version": "v1", "serving": serving_fields,
                                            "traffic": {"router": "kserve"}} if serving_fields.get("runtime")
                                           else {"model": MODEL, "version": "v1", "serving": serving_fields})


# ------------------------------------------------------------------------------------------------ builders


def test_given_cpu_and_rps_targets_when_built_then_the_hpa_targets_stables_deployment_with_both_metrics():
    md = _md("v1", autoscaling={**SCALING, "targetRequestsPerSecond": 50})
    hpa = build_hpa(OWNER, MODEL, "v1", md.serving.autoscaling)
    assert hpa["metadata"]["name"] == autoscaling_name("bc") == "mdep-bc"
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": version_name("bc", "v1")}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    cpu, rps = hpa["spec"]["metrics"]
    assert cpu["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert rps["pods"] == {"metric": {"name": RPS_METRIC}, "target": {"type": "AverageValue", "averageValue": "50"}}


def test_given_a_budget_when_built_then_the_pdb_selects_the_servers_of_every_version_of_this_deployment_only():
    md = _md("v1", podDisruptionBudget={"minAvailable": "50%"})
    pdb = build_pdb(OWNER, MODEL, md.serving.pod_disruption_budget)
    assert pdb["spec"]["minAvailable"] == "50%" and "maxUnavailable" not in pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"] == {"mlops.dev/modeldeployment": "bc",
                                                      "app.kubernetes.io/component": "serving"}


def test_given_replicas_left_to_an_autoscaler_when_the_deployment_is_built_then_it_has_no_replicas_field():
    inp = dict(owner=OWNER, model=MODEL, version="v1", role="stable", artifact_uri="s3://m/x", image="i",
               s3_secret="s")
    assert "replicas" not in build_serving_deployment(ServingInput(replicas=None, **inp))["spec"]
    built = build_serving_deployment(ServingInput(replicas=3, companions=(PDB, HPA), **inp))
    assert built["spec"]["replicas"] == 3
    assert built["metadata"]["annotations"][COMPANIONS_ANNOTATION] == f"{HPA},{PDB}"


def test_given_specs_when_asked_then_companions_are_exactly_what_the_spec_asks_for():
    assert companions(_md("v1")) == ()
    assert companions(_md("v1", autoscaling=SCALING, podDisruptionBudget={"maxUnavailable": 1})) == (HPA, PDB)


# ------------------------------------------------------------------------------------------------ observing


def _deployment(managers: list[dict]) -> dict:
    return {"metadata": {"annotations": {"mlops.dev/modelversion": "v1", COMPANIONS_ANNOTATION: HPA},
                         "managedFields": managers, "generation": 1},
            "spec": {"replicas": 4}, "status": {"observedGeneration": 1, "updatedReplicas": 4, "readyReplicas": 4}}


def test_given_managed_fields_when_observed_then_replicas_ownership_and_companions_are_read():
    ours = {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
    hpa = {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
    mine_without = {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {"f:selector": {}}}}
    assert workload_info(_deployment([ours])).replicas_owned is True
    info = workload_info(_deployment([mine_without, hpa]))
    assert (info.replicas_owned, info.replicas, info.companions) == (False, 4, frozenset({HPA}))


def test_given_a_raised_min_replicas_when_the_autoscaler_has_not_scaled_yet_then_stable_stays_succeeded():
    md = spec(version="v1", serving={"autoscaling": SCALING})
    world = World(versions={"v1": version("v1")})
    world.until(md, lambda w: w.phase == "Succeeded")
    raised = spec(version="v1", serving={"autoscaling": {**SCALING, "minReplicas": 5}})
    plan = world.tick(raised)       # the Deployment still runs 2 Ready pods: the autoscaler has not acted
    assert plan.status["phase"] == "Succeeded" and _planned(plan, "v1") is None


# ------------------------------------------------------------------------------------------------ applying


def _seen(**fields) -> WorkloadInfo:
    return WorkloadInfo(**{"version": "v1", "replicas": 4, "ready_replicas": 4, **fields})


@pytest.mark.parametrize("planned, seen, expected", [
    (None, _seen(replicas_owned=True), True),      # the apply is about to drop replicas it owns: hand over first
    (None, _seen(replicas_owned=False), False),    # already the autoscaler's
    (None, None, False),                           # no Deployment yet: nothing to keep
    (3, _seen(replicas_owned=True), False),        # the operator keeps sizing it
])
def test_given_a_planned_workload_when_applied_then_replicas_are_handed_over_only_when_about_to_be_dropped(
        planned, seen, expected):
    assert hands_over_replicas(WorkloadPlan("v1", Role.STABLE, planned), seen) is expected


@pytest.mark.parametrize("planned_count, seen, expected", [
    (2, _seen(compiled_model="auto"), "auto"),     # mid-rollout: the running pods keep their form
    (2, _seen(compiled_model=None), None),         # launched before the setting: the spec's
    (2, None, None),                               # not running yet: the spec's
    (1, _seen(compiled_model="auto"), None),       # serving alone: the spec's
])
def test_given_running_pods_when_applied_then_they_keep_their_compiled_model_only_beside_another_version(
        planned_count, seen, expected):
    assert kept_compiled_model(planned_count, seen) == expected


def _obs(**workloads: WorkloadInfo) -> Observations:
    return Observations(namespace="team-a", name="bc", versions={}, workloads=workloads)


def test_given_autoscaling_when_stables_deployment_is_not_observed_yet_then_no_autoscaler_is_applied():
    md = _md("v1", autoscaling=SCALING)
    assert plan_companions(md, "v1", _obs()).autoscaler_target is None
    assert plan_companions(md, None, _obs(v1=_seen())).autoscaler_target is None
    plan = plan_companions(md, "v1", _obs(v1=_seen()))
    assert (plan.autoscaler_target, plan.autoscaling, plan.budget, plan.delete) == ("v1", md.serving.autoscaling,
                                                                                  None, ())


def test_given_a_spec_that_stopped_asking_when_planned_then_only_the_kinds_made_before_are_deleted():
    made = _obs(v1=_seen(companions=frozenset({HPA, PDB})))
    assert plan_companions(_md("v1"), "v1", made).delete == (HPA, PDB)
    assert plan_companions(_md("v1"), "v1", _obs(v1=_seen())).delete == ()
    kept = plan_companions(_md("v1", podDisruptionBudget={"maxUnavailable": 1}), "v1", made)
    assert (kept.delete, kept.budget.max_unavailable) == ((HPA,), 1)
