"""The chart's podDefaults: operator-wide settings of every pod the operator creates, as MLOPS_POD_DEFAULTS."""

from __future__ import annotations

import json

import pytest
from test_chart import env_of, helm_template, one, render

from mlops_operator.api.v1alpha1.pod import parse_pod_defaults

pytestmark = pytest.mark.chart

DEFAULTS = {"imagePullSecrets": [{"name": "corp-registry"}], "nodeSelector": {"pool": "ml"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
            "priorityClassName": "ml-batch", "securityContext": {"omitIds": True}}


def _operator_env(docs):
    return env_of(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0])


def test_given_no_pod_defaults_when_rendered_then_the_operator_gets_none():
    assert "MLOPS_POD_DEFAULTS" not in _operator_env(render())


def test_given_pod_defaults_when_rendered_then_the_operator_parses_exactly_them():
    env = _operator_env(render(set_json=[f"podDefaults={json.dumps(DEFAULTS)}"]))
    parsed = parse_pod_defaults(env["MLOPS_POD_DEFAULTS"]["value"])
    assert parsed is not None and parsed.to_dict() == {**DEFAULTS, "tolerations": DEFAULTS["tolerations"]}


@pytest.mark.parametrize("value", ['podDefaults={"hostNetwork": true}', 'podDefaults={"imagePullSecrets": [{}]}'])
def test_given_a_pod_default_outside_the_block_when_rendered_then_the_schema_rejects_it(value):
    result = helm_template(set_json=[value], check=False)
    assert result.returncode != 0 and "/podDefaults" in result.stderr
