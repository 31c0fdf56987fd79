"""Pod service discovery for the local Prometheus through file_sd.

Debian's Prometheus is built without the Kubernetes service discovery, so this small loop stands in for
`kubernetes_sd_configs: [{role: pod}]`, as the chart's `mlops-pod-discovery` sidecar does in a cluster: every
interval it lists the pods and writes the scrape targets that sidecar's own functions choose
(`mlops_operator.runtime.pod_discovery`) to a file_sd JSON file, atomically. It lists through kubectl with a
read-only kubeconfig, so the host needs no Kubernetes client library.

Usage: python3 pod_sd.py KUBECONFIG OUT.json [INTERVAL_SECONDS]
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "operator"))
from mlops_operator.runtime.pod_discovery import scrape_targets, write_if_changed  # noqa: E402  (stdlib only)


def main(kubeconfig: str, out: str, interval: str = "2") -> None:
    last = None
    while True:
        try:
            raw = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "get", "pods", "-A", "-o", "json"],
                                 capture_output=True, text=True, timeout=30, check=True).stdout
            last = write_if_changed(out, json.dumps(scrape_targets(json.loads(raw)["items"]), indent=1), last)
        except (subprocess.SubprocessError, ValueError, KeyError) as exc:
            print(f"pod-sd: listing pods failed: {exc}", file=sys.stderr, flush=True)
        time.sleep(float(interval))


if __name__ == "__main__":
    main(*sys.argv[1:])
