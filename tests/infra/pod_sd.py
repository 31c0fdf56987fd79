"""Pod service discovery for the local Prometheus through file_sd.

Debian's Prometheus is built without the Kubernetes service discovery, so this small loop stands in for
`kubernetes_sd_configs: [{role: pod}]`: every interval it lists Running pods annotated
`prometheus.io/scrape: "true"` and writes their `<podIP>:<prometheus.io/port>` targets (with namespace, pod
and metrics path) to a file_sd JSON file, atomically. Uses kubectl with a read-only kubeconfig.

Usage: python3 pod_sd.py KUBECONFIG OUT.json [INTERVAL_SECONDS]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def targets(pods: dict) -> list[dict]:
    out = []
    for pod in pods.get("items", []):
        meta, status = pod["metadata"], pod.get("status", {})
        ann = meta.get("annotations") or {}
        if ann.get("prometheus.io/scrape") != "true" or status.get("phase") != "Running" or not status.get("podIP"):
            continue
        port = ann.get("prometheus.io/port", "8080")
        labels = {"namespace": meta["namespace"], "pod": meta["name"],
                  "__metrics_path__": ann.get("prometheus.io/path", "/metrics")}
        out.append({"targets": [f"{status['podIP']}:{port}"], "labels": labels})
    return sorted(out, key=lambda t: t["targets"][0])


def main(kubeconfig: str, out: str, interval: str = "2") -> None:
    last = None
    while True:
        try:
            raw = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "get", "pods", "-A", "-o", "json"],
                                 capture_output=True, text=True, timeout=30, check=True).stdout
            doc = json.dumps(targets(json.loads(raw)), indent=1)
            if doc != last:
                tmp = f"{out}.tmp"
                with open(tmp, "w") as f:
                    f.write(doc)
                os.replace(tmp, out)
                last = doc
        except (subprocess.SubprocessError, ValueError) as exc:
            print(f"pod-sd: listing pods failed: {exc}", file=sys.stderr, flush=True)
        time.sleep(float(interval))


if __name__ == "__main__":
    main(*sys.argv[1:])
