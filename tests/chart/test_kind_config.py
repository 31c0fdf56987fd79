"""kind-config.yaml, the cluster of the quickstart's kind path (docs/quickstart.md), decoded strictly into
kind's own v1alpha4 config types by tests/infra/kind-config-check (built against the pinned kind release by
`make test-chart`), and what the quickstart relies on: one control-plane node of the Kubernetes minor the
project runs, and host ports that listen on loopback only."""

from __future__ import annotations

import json
import pathlib
import re

import pytest
from test_chart import CACHE, REPO_ROOT, find_tool, run

pytestmark = pytest.mark.chart

KIND_CONFIG = REPO_ROOT / "kind-config.yaml"


def check(path: pathlib.Path):
    return run(find_tool("kind-config-check", CACHE / "tools" / "bin" / "kind-config-check"), str(path), check=False)


def test_given_kind_config_when_decoded_strictly_by_kinds_types_then_it_is_valid():
    result = check(KIND_CONFIG)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["name"] == "mlops"
    assert [node["role"] for node in config["nodes"]] == ["control-plane"]


def test_given_kind_config_when_decoded_then_the_node_runs_the_projects_kubernetes_minor():
    config = json.loads(check(KIND_CONFIG).stdout)
    k8s = re.search(r'^K8S_VERSION="\$\{K8S_VERSION:-v(\d+\.\d+)\.', (REPO_ROOT / "tests/infra/lib.sh").read_text(), re.M)
    assert k8s, "K8S_VERSION not found in tests/infra/lib.sh"
    assert config["nodes"][0]["image"].startswith(f"kindest/node:v{k8s.group(1)}.")


def test_given_kind_config_when_decoded_then_every_host_port_listens_on_loopback_only():
    config = json.loads(check(KIND_CONFIG).stdout)
    assert config["networking"]["apiServerAddress"] == "127.0.0.1"
    mappings = [m for node in config["nodes"] for m in node.get("extraPortMappings", [])]
    assert {m["containerPort"] for m in mappings} == {30080, 30081}
    assert all(m["listenAddress"] == "127.0.0.1" for m in mappings)


@pytest.mark.parametrize(("broken", "complaint"), [
    ("extraPortMappings:", "extraPortMapings:"),             # a misspelt field
    ("role: control-plane", "role: controlplane"),           # an unknown role
    ("kind: Cluster", "kind: Clusters"),                     # the wrong kind
    ("hostPort: 30080", "hostPort: \"30080\""),              # the wrong type
])
def test_given_a_broken_copy_when_decoded_then_the_checker_refuses_it(tmp_path, broken, complaint):
    """The checker can fail: each edit of a copy of kind-config.yaml is refused."""
    text = KIND_CONFIG.read_text()
    assert broken in text
    copy = tmp_path / "kind-config.yaml"
    copy.write_text(text.replace(broken, complaint, 1))
    result = check(copy)
    assert result.returncode != 0, complaint
