"""The generated CRDs on the real kube-apiserver: they install, every example is accepted, every rule
rejects its bad object with a message naming the field, a ModelVersion spec cannot be edited, the status
subresource keeps every field the models define, and `kubectl get mlops` lists all kinds.

The rule cases are the unit tests' table (tests/unit/test_api_cel.py), so the CEL evaluator used offline and
the apiserver are held to the same objects.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_operator.api.v1alpha1 import GROUP, KINDS, VERSION, kind_info
from mlops_operator.api.v1alpha1.modelversion import IMMUTABLE_MESSAGE

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "manifests" / "examples"


def _load_cases():
    path = REPO / "tests" / "unit" / "test_api_cel.py"
    spec = importlib.util.spec_from_file_location("mlops_api_rule_cases", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


CASES = _load_cases()
REJECTED = [c for c in CASES.NEGATIVE + CASES.SCHEMA_NEGATIVE if c.old_edits is None]
ACCEPTED = [c for c in CASES.POSITIVE if c.old_edits is None]


def kubectl(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
    return done


@pytest.fixture(scope="module")
def crds(kube_env):
    """crds/ applied (server-side, as a GitOps tool would) and Established."""
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=mlops-crd-test", "-f", str(REPO / "crds"))
    names = [f"crd/{k.crd_name}" for k in KINDS]
    kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
    return names


@pytest.fixture(scope="module")
def api(kube_env, crds):
    from kubernetes import client, config

    return client.CustomObjectsApi(config.new_client_from_config(config_file=os.environ["KUBECONFIG"]))


@pytest.fixture(scope="module")
def ns(crds):
    name = f"crd-test-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def _create(api, ns: str, obj: dict[str, Any], dry_run: bool = True) -> dict[str, Any]:
    info = kind_info(obj["kind"])
    return api.create_namespaced_custom_object(
        GROUP, VERSION, ns, info.plural, obj, dry_run="All" if dry_run else None, field_validation="Strict"
    )


def _rejection(call) -> str:
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as err:
        call()
    assert err.value.status == 422, err.value.body
    return json.loads(err.value.body)["message"]


# -------------------------------------------------------------------------------------------- installation


def test_given_the_crds_when_applied_then_names_short_names_and_category_are_served(crds):
    resources = kubectl("api-resources", "--api-group", GROUP, "-o", "wide").stdout
    for info in KINDS:
        line = next(line for line in resources.splitlines() if line.startswith(info.plural + " "))
        assert info.short_names[0] in line.split() and info.kind in line and "mlops" in line, line


def test_given_the_crds_when_applied_twice_then_nothing_changes(crds):
    again = kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=mlops-crd-test",
                    "-f", str(REPO / "crds")).stdout
    assert again.count("serverside-applied") == len(KINDS)
    gens = json.loads(kubectl("get", *crds, "-o", "json").stdout)["items"]
    assert all(c["metadata"]["generation"] == c["status"].get("observedGeneration", c["metadata"]["generation"])
               for c in gens)


@pytest.fixture(scope="module")
def examples_created(api, ns):
    created = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        obj = yaml.safe_load(path.read_text())
        created[obj["kind"]] = _create(api, ns, obj, dry_run=False)
    return created


@pytest.mark.parametrize("kind", [k.kind for k in KINDS])
def test_given_the_example_of_a_kind_when_created_then_the_apiserver_accepts_it_unchanged(examples_created, kind):
    sent = yaml.safe_load((EXAMPLES / f"{kind.lower()}.yaml").read_text())
    stored = examples_created[kind]
    assert stored["spec"] == sent["spec"], "the apiserver pruned or defaulted a field of the example"


def test_given_one_object_of_each_kind_when_getting_the_mlops_category_then_all_kinds_are_listed(examples_created, ns):
    out = kubectl("get", "mlops", "-n", ns, "-o", "name").stdout.split()
    assert sorted(name.split("/")[0] for name in out) == sorted(f"{k.kind.lower()}.{GROUP}" for k in KINDS)


def test_given_short_names_when_used_with_kubectl_then_each_resolves(examples_created, ns):
    for info in KINDS:
        got = kubectl("get", info.short_names[0], "-n", ns, "-o", "name").stdout.split()
        assert len(got) == 1 and got[0].startswith(f"{info.kind.lower()}.{GROUP}/"), got


# ------------------------------------------------------------------------------------------------ rules


@pytest.mark.parametrize("path", sorted((EXAMPLES / "invalid").glob("*.yaml")), ids=lambda p: p.stem)
def test_given_an_invalid_example_when_applied_then_rejected_naming_the_field(api, ns, path):
    text = path.read_text()
    expect = dict(line[2:].split(": ", 1) for line in text.splitlines() if line.startswith("# expect-"))
    message = _rejection(lambda: _create(api, ns, yaml.safe_load(text)))
    assert expect["expect-field"] in message and expect["expect-message"] in message, message


@pytest.mark.parametrize("case", REJECTED, ids=lambda c: c.id)
def test_given_an_object_breaking_a_rule_when_applied_then_rejected_with_its_message_at_its_field(api, ns, case):
    message = _rejection(lambda: _create(api, ns, case.obj()))
    assert f"{case.field}:" in message or f'"{case.field}"' in message, message
    assert case.message in message, message


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda c: c.id)
def test_given_a_valid_variant_when_applied_then_accepted(api, ns, case):
    _create(api, ns, case.obj())


# --------------------------------------------------------------------------------------- immutable spec


def test_given_a_modelversion_when_its_spec_is_edited_then_rejected_but_labels_may_change(api, ns):
    mv = yaml.safe_load((EXAMPLES / "modelversion.yaml").read_text())
    mv["metadata"]["name"] = "immutable-check"
    _create(api, ns, mv, dry_run=False)
    edited = {"spec": {"training": {"hyperparameters": {"n_estimators": 300}}}}
    message = _rejection(lambda: api.patch_namespaced_custom_object(
        GROUP, VERSION, ns, "modelversions", "immutable-check", edited))
    assert f"spec: Invalid value: \"object\": {IMMUTABLE_MESSAGE}" in message, message
    relabeled = api.patch_namespaced_custom_object(
        GROUP, VERSION, ns, "modelversions", "immutable-check", {"metadata": {"labels": {"team": "ml"}}})
    assert relabeled["metadata"]["labels"]["team"] == "ml"
    assert relabeled["spec"] == mv["spec"]


# ----------------------------------------------------------------------------------------------- status


def _sample(schema: dict[str, Any]) -> Any:
    """A value for every field of ``schema`` (to prove the status schema keeps what the models write)."""
    if "enum" in schema:
        return schema["enum"][-1]
    kind = schema.get("type")
    if kind == "string":
        return "2024-05-01T12:00:00Z" if schema.get("format") == "date-time" else "x"
    if kind == "integer":
        return min(schema.get("minimum", 0) + 3, schema.get("maximum", 10**6))
    if kind == "number":
        return 0.5
    if kind == "boolean":
        return True
    if kind == "array":
        return [_sample(schema["items"])]
    if kind == "object" and "properties" in schema:
        return {k: _sample(v) for k, v in schema["properties"].items()}
    if kind == "object" and "additionalProperties" in schema:
        return {"key": _sample(schema["additionalProperties"])}
    return {"free": [1, "form"]}  # preserve-unknown-fields


@pytest.mark.parametrize("info", KINDS, ids=lambda k: k.kind)
def test_given_a_status_with_every_field_when_written_then_it_reads_back_unpruned_and_parses(
        api, ns, examples_created, info):
    from mlops_operator.api.crdgen import openapi_schema

    status = _sample(openapi_schema(info)["properties"]["status"])
    name = examples_created[info.kind]["metadata"]["name"]
    api.patch_namespaced_custom_object_status(GROUP, VERSION, ns, info.plural, name, {"status": status},
                                              field_validation="Strict")
    stored = api.get_namespaced_custom_object(GROUP, VERSION, ns, info.plural, name)
    assert stored["status"] == status
    parsed = info.model.model_validate(stored)
    assert parsed.status.to_dict() == status


def test_given_a_modelversion_status_when_listed_then_columns_answer_what_and_how_good(api, ns, examples_created):
    name = examples_created["ModelVersion"]["metadata"]["name"]
    status = {"phase": "Ready", "stage": "Production", "metrics": {"accuracy": 0.97},
              "primaryMetric": {"name": "accuracy", "value": 0.97},
              "conditions": [{"type": "Ready", "status": "True", "reason": "Registered"}]}
    api.patch_namespaced_custom_object_status(GROUP, VERSION, ns, "modelversions", name, {"status": status})
    header, row = kubectl("get", "mv", name, "-n", ns).stdout.splitlines()
    assert header.split() == ["NAME", "MODEL", "PHASE", "METRIC", "VALUE", "STAGE", "READY", "REASON", "AGE"]
    assert row.split()[:8] == [name, "breast-cancer", "Ready", "accuracy", "0.97", "Production", "True", "Registered"]


def test_given_a_modeldeployment_status_when_listed_then_stable_candidate_weight_and_phase_show(
        api, ns, examples_created):
    name = examples_created["ModelDeployment"]["metadata"]["name"]
    url = f"http://{name}.{ns}.svc:8080"
    status = {"phase": "Progressing", "stableVersion": "bc-v1", "candidateVersion": "bc-v2", "canaryWeight": 10,
              "conditions": [{"type": "Ready", "status": "True", "reason": "StableServing"}],
              "endpoint": {"url": url}}
    api.patch_namespaced_custom_object_status(GROUP, VERSION, ns, "modeldeployments", name, {"status": status})
    header, row = kubectl("get", "mdep", name, "-n", ns).stdout.splitlines()
    assert header.split() == ["NAME", "MODEL", "STABLE", "CANDIDATE", "WEIGHT", "PHASE", "READY", "REASON",
                              "ENDPOINT", "AGE"]
    assert row.split()[:9] == [name, "breast-cancer", "bc-v1", "bc-v2", "10", "Progressing", "True",
                               "StableServing", url]


def test_given_the_status_subresource_when_a_spec_change_is_sent_through_it_then_the_spec_is_untouched(
        api, ns, examples_created):
    name = examples_created["RetrainPolicy"]["metadata"]["name"]
    before = api.get_namespaced_custom_object(GROUP, VERSION, ns, "retrainpolicies", name)
    body = copy.deepcopy(before)
    body["spec"]["cooldown"] = "5m"
    body["status"] = {"phase": "Idle"}
    after = api.replace_namespaced_custom_object_status(GROUP, VERSION, ns, "retrainpolicies", name, body)
    assert after["spec"] == before["spec"] and after["status"]["phase"] == "Idle"
