"""MinIO, Prometheus and Alertmanager of the local cluster are real and wired together."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import pathlib
import socket
import threading
import time
import uuid

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

pytestmark = pytest.mark.integration


def test_given_minio_when_put_and_get_then_bytes_and_checksum_round_trip(s3_env, s3_client):
    s3 = s3_client
    key = f"tests/round-trip/{uuid.uuid4().hex}"
    body = os.urandom(256 * 1024)
    s3.put_object(Bucket=s3_env["S3_BUCKET"], Key=key, Body=body)
    got = s3.get_object(Bucket=s3_env["S3_BUCKET"], Key=key)["Body"].read()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(body).hexdigest()
    s3.delete_object(Bucket=s3_env["S3_BUCKET"], Key=key)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict]] = []

    def do_POST(self):  # noqa: N802 (http.server API)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        _Receiver.received.append((self.headers.get("Authorization", ""), json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def test_given_a_target_and_rule_when_metric_crosses_then_prometheus_fires_and_alertmanager_delivers_v4(cluster_env):
    prometheus, token = cluster_env["PROMETHEUS_URL"], pathlib.Path(cluster_env["ALERT_WEBHOOK_TOKEN_FILE"]).read_text().strip()
    test_id = uuid.uuid4().hex[:8]
    # A real scrape target on loopback, registered through file service discovery.
    registry = CollectorRegistry()
    gauge = Gauge("mlops_infra_test_value", "test gauge", ["test_id"], registry=registry)
    gauge.labels(test_id).set(5)
    port = _free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    targets = pathlib.Path(cluster_env["PROMETHEUS_TARGETS_DIR"]) / f"test-{test_id}.json"
    rules = pathlib.Path(cluster_env["PROMETHEUS_RULES_DIR"]) / f"test-{test_id}.yaml"
    receiver = http.server.HTTPServer(("127.0.0.1", int(cluster_env["ALERT_TEST_RECEIVER_PORT"])), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        targets.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"test_id_target": test_id}}]))
        rules.write_text(
            "groups:\n- name: infra-test-%s\n  rules:\n  - alert: MLOpsInfraTest\n"
            "    expr: mlops_infra_test_value{test_id=\"%s\"} > 1\n"
            "    labels: {mlops_test_receiver: \"true\", test_id: \"%s\"}\n" % (test_id, test_id, test_id)
        )
        httpx.post(f"{prometheus}/-/reload", timeout=10).raise_for_status()

        def scraped():
            r = httpx.get(f"{prometheus}/api/v1/query", params={"query": f'mlops_infra_test_value{{test_id="{test_id}"}}'}, timeout=10)
            return r.json()["data"]["result"]

        result = _wait(scraped, 60, "Prometheus to scrape the test target")
        assert float(result[0]["value"][1]) == 5.0

        def delivered():
            return [p for auth, p in _Receiver.received if p.get("commonLabels", {}).get("test_id") == test_id]

        payloads = _wait(delivered, 90, "Alertmanager to deliver the alert to the test receiver")
        auth = [a for a, p in _Receiver.received if p.get("commonLabels", {}).get("test_id") == test_id][0]
        assert auth == f"Bearer {token}"
        assert payloads[0]["version"] == "4"
        assert payloads[0]["status"] == "firing"
        assert payloads[0]["alerts"][0]["labels"]["alertname"] == "MLOpsInfraTest"
        assert payloads[0]["alerts"][0]["fingerprint"]
    finally:
        targets.unlink(missing_ok=True)
        rules.unlink(missing_ok=True)
        httpx.post(f"{prometheus}/-/reload", timeout=10)
        receiver.shutdown()
        server.shutdown()
