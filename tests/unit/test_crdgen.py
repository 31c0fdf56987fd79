"""The generated CRDs: structural (the apiserver's rules), described, bounded, deterministic, and current."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from mlops_operator.api import crdgen
from mlops_operator.api.schema import UnsupportedSchema, structural_schema
from mlops_operator.api.v1alpha1 import GROUP, KINDS, kind_info
from mlops_operator.api.v1alpha1.common import ApiModel

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
# What Kubernetes allows in a structural schema node (apiextensions v1 JSONSchemaProps we use).
ALLOWED_KEYS = {
    "type", "description", "properties", "required", "items", "additionalProperties", "enum", "format",
    "pattern", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minItems", "maxItems", "minProperties", "maxProperties", "nullable", "anyOf", "not",
    "x-kubernetes-validations", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
}


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{key}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]")


def _schema(kind: str) -> dict[str, Any]:
    return crdgen.crd(kind_info(kind))["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


KIND_NAMES = [k.kind for k in KINDS]


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_given_a_kind_schema_then_every_node_is_structural(kind):
    for path, node in _nodes(_schema(kind)):
        assert set(node) <= ALLOWED_KEYS, (path, set(node) - ALLOWED_KEYS)
        assert "$ref" not in str(node), path
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        else:
            assert "anyOf" not in node, path
            assert node.get("type") or node.get("x-kubernetes-preserve-unknown-fields"), f"{path}: no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        if "exclusiveMinimum" in node or "exclusiveMaximum" in node:
            assert node.get("exclusiveMinimum", True) is True and node.get("exclusiveMaximum", True) is True
        if "not" in node:  # a junctor may only name fields the node itself declares, and carry no types
            assert set(node["not"]) == {"required"} and set(node["not"]["required"]) <= set(node["properties"])
        if "enum" in node:
            assert all(isinstance(v, str) for v in node["enum"]) and node["type"] == "string", path
        if node.get("x-kubernetes-list-type") == "map":
            assert set(node["x-kubernetes-list-map-keys"]) <= set(node["items"]["required"]), path


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_given_a_kind_schema_then_metadata_is_unconstrained_and_spec_required(kind):
    schema = _schema(kind)
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["required"] == ["spec"]


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_given_a_kind_schema_then_every_property_has_a_description(kind):
    undocumented = [f"{path}.{key}" for path, node in _nodes(_schema(kind))
                    for key, sub in node.get("properties", {}).items()
                    if key != "metadata" and not sub.get("description")]
    assert undocumented == []


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_given_a_kind_schema_then_free_form_fields_are_only_the_intended_ones(kind):
    free = sorted(path for path, node in _nodes(_schema(kind)) if node.get("x-kubernetes-preserve-unknown-fields"))
    # affinity parts are core/v1 objects passed to the pod as written (the apiserver checks them there)
    intended = re.compile(r"(hyperparameters|parameters|\.value|allowedValues\[\]|values\[\]|\.pod\.affinity\.\w+)$")
    assert [p for p in free if not intended.search(p)] == []


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_given_a_kind_schema_then_lists_maps_and_cel_read_strings_are_bounded(kind):
    """The apiserver estimates CEL cost from maxItems/maxProperties/maxLength; unbounded means rejected or slow."""
    unbounded = []
    for path, node in _nodes(_schema(kind)):
        if node.get("type") == "array" and "maxItems" not in node:
            unbounded.append(path)
        if isinstance(node.get("additionalProperties"), dict) and "maxProperties" not in node:
            unbounded.append(path)
        if node.get("type") == "string" and "matches(" in str(node.get("x-kubernetes-validations")) \
                and "maxLength" not in node:
            unbounded.append(path)
    assert unbounded == []


@pytest.mark.parametrize("info", KINDS, ids=lambda k: k.kind)
def test_given_a_kind_then_the_crd_has_names_category_status_subresource_and_columns(info):
    crd = crdgen.crd(info)
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == f"{info.plural}.{GROUP}"
    assert names["categories"] == ["mlops"] and names["shortNames"] == list(info.short_names)
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert version["storage"] and version["served"]
    columns = version["additionalPrinterColumns"]
    assert columns[-1]["name"] == "Age" and any(c["name"] == "Phase" for c in columns)


@pytest.mark.parametrize("info", KINDS, ids=lambda k: k.kind)
def test_given_printer_columns_then_each_json_path_exists_in_the_schema_with_the_column_type(info):
    schema = _schema(info.kind)
    types = {"string": "string", "integer": "integer", "number": "number", "date": "string", "boolean": "boolean"}
    for column in crdgen.crd(info)["spec"]["versions"][0]["additionalPrinterColumns"]:
        if column["jsonPath"] == ".metadata.creationTimestamp":
            continue
        node = schema
        for part, filter_key in re.findall(r'\.(\w+)(?:\[\?\(@\.(\w+)=="\w+"\)\])?', column["jsonPath"]):
            node = node["properties"][part]
            if filter_key:  # a list filtered on one of its items' fields: the column reads an item
                node = node["items"]
                assert filter_key in node["properties"], column
        assert node["type"] == types[column["type"]], column
        if column["type"] == "date":
            assert node.get("format") == "date-time", column


def test_given_the_expected_short_names_then_they_match_the_contract():
    assert {k.plural: k.short_names for k in KINDS} == {
        "featuresets": ("fs",), "modelversions": ("mv",), "modeldeployments": ("mdep",),
        "retrainpolicies": ("rp",), "hyperparametersearches": ("hps",), "batchpredictions": ("bp",),
    }


def test_given_the_modelversion_crd_then_its_spec_carries_the_immutability_transition_rule():
    rules = _schema("ModelVersion")["properties"]["spec"]["x-kubernetes-validations"]
    assert {"rule": "self == oldSelf", "message": "spec is immutable: create a new ModelVersion"} in rules


def test_given_two_renders_then_output_is_byte_identical():
    first = {k.kind: crdgen.render(k) for k in KINDS}  # its wall time: `make bench` (latency)
    assert first == {k.kind: crdgen.render(k) for k in KINDS}
    for text in first.values():
        assert text.startswith("# Generated by")
        yaml.safe_load(text)


def test_given_the_repository_then_generated_crds_are_current():
    assert crdgen.stale_files(REPO) == [], "run `make crds`"


def test_given_the_chart_copy_then_it_is_identical_to_crds():
    for info in KINDS:
        name = crdgen.file_name(info)
        assert (REPO / "crds" / name).read_text() == (REPO / "charts/mlops-operator/crds" / name).read_text()


def test_given_crds_dir_then_its_kustomization_lists_every_crd_and_the_chart_has_none():
    listed = yaml.safe_load((REPO / "crds" / "Kustomization").read_text())["resources"]
    assert listed == sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    assert sorted(p.name for p in (REPO / "charts/mlops-operator/crds").iterdir()) == listed


def test_given_an_empty_root_when_checked_then_missing_files_are_listed_and_write_fixes_them(tmp_path):
    assert crdgen.main(["--check", "--root", str(tmp_path)]) == 1
    assert crdgen.main(["--root", str(tmp_path)]) == 0
    assert crdgen.main(["--check", "--root", str(tmp_path)]) == 0
    assert crdgen.write(tmp_path) == []  # unchanged files are not rewritten


def test_given_an_edited_and_a_stray_crd_when_checked_then_both_are_reported(tmp_path, capsys):
    crdgen.write(tmp_path)
    edited = tmp_path / "crds" / "modelversions.mlops.dev.yaml"
    edited.write_text(edited.read_text().replace("immutable", "mutable"))
    shutil.copy(edited, tmp_path / "charts/mlops-operator/crds/old.mlops.dev.yaml")
    assert crdgen.main(["--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "outdated: crds/modelversions.mlops.dev.yaml" in err
    assert "not generated (remove it): charts/mlops-operator/crds/old.mlops.dev.yaml" in err
    assert "make crds" in err


def test_given_the_module_entrypoint_when_run_with_check_then_it_exits_zero_on_this_checkout():
    done = subprocess.run([sys.executable, "-m", "mlops_operator.api.crdgen", "--check"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_given_a_union_without_structural_form_when_generated_then_it_is_refused_clearly():
    class Bad(ApiModel):
        value: int | list[int]

    with pytest.raises(UnsupportedSchema, match="Bad.value"):
        structural_schema(Bad)


@pytest.mark.parametrize("info", KINDS, ids=lambda k: k.kind)
def test_given_any_kind_when_listed_then_ready_and_reason_columns_read_the_ready_condition(info):
    columns = {c["name"]: c["jsonPath"] for c in crdgen.crd(info)["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Reason"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert ("Endpoint" in columns) == (info.kind == "ModelDeployment")
