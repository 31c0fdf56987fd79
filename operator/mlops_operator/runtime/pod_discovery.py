"""`mlops-pod-discovery`: pod service discovery for a Prometheus built without `kubernetes_sd_configs`.

Runs as a sidecar of the chart's in-cluster Prometheus (`batteries.enabled`). Every interval it lists the
pods of the scraped namespaces, keeps the Running ones annotated `prometheus.io/scrape: "true"` (the model
servers and routers carry that annotation) and writes their `<podIP>:<prometheus.io/port>` targets, with
`namespace`, `pod` and the metrics path as labels, to a file_sd JSON file that Prometheus re-reads. The
file is replaced atomically and only when its content changed.

Environment:
    MLOPS_DISCOVERY_NAMESPACES  comma-separated namespaces to list pods in; empty = all namespaces.
    MLOPS_DISCOVERY_OUTPUT      the file_sd JSON file to write. Default /sd/pods.json.
    MLOPS_DISCOVERY_INTERVAL    seconds between listings. Default 5.

Needs only `list` on pods in those namespaces (in-cluster ServiceAccount credentials).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Iterable

log = logging.getLogger("mlops.pod_discovery")

SCRAPE, PORT, PATH = "prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path"


def scrape_targets(pods: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """file_sd target groups of the scrapeable pods, one group per pod, sorted by address (deterministic)."""
    groups = []
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        annotations = meta.get("annotations") or {}
        if annotations.get(SCRAPE) != "true" or status.get("phase") != "Running" or not status.get("podIP"):
            continue
        address = f"{status['podIP']}:{annotations.get(PORT, '8080')}"
        labels = {"namespace": meta["namespace"], "pod": meta["name"],
                  "__metrics_path__": annotations.get(PATH, "/metrics")}
        groups.append({"targets": [address], "labels": labels})
    return sorted(groups, key=lambda group: (group["targets"][0], group["labels"]["namespace"]))


def namespaces_from(value: str) -> list[str]:
    """The namespaces to list pods in; [] means all namespaces."""
    return sorted({name.strip() for name in value.split(",") if name.strip()})


def write_if_changed(path: str, document: str, previous: str | None) -> str:
    """Replace `path` atomically with `document` unless it is what was written last; returns the document."""
    if document != previous:
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(document)
        os.replace(tmp, path)
    return document


def list_pods(api: Any, namespaces: list[str]) -> list[dict[str, Any]]:
    """Raw pod lists (plain dicts, as the pure function above takes them), one call per namespace."""
    if not namespaces:
        return json.loads(api.list_pod_for_all_namespaces(_preload_content=False).data)["items"]
    pods: list[dict[str, Any]] = []
    for namespace in namespaces:
        pods.extend(json.loads(api.list_namespaced_pod(namespace, _preload_content=False).data)["items"])
    return pods


def main() -> None:
    from kubernetes import client, config  # only here: the pure functions above stay importable without it

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    namespaces = namespaces_from(os.environ.get("MLOPS_DISCOVERY_NAMESPACES", ""))
    output = os.environ.get("MLOPS_DISCOVERY_OUTPUT", "/sd/pods.json")
    interval = float(os.environ.get("MLOPS_DISCOVERY_INTERVAL", "5"))
    config.load_incluster_config()
    api = client.CoreV1Api()
    log.info("listing pods in %s every %ss into %s", ",".join(namespaces) or "all namespaces", interval, output)
    last = write_if_changed(output, "[]", None) if not os.path.exists(output) else None
    while True:
        try:
            last = write_if_changed(output, json.dumps(scrape_targets(list_pods(api, namespaces)), indent=1), last)
        except Exception as exc:  # noqa: BLE001 - a failed listing keeps the last targets and retries
            log.warning("listing pods failed, keeping the last targets: %s", exc)
        time.sleep(interval)


if __name__ == "__main__":
    main()
