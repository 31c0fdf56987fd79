"""The in-cluster Prometheus's pod discovery (runtime/pod_discovery.py): which pods become scrape targets."""

from __future__ import annotations

import json

import pytest

from mlops_operator.runtime.pod_discovery import list_pods, namespaces_from, scrape_targets, write_if_changed

pytestmark = pytest.mark.unit


def pod(namespace, name, ip="10.0.0.1", phase="Running", annotations=None):
    default = {"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics"}
    return {"metadata": {"namespace": namespace, "name": name,
                         "annotations": default if annotations is None else annotations},
            "status": {"phase": phase, "podIP": ip}}


def test_given_annotated_running_pods_when_listed_then_each_is_a_target_with_namespace_pod_and_path():
    groups = scrape_targets([pod("team-a", "srv", "10.0.0.2"),
                             pod("team-a", "router", "10.0.0.1", annotations={"prometheus.io/scrape": "true",
                                                                              "prometheus.io/port": "9000",
                                                                              "prometheus.io/path": "/m"})])
    assert groups == [
        {"targets": ["10.0.0.1:9000"], "labels": {"namespace": "team-a", "pod": "router", "__metrics_path__": "/m"}},
        {"targets": ["10.0.0.2:8080"], "labels": {"namespace": "team-a", "pod": "srv",
                                                  "__metrics_path__": "/metrics"}},
    ]


@pytest.mark.parametrize("excluded", [
    pod("ns", "pending", phase="Pending"),
    pod("ns", "no-ip", ip=""),
    pod("ns", "not-annotated", annotations={}),
    pod("ns", "scrape-false", annotations={"prometheus.io/scrape": "false"}),
])
def test_given_a_pod_not_running_or_not_annotated_when_listed_then_it_is_no_target(excluded):
    assert scrape_targets([excluded]) == []


def test_given_equal_pod_names_in_two_namespaces_when_listed_then_both_are_targets_labelled_by_namespace():
    groups = scrape_targets([pod("team-b", "srv", "10.0.0.9"), pod("team-a", "srv", "10.0.0.8")])
    assert [(g["labels"]["namespace"], g["labels"]["pod"]) for g in groups] == [("team-a", "srv"), ("team-b", "srv")]


def test_given_a_missing_port_annotation_when_listed_then_the_model_server_port_is_assumed():
    groups = scrape_targets([pod("ns", "srv", annotations={"prometheus.io/scrape": "true"})])
    assert groups[0]["targets"] == ["10.0.0.1:8080"]
    assert groups[0]["labels"]["__metrics_path__"] == "/metrics"


def test_given_a_namespace_list_with_blanks_and_repeats_when_parsed_then_sorted_unique_names_and_empty_means_all():
    assert namespaces_from(" b, a,,b ") == ["a", "b"]
    assert namespaces_from("") == []


def test_given_the_same_document_twice_when_written_then_the_file_is_replaced_only_on_change(tmp_path):
    out = tmp_path / "pods.json"
    doc = json.dumps(scrape_targets([pod("ns", "srv")]))
    last = write_if_changed(str(out), doc, None)
    assert json.loads(out.read_text())[0]["labels"]["pod"] == "srv"
    out.write_text("tampered")
    write_if_changed(str(out), doc, last)
    assert out.read_text() == "tampered"  # unchanged document: no write
    write_if_changed(str(out), "[]", last)
    assert out.read_text() == "[]"


class FakeCoreV1:
    """What the discovery reads of the Kubernetes client: raw pod lists per namespace, or of all namespaces."""

    def __init__(self, pods):
        self.pods, self.calls = pods, []

    def _response(self, items):
        return type("Response", (), {"data": json.dumps({"items": items}).encode()})()

    def list_namespaced_pod(self, namespace, _preload_content):
        self.calls.append(namespace)
        return self._response([p for p in self.pods if p["metadata"]["namespace"] == namespace])

    def list_pod_for_all_namespaces(self, _preload_content):
        self.calls.append("*")
        return self._response(self.pods)


def test_given_scraped_namespaces_when_listing_then_only_those_are_asked_and_all_namespaces_only_when_none_given():
    api = FakeCoreV1([pod("team-a", "srv"), pod("team-b", "srv"), pod("other", "srv")])
    assert [p["metadata"]["namespace"] for p in list_pods(api, ["team-a", "team-b"])] == ["team-a", "team-b"]
    assert api.calls == ["team-a", "team-b"]
    assert len(list_pods(api, [])) == 3 and api.calls[-1] == "*"
