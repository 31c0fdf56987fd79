"""Why a serving pod is not Ready, as CandidateReady reports it: the kubelet's or the scheduler's words."""

from __future__ import annotations

import pytest

from mlops_operator.logic.rollout.workloads import MAX_PROBLEM, first_problem, pod_problem

pytestmark = pytest.mark.unit


def pod(name: str = "p", waiting: dict | None = None, last: dict | None = None, conditions: list | None = None,
        init: dict | None = None, deleting: bool = False) -> dict:
    status: dict = {"conditions": conditions or []}
    if waiting is not None or last is not None:
        status["containerStatuses"] = [{"state": {"waiting": waiting} if waiting else {"running": {}},
                                        "lastState": {"terminated": last} if last else {}}]
    if init is not None:
        status["initContainerStatuses"] = [{"state": {"waiting": init}}]
    meta = {"name": name, **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {})}
    return {"metadata": meta, "status": status}


@pytest.mark.parametrize("reason", ["ContainerCreating", "PodInitializing"])
def test_given_a_pod_that_is_only_starting_then_there_is_no_problem(reason):
    assert pod_problem(pod(waiting={"reason": reason})) is None
    assert pod_problem(pod(waiting=None)) is None


def test_given_a_missing_secret_then_the_kubelets_words_name_it():
    got = pod_problem(pod(waiting={"reason": "CreateContainerConfigError", "message": 'secret "s3" not found'}))
    assert got == 'CreateContainerConfigError: secret "s3" not found'


def test_given_a_crash_loop_then_the_last_exit_is_reported_not_the_changing_back_off_text():
    got = pod_problem(pod(waiting={"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"},
                          last={"exitCode": 3, "reason": "Error"}))
    assert got == "CrashLoopBackOff: exit 3 (Error)"


def test_given_an_init_container_that_cannot_pull_then_it_is_reported():
    got = pod_problem(pod(init={"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}))
    assert got == 'ImagePullBackOff: Back-off pulling image "x"'


def test_given_no_node_fits_then_the_schedulers_reason_is_reported():
    got = pod_problem(pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                       "message": "0/1 nodes are available: 1 Insufficient cpu."}]))
    assert got == "Unschedulable: 0/1 nodes are available: 1 Insufficient cpu."


def test_given_a_very_long_message_then_it_is_cut_to_a_bounded_length():
    got = pod_problem(pod(waiting={"reason": "CreateContainerError", "message": "x" * 5000}))
    assert got is not None and len(got) == MAX_PROBLEM and got.endswith("…")


def test_given_several_pods_then_the_first_by_name_that_has_a_problem_and_is_not_being_deleted():
    pods = [pod("c", waiting={"reason": "ErrImagePull", "message": "c"}),
            pod("a", waiting={"reason": "ErrImagePull", "message": "a"}, deleting=True),
            pod("b", waiting={"reason": "ContainerCreating"}),
            pod("d", waiting={"reason": "ErrImagePull", "message": "d"})]
    assert first_problem(pods) == "ErrImagePull: c"
    assert first_problem([]) is None
