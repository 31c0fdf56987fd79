"""Operator process settings: Kopf configured under mlops.dev, scope and peering from the environment."""

from __future__ import annotations

import logging

import kopf
import pytest

from mlops_operator import main
from mlops_operator.operator_settings import OperatorSettings

pytestmark = pytest.mark.unit


def _configured(**env) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    main.configure(settings, OperatorSettings(**env))
    return settings


def test_given_defaults_when_configured_then_finalizer_and_storage_under_mlops_dev_and_standalone():
    s = _configured()
    assert s.persistence.finalizer == "mlops.dev/finalizer"
    assert isinstance(s.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert s.persistence.progress_storage.prefix == "mlops.dev"
    assert s.persistence.diffbase_storage.prefix == "mlops.dev"
    assert s.peering.standalone is True
    assert s.posting.level == logging.INFO


def test_given_defaults_when_configured_then_watches_time_out_on_both_ends():
    s = _configured(watch_server_timeout=120, watch_client_timeout=150)
    assert (s.watching.server_timeout, s.watching.client_timeout) == (120, 150)
    assert s.watching.client_timeout > s.watching.server_timeout


def test_given_peering_name_when_configured_then_peering_is_mandatory_with_priority():
    s = _configured(peering="mlops", peering_priority=10)
    assert (s.peering.standalone, s.peering.mandatory, s.peering.name, s.peering.priority) == (False, True, "mlops", 10)


@pytest.mark.parametrize("namespaces, clusterwide, expected", [
    ("", True, []),
    ("team-a, team-b,", False, ["team-a", "team-b"]),
])
def test_given_namespace_list_when_run_then_scope_follows_it(namespaces, clusterwide, expected):
    kwargs = main.run_kwargs(OperatorSettings(namespaces=namespaces))
    assert (kwargs["clusterwide"], kwargs["namespaces"]) == (clusterwide, expected)


def test_given_ports_when_run_then_liveness_on_health_port_or_off():
    assert main.run_kwargs(OperatorSettings())["liveness_endpoint"] == "http://0.0.0.0:8080/healthz"
    assert main.run_kwargs(OperatorSettings(health_port=0))["liveness_endpoint"] is None


def test_given_env_when_settings_loaded_then_mlops_prefixed_variables_apply(monkeypatch):
    monkeypatch.setenv("MLOPS_RUNTIME_IMAGE", "registry.local/runtime:1")
    monkeypatch.setenv("MLOPS_S3_SECRET", "team-s3")
    monkeypatch.setenv("MLOPS_PEERING", "mlops")
    s = OperatorSettings()
    assert (s.runtime_image, s.s3_secret, s.peering, s.http_port) == ("registry.local/runtime:1", "team-s3", "mlops", 8081)


@pytest.mark.parametrize("message, kept", [
    ("Timer 'reconcile' succeeded.", False),
    ("Timer 'reconcile' failed temporarily: StorageUnavailable", True),
    ("Handler 'artifacts' succeeded.", True),
])
def test_given_kopf_log_line_when_filtered_then_only_routine_ticks_dropped(message, kept):
    record = logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, message, None, None)
    assert main.QuietTicks().filter(record) is kept
