"""All of the plugin's I/O: the apiserver through the ``kubernetes`` library and the user's kubeconfig.

The kubeconfig is the one kubectl uses (``KUBECONFIG`` or ``~/.kube/config``, ``--kubeconfig``,
``--context``); the default namespace is the context's, as with kubectl. Inside a pod the service
account is used. Nothing here decides anything: the verbs get plain dicts and hand them to pure code.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from mlops_operator.builders.labels import LABEL_COMPONENT, LABEL_MANAGED_BY, MANAGED_BY
from mlops_operator.cli.kinds import API, KIND_ORDER, PLURALS
from mlops_operator.cli.world import Obj, World

_FIELDS = {"FeatureSet": "featuresets", "ModelVersion": "modelversions", "ModelDeployment": "modeldeployments",
           "RetrainPolicy": "retrainpolicies", "HyperparameterSearch": "hyperparametersearches",
           "BatchPrediction": "batchpredictions"}
JOB_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_COMPONENT} in (training,materialize,batch-predict)"
_SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class CliError(Exception):
    """A failure to show the user as one line (exit code 1)."""


class Client:
    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        from kubernetes import client, config

        self._k = client
        try:
            if kubeconfig or os.environ.get("KUBECONFIG") or os.path.exists(os.path.expanduser("~/.kube/config")):
                self.api = config.new_client_from_config(config_file=kubeconfig, context=context)
                _, active = config.list_kube_config_contexts(config_file=kubeconfig)
                if context:
                    contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
                    active = next((c for c in contexts if c["name"] == context), active)
                self.default_namespace = (active.get("context") or {}).get("namespace") or "default"
            else:
                config.load_incluster_config()
                self.api = client.ApiClient()
                with open(_SA_NAMESPACE) as f:
                    self.default_namespace = f.read().strip()
        except (config.ConfigException, OSError) as e:
            raise CliError(f"no cluster configuration: {e}") from e
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)

    # ------------------------------------------------------------------------------------------ reads

    def _call(self, fn, *args, **kwargs) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(*args, **kwargs)
        except ApiException as e:
            if e.status == 404:
                raise CliError(f"not found: {kwargs.get('name') or (args[-1] if args else '')}"
                               + (" (are the mlops.dev CRDs installed?)" if "plural" in kwargs and not kwargs.get("name") else "")) from e
            if e.status == 403:
                raise CliError(f"forbidden: {e.reason} (check your RBAC)") from e
            raise CliError(f"apiserver answered {e.status} {e.reason}") from e
        except OSError as e:  # urllib3 connection errors derive from OSError
            raise CliError(f"cannot reach the apiserver: {e}") from e

    def get(self, kind: str, name: str, namespace: str) -> Obj:
        return self._call(self.custom.get_namespaced_custom_object, *API, namespace=namespace, plural=PLURALS[kind],
                          name=name)

    def list(self, kind: str, namespace: str | None) -> list[Obj]:
        if namespace is None:
            got = self._call(self.custom.list_cluster_custom_object, *API, plural=PLURALS[kind])
        else:
            got = self._call(self.custom.list_namespaced_custom_object, *API, namespace=namespace, plural=PLURALS[kind])
        return [{"kind": kind, **item} for item in got.get("items") or []]

    def _plain(self, obj: Any) -> Obj:
        return self.api.sanitize_for_serialization(obj)

    def world(self, namespace: str | None, jobs: bool = False) -> World:
        """Every object of the five kinds in ``namespace`` (None: all namespaces), and with ``jobs`` the
        training / materialize Jobs and their pods."""
        w = World(**{_FIELDS[k]: self.list(k, namespace) for k in KIND_ORDER})
        if jobs:
            runs = self.job_world(namespace)
            w.jobs, w.pods = runs.jobs, runs.pods
        return w

    def job_world(self, namespace: str | None) -> World:
        """Only the training / materialize Jobs and their pods."""
        if namespace is None:
            jobs = self._call(self.batch.list_job_for_all_namespaces, label_selector=JOB_SELECTOR).items
            pods = self._call(self.core.list_pod_for_all_namespaces, label_selector=JOB_SELECTOR).items
        else:
            jobs = self._call(self.batch.list_namespaced_job, namespace, label_selector=JOB_SELECTOR).items
            pods = self._call(self.core.list_namespaced_pod, namespace, label_selector=JOB_SELECTOR).items
        return World(jobs=[self._plain(j) for j in jobs], pods=[self._plain(p) for p in pods])

    def job_and_pods(self, namespace: str, job_name: str) -> tuple[Obj | None, list[Obj]]:
        """A Job found by name (whatever its labels) and its pods."""
        from kubernetes.client.exceptions import ApiException

        try:
            job = self._plain(self.batch.read_namespaced_job(job_name, namespace))
        except ApiException as e:
            if e.status == 404:
                return None, []
            raise CliError(f"apiserver answered {e.status} {e.reason}") from e
        pods = self._call(self.core.list_namespaced_pod, namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}")
        return job, [self._plain(p) for p in pods.items]

    def logs(self, namespace: str, pod: str, container: str | None, follow: bool, tail: int | None) -> Iterator[str]:
        """The pod's log, line by line (streamed while the container runs with ``follow``)."""
        kwargs: dict[str, Any] = {"follow": follow, "_preload_content": False}
        if container:
            kwargs["container"] = container
        if tail is not None:
            kwargs["tail_lines"] = tail
        resp = self._call(self.core.read_namespaced_pod_log, pod, namespace, **kwargs)
        buffer = b""
        try:
            for chunk in resp.stream(4096):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", "replace")
            if buffer:
                yield buffer.decode("utf-8", "replace")
        finally:
            resp.release_conn()

    # ----------------------------------------------------------------------------------------- writes

    def patch(self, kind: str, name: str, namespace: str, body: dict[str, Any]) -> Obj:
        """A JSON merge patch (the client's default for custom objects)."""
        return self._call(self.custom.patch_namespaced_custom_object, *API, namespace=namespace,
                          plural=PLURALS[kind], name=name, body=body)
