"""How apiserver answers become the operator's error kinds (what a handler does next depends on it)."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from mlops_operator.providers import kube

pytestmark = pytest.mark.unit


def _api_error(status: int, message: str) -> ApiException:
    exc = ApiException(status=status, reason="reason")
    exc.body = json.dumps({"kind": "Status", "message": message})
    return exc


@pytest.mark.parametrize(("status", "message", "kind"), [
    (403, "forbidden", kube.Forbidden),
    (409, "conflict", kube.Conflict),
    (422, "spec.x: Invalid value", kube.Invalid),
    # Server-side apply of a field an upstream CRD does not declare: permanent, not an outage.
    (500, ".spec.rules[0].backendRefs[0].bogus: field not declared in schema", kube.Invalid),
    (500, "etcdserver: request timed out", kube.Unavailable),
    (503, "unavailable", kube.Unavailable),
])
def test_given_an_apiserver_error_when_translated_then_the_kind_says_what_to_do(status, message, kind):
    err = kube._translate(_api_error(status, message), "PATCH /x")
    assert type(err) is kind and message in str(err)
