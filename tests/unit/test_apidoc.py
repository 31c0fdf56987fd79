"""The API reference (docs/api-reference.md) is rendered from the CRDs and kept current like them."""

from __future__ import annotations

import pytest

from mlops_operator.api import apidoc, crdgen
from mlops_operator.api.v1alpha1 import KINDS

pytestmark = pytest.mark.unit


def reference() -> str:
    return apidoc.render([crdgen.crd(k) for k in KINDS])


def field_paths(node: dict, path: str) -> set[str]:
    """Every named field below ``node`` as the reference spells it (list items ``[]``, map values ``.*``)."""
    return {p for p, _, _, is_field in apidoc._walk(node, path) if is_field}


@pytest.mark.parametrize("info", KINDS, ids=lambda k: k.kind)
def test_given_a_kind_when_rendered_then_every_spec_and_status_field_has_a_row_with_its_description(info):
    text = reference()
    schema = crdgen.openapi_schema(info)
    assert f"## {info.kind}\n" in text
    for part in ("spec", "status"):
        for path in field_paths(schema["properties"][part], part):
            assert f"| `{path}` |" in text, path
    model_field = next(iter(info.spec_model.model_fields.values()))
    assert apidoc._cell(model_field.description) in text


def test_given_cel_rules_and_bounds_when_rendered_then_messages_and_limits_appear():
    text = reference()
    assert "- `spec.source`: exactly one of uri or builtin must be set" in text
    assert "| `spec.strategy.canary.steps[].weight` |" in text
    assert "≤ 100" in text.split("| `spec.strategy.canary.steps[].weight` |")[1].split("\n")[0]
    assert "`.status.endpoint.url`" in text  # the printer columns are listed with their paths


def test_given_the_repository_then_the_reference_is_current_and_an_edit_is_reported(tmp_path, capsys):
    assert crdgen.stale_files(crdgen.default_root()) == [], "run `make crds`"
    crdgen.write(tmp_path)
    (tmp_path / apidoc.PATH).write_text("hand-edited\n")
    assert crdgen.main(["--check", "--root", str(tmp_path)]) == 1
    assert f"outdated: {apidoc.PATH}" in capsys.readouterr().err


def test_given_two_renders_then_the_reference_is_byte_identical():
    assert reference() == reference()
