"""Every CEL rule of the generated CRDs, evaluated with a real CEL implementation (cel-python) on a table
of positive and negative cases; the same cases drive the Python twins of the rules (pydantic) here and
the real apiserver in tests/integration/test_crds.py.

The evaluator walks an object along its structural schema the way the apiserver does: a rule runs on
every node that is present, with ``self`` typed by the schema (numbers are doubles), transition rules
(``oldSelf``) only when an old object is given, and an error reported at the node's path plus the rule's
``fieldPath``.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml
from celpy import celtypes
from pydantic import ValidationError

from mlops_operator.api.crdgen import openapi_schema
from mlops_operator.api.v1alpha1 import KINDS, kind_info
from mlops_operator.api.v1alpha1.common import ApiModel, CelRule

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "manifests" / "examples"
DELETE = object()

# ----------------------------------------------------------------------------------------- evaluator

_ENV = celpy.Environment()


def _and(x: Any, y: Any) -> Any:
    """CEL ``&&`` (error && error is an error). cel-python 0.5 gets the value right but raises a TypeError
    whose message embeds the whole expression tree, which for the long unrolled rules exhausts memory."""
    if not isinstance(x, celtypes.BoolType) and not isinstance(y, celtypes.BoolType):
        return x
    return celtypes.logical_and(x, y)


@functools.lru_cache(maxsize=None)
def _program(rule: str) -> celpy.Runner:
    return _ENV.program(_ENV.compile(rule), functions={"_&&_": _and})


def to_cel(value: Any, schema: dict[str, Any]) -> Any:
    """A JSON value as CEL sees it under ``schema`` (the apiserver types values by the schema)."""
    kind = schema.get("type")
    if kind == "number":
        return celtypes.DoubleType(float(value))
    if kind == "integer":
        return celtypes.IntType(value)
    if kind == "object" and isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        return celtypes.MapType({celtypes.StringType(k): to_cel(v, props.get(k, {})) for k, v in value.items()})
    if kind == "object" and isinstance(value, dict) and "additionalProperties" in schema:
        sub = schema["additionalProperties"]
        return celtypes.MapType({celtypes.StringType(k): to_cel(v, sub) for k, v in value.items()})
    if kind == "array" and isinstance(value, list):
        return celtypes.ListType([to_cel(v, schema.get("items", {})) for v in value])
    return celpy.json_to_cel(value)


@dataclass(frozen=True)
class Verdict:
    path: str  # where the apiserver reports it: node path + fieldPath
    node: str  # schema location of the rule (stable across list indexes / map keys)
    rule: str
    message: str
    passed: bool
    error: str | None = None  # a CEL runtime error (a rule bug: missing has() guard, type mismatch)


def evaluate(schema: dict[str, Any], value: Any, old: Any = None, path: str = "", node: str = "") -> list[Verdict]:
    """Evaluate every x-kubernetes-validations rule reachable in ``value``."""
    if value is None:
        return []
    out: list[Verdict] = []
    for rule in schema.get("x-kubernetes-validations", []):
        text = rule["rule"]
        if "oldSelf" in text and old is None:
            continue
        activation = {"self": to_cel(value, schema)}
        if "oldSelf" in text:
            activation["oldSelf"] = to_cel(old, schema)
        try:
            result, error = _program(text).evaluate(activation), None
        except celpy.CELEvalError as exc:
            result, error = False, repr(exc)
        if isinstance(result, celpy.CELEvalError):
            result, error = False, repr(result)
        where = path + rule.get("fieldPath", "")
        out.append(Verdict(where.lstrip("."), node, text, rule["message"], bool(result), error))
    old_map = old if isinstance(old, dict) else {}
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                out += evaluate(sub, value[key], old_map.get(key), f"{path}.{key}", f"{node}.{key}")
        if "additionalProperties" in schema:
            for key, item in value.items():
                out += evaluate(schema["additionalProperties"], item, old_map.get(key), f"{path}[{key}]", f"{node}{{}}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out += evaluate(schema["items"], item, None, f"{path}[{i}]", f"{node}[]")
    return out


@functools.lru_cache(maxsize=None)
def crd_schema(kind: str) -> dict[str, Any]:
    return openapi_schema(kind_info(kind))


def failures(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[Verdict]:
    return [v for v in evaluate(crd_schema(obj["kind"]), obj, old) if not v.passed]


# ----------------------------------------------------------------------------------------------- cases


def example(kind: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / f"{kind.lower()}.yaml").read_text())


def _apply(obj: dict[str, Any], edits: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    for dotted, value in edits.items():
        *parents, last = [int(p) if p.isdigit() else p for p in dotted.split("/")]
        node = obj
        for p in parents:
            node = node.setdefault(p, {}) if isinstance(node, dict) else node[p]
        if value is DELETE:
            del node[last]
        else:
            node[last] = copy.deepcopy(value)
    return obj


@dataclass(frozen=True)
class Case:
    """An edit of a kind's example; ``message`` None means it must be accepted.

    Edit keys are '/'-separated paths (list indexes as numbers); ``old_edits`` makes it an update of the
    example edited that way (for transition rules). ``via`` "schema" marks a rule the OpenAPI schema
    enforces (not CEL): the CEL evaluator must pass it, pydantic and the apiserver must reject it.
    """

    id: str
    kind: str
    edits: dict[str, Any]
    message: str | None = None
    field: str | None = None
    old_edits: dict[str, Any] | None = None
    via: str = "cel"

    def obj(self) -> dict[str, Any]:
        o = _apply(example(self.kind), self.edits)
        o["metadata"] = {"name": f"case-{self.id}"[:63].rstrip("-")}
        return o

    def old(self) -> dict[str, Any] | None:
        if self.old_edits is None:
            return None
        o = _apply(example(self.kind), self.old_edits)
        o["metadata"] = {"name": f"case-{self.id}"[:63].rstrip("-")}
        return o


S3 = "s3://mlops/raw/bc.parquet"
SHA = "a" * 64
FS, MV, MD, RP, HPS = "FeatureSet", "ModelVersion", "ModelDeployment", "RetrainPolicy", "HyperparameterSearch"
BP = "BatchPrediction"
F0 = "spec/features/0"
T = "spec/template/training"
CANARY = "spec/strategy/canary/steps"
GRID_SPACE = {"n_estimators": {"values": [50, 100]}}

# A template reading an s3:// file and gating on a lower-is-better metric (RetrainPolicy, HyperparameterSearch).
URI_TEMPLATE = {f"{T}/dataset": {"uri": S3, "target": "label"}, f"{T}/metrics": ["accuracy", "roc_auc", "log_loss"],
                "spec/template/gates/maxMetrics": {"log_loss": 0.5}}

# Every field of a pod block, valid: each kind's pod block (and the rules inside it) must accept it.
POD_FULL = {
    "serviceAccountName": "bc-serving", "automountServiceAccountToken": True, "imagePullSecrets": [{"name": "registry"}],
    "nodeSelector": {"pool": "ml"},
    "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
                    {"key": "gpu", "value": "yes", "effect": "NoSchedule"}, {"operator": "Exists"}],
    "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
    "priorityClassName": "serving",
    "securityContext": {"omitIds": True, "seccompProfile": {"type": "Localhost", "localhostProfile": "mlops.json"}},
    "containerSecurityContext": {"runAsUser": 1000680000, "seccompProfile": {"type": "RuntimeDefault"}},
}
POD_PATHS = ((FS, "spec/materialize/pod"), (BP, "spec/pod"), (MV, "spec/training/pod"), (MD, "spec/serving/pod"),
             (RP, f"{T}/pod"), (HPS, f"{T}/pod"))

# Point-in-time labels for training.featureSet.
PIT_LABELS = {"source": {"uri": "s3://mlops/labels/churn.csv"}, "entityColumn": "customer_id",
              "timestampColumn": "event_time", "labelColumn": "churned", "maxAge": "24h"}
PIT = {"name": "churn-features", "labels": PIT_LABELS}

CASES: tuple[Case, ...] = (
    # --- FeatureSet: source
    Case("fs-uri-source", FS, {"spec/source": {"uri": S3, "format": "csv"}}),
    Case("fs-uri-and-builtin", FS, {"spec/source": {"uri": S3, "builtin": "iris"}},
         "exactly one of uri or builtin must be set", "spec.source"),
    Case("fs-no-source", FS, {"spec/source": {}}, "exactly one of uri or builtin must be set", "spec.source"),
    Case("fs-format-without-uri", FS, {"spec/source/format": "csv"}, "format applies only with uri",
         "spec.source.format"),
    Case("fs-uri-dotdot", FS, {"spec/source": {"uri": "s3://mlops/raw/../secret/x.parquet"}},
         "uri must not contain '.' or '..' path segments", "spec.source.uri"),
    Case("fs-uri-dot-at-end", FS, {"spec/source": {"uri": "s3://mlops/raw/."}},
         "uri must not contain '.' or '..' path segments", "spec.source.uri"),
    Case("fs-uri-dotted-names-ok", FS, {"spec/source": {"uri": "s3://mlops/raw/v1..2/.hidden/x.parquet"}}),
    # --- FeatureSet: features
    Case("fs-impute-constant", FS, {f"{F0}/impute": {"strategy": "constant", "value": "0"}}),
    Case("fs-impute-constant-without-value", FS, {f"{F0}/impute": {"strategy": "constant"}},
         "value is required with strategy constant and not allowed otherwise", "spec.features[0].impute.value"),
    Case("fs-impute-value-without-constant", FS, {f"{F0}/impute": {"strategy": "median", "value": "1"}},
         "value is required with strategy constant and not allowed otherwise", "spec.features[0].impute.value"),
    Case("fs-checks-min-above-max", FS, {f"{F0}/checks": {"min": 5, "max": 1}},
         "min must not be greater than max", "spec.features[0].checks.min"),
    Case("fs-bucketize-without-boundaries", FS, {"spec/features/3/boundaries": DELETE},
         "boundaries is required with transform bucketize and not allowed otherwise",
         "spec.features[3].boundaries"),
    Case("fs-boundaries-without-bucketize", FS, {f"{F0}/boundaries": [1.0, 2.0]},
         "boundaries is required with transform bucketize and not allowed otherwise",
         "spec.features[0].boundaries"),
    Case("fs-boundaries-not-increasing", FS, {"spec/features/3/boundaries": [0.1, 0.1]},
         "boundaries must be strictly increasing", "spec.features[3].boundaries"),
    Case("fs-standardize-category", FS, {f"{F0}/dtype": "category", f"{F0}/impute": DELETE, f"{F0}/checks": DELETE},
         "transform standardize|minmax|log1p|bucketize needs dtype float or int", "spec.features[0].transform"),
    Case("fs-onehot-category", FS, {f"{F0}/dtype": "category", f"{F0}/transform": "onehot", f"{F0}/checks": DELETE,
                                    f"{F0}/impute": {"strategy": "missing_category"}}),
    Case("fs-category-untransformed", FS, {f"{F0}/dtype": "category", f"{F0}/transform": "none", f"{F0}/impute": DELETE,
                                           f"{F0}/checks": DELETE},
         "dtype category needs transform onehot (a model takes numbers)", "spec.features[0].transform"),
    Case("fs-range-check-on-category", FS, {f"{F0}/dtype": "category", f"{F0}/transform": "onehot",
                                            f"{F0}/impute": DELETE, f"{F0}/checks": {"min": 0}},
         "checks.min and checks.max need a numeric dtype; use checks.allowedValues for a category",
         "spec.features[0].checks"),
    Case("fs-online-with-entity-key", FS, {"spec/entityKey": "id", "spec/online": {"enabled": True, "ttl": "1h"}}),
    Case("fs-online-without-entity-key", FS, {"spec/online": {"enabled": True}},
         "online.enabled needs entityKey (online values are looked up by entity)", "spec.online.enabled"),
    Case("fs-online-impute-every-feature-imputed", FS, {
        "spec/entityKey": "id", "spec/online": {"enabled": True, "onMissing": "impute"},
        "spec/features": [{"name": "a", "impute": {"strategy": "mean"}}, {"name": "b", "impute": {"strategy": "median"}}]}),
    Case("fs-online-impute-without-imputation", FS, {"spec/entityKey": "id",
                                                     "spec/online": {"enabled": True, "onMissing": "impute"}},
         "online.onMissing impute needs features listed, each with an impute strategy other than none",
         "spec.online.onMissing"),
    Case("fs-target-is-entity-key", FS, {"spec/entityKey": "target"},
         "target, entityKey and timestampColumn must name different columns", "spec"),
    Case("fs-onehot-float", FS, {f"{F0}/transform": "onehot"},
         "transform onehot needs dtype category, bool or int", "spec.features[0].transform"),
    Case("fs-mean-on-category", FS, {f"{F0}/dtype": "category", f"{F0}/transform": "onehot", f"{F0}/checks": DELETE,
                                     f"{F0}/impute": {"strategy": "mean"}},
         "impute.strategy mean|median|knn needs dtype float or int", "spec.features[0].impute"),
    Case("fs-missing-category-on-float", FS, {f"{F0}/impute": {"strategy": "missing_category"}},
         "impute.strategy missing_category needs dtype category", "spec.features[0].impute"),
    Case("fs-columns-apart", FS, {"spec/entityKey": "id", "spec/timestampColumn": "event_time"}),
    Case("fs-target-is-feature", FS, {f"{F0}/name": "target"},
         "target must not also be listed in features", "spec.target"),
    Case("fs-entity-key-is-feature", FS, {"spec/entityKey": "mean radius"},
         "entityKey must not also be listed in features", "spec.entityKey"),
    Case("fs-timestamp-is-feature", FS, {"spec/timestampColumn": "mean area"},
         "timestampColumn must not also be listed in features", "spec.timestampColumn"),
    # --- ModelVersion
    Case("mv-artifact-only", MV, {"spec/training": DELETE, "spec/gates": DELETE,
                                  "spec/artifact": {"uri": "s3://mlops/models/bc/bc-v0/", "sha256": SHA}}),
    Case("mv-training-and-artifact", MV, {"spec/artifact": {"uri": "s3://mlops/models/bc/v0/", "sha256": SHA}},
         "exactly one of training or artifact must be set", "spec"),
    Case("mv-neither-training-nor-artifact", MV, {"spec/training": DELETE},
         "exactly one of training or artifact must be set", "spec"),
    Case("mv-artifact-dotdot", MV, {"spec/training": DELETE, "spec/gates": DELETE,
                                    "spec/artifact": {"uri": "s3://mlops/models/../other/", "sha256": SHA}},
         "uri must not contain '.' or '..' path segments", "spec.artifact.uri"),
    Case("mv-feature-set", MV, {"spec/training/dataset": DELETE, "spec/training/featureSet": {"name": "bc-features"}}),
    Case("mv-feature-set-and-dataset", MV, {"spec/training/featureSet": {"name": "bc-features"}},
         "exactly one of featureSet or dataset must be set", "spec.training"),
    Case("mv-no-data", MV, {"spec/training/dataset": DELETE},
         "exactly one of featureSet or dataset must be set", "spec.training"),
    Case("mv-uri-dataset", MV, {"spec/training/dataset": {"uri": S3, "format": "parquet", "target": "label"}}),
    Case("mv-uri-dataset-without-target", MV, {"spec/training/dataset": {"uri": S3}},
         "target is required with uri and not allowed with builtin", "spec.training.dataset.target"),
    Case("mv-builtin-with-target", MV, {"spec/training/dataset/target": "label"},
         "target is required with uri and not allowed with builtin", "spec.training.dataset.target"),
    Case("mv-dataset-format-without-uri", MV, {"spec/training/dataset/format": "csv"},
         "format applies only with uri", "spec.training.dataset.format"),
    Case("mv-pit-labels", MV, {"spec/training/dataset": DELETE, "spec/training/featureSet": PIT}),
    Case("mv-pit-labels-builtin", MV, {"spec/training/dataset": DELETE,
                                       "spec/training/featureSet": {**PIT, "labels": {**PIT_LABELS, "source": {
                                           "builtin": "iris"}}}},
         "labels.source needs uri: builtin datasets have no event times", "spec.training.featureSet.labels.source"),
    Case("mv-pit-labels-same-columns", MV, {"spec/training/dataset": DELETE,
                                            "spec/training/featureSet": {**PIT, "labels": {
                                                **PIT_LABELS, "labelColumn": "event_time"}}},
         "entityColumn, timestampColumn and labelColumn must name different columns",
         "spec.training.featureSet.labels.labelColumn"),
    Case("mv-pit-labels-entity-is-label", MV, {"spec/training/dataset": DELETE,
                                               "spec/training/featureSet": {**PIT, "labels": {
                                                   **PIT_LABELS, "entityColumn": "churned"}}},
         "entityColumn, timestampColumn and labelColumn must name different columns",
         "spec.training.featureSet.labels.labelColumn"),
    Case("mv-pit-labels-no-entity-column", MV, {"spec/training/dataset": DELETE, "spec/training/featureSet": {
        **PIT, "labels": {k: v for k, v in PIT_LABELS.items() if k != "entityColumn"}}}),
    Case("rp-template-pit-labels", RP, {f"{T}/dataset": DELETE, f"{T}/featureSet": PIT}),
    Case("hps-template-pit-labels", HPS, {f"{T}/dataset": DELETE, f"{T}/featureSet": PIT}),
    Case("mv-gates-all-listed", MV, {"spec/gates": {"minMetrics": {"accuracy": 0.9}, "maxMetrics": {},
                                                   "mustBeatStable": {"modelDeployment": "bc", "metric": "roc_auc"}}}),
    Case("mv-gate-metric-not-computed", MV, {"spec/gates/minMetrics": {"r2": 0.5}},
         "gates may only use metrics listed in training.metrics", "spec.gates"),
    Case("mv-must-beat-metric-not-computed", MV,
         {"spec/gates/mustBeatStable": {"modelDeployment": "bc", "metric": "log_loss"}},
         "gates may only use metrics listed in training.metrics", "spec.gates"),
    Case("mv-gate-unknown-metric", MV, {"spec/training/metrics": DELETE, "spec/gates/maxMetrics": {"bogus": 1}},
         "keys must be one of: accuracy, precision_macro, precision_weighted, recall_macro, recall_weighted, "
         "f1_macro, f1_weighted, roc_auc, log_loss, r2, mae, mse, rmse", "spec.gates.maxMetrics"),
    Case("mv-metadata-only-update", MV, {}, old_edits={}),
    Case("mv-spec-edit", MV, {"spec/training/hyperparameters/n_estimators": 300}, old_edits={},
         message="spec is immutable: create a new ModelVersion", field="spec"),
    # --- ModelDeployment
    Case("md-pinned-version", MD, {"spec/track": DELETE, "spec/version": "bc-v1"}),
    Case("md-version-and-track", MD, {"spec/version": "bc-v1"},
         "exactly one of version or track must be set", "spec"),
    Case("md-neither-version-nor-track", MD, {"spec/track": DELETE},
         "exactly one of version or track must be set", "spec"),
    Case("md-kserve", MD, {"spec/serving/runtime": "kserve", "spec/traffic/router": "kserve"}),
    Case("md-kserve-runtime-builtin-router", MD, {"spec/serving/runtime": "kserve"},
         "serving.runtime kserve and traffic.router kserve must be used together", "spec.traffic"),
    Case("md-shadow", MD, {"spec/strategy": {"type": "Shadow", "shadow": {"mirrorPercent": 50}}}),
    Case("md-shadow-plain-service", MD, {"spec/strategy": {"type": "Shadow"}, "spec/traffic/router": "service"},
         "strategy.type Shadow needs traffic.router builtin or gatewayAPI", "spec.strategy"),
    Case("md-canary-without-steps", MD, {"spec/strategy/canary": DELETE},
         "canary is required when type is Canary and not allowed otherwise", "spec.strategy.canary"),
    Case("md-recreate-with-canary", MD, {"spec/strategy/type": "Recreate"},
         "canary is required when type is Canary and not allowed otherwise", "spec.strategy.canary"),
    Case("md-blue-green", MD, {"spec/strategy": {"type": "BlueGreen", "blueGreen": {"autoPromote": False}}}),
    Case("md-canary-with-blue-green", MD, {"spec/strategy/blueGreen": {"autoPromote": True}},
         "blueGreen is allowed only when type is BlueGreen", "spec.strategy.blueGreen"),
    Case("md-canary-with-shadow", MD, {"spec/strategy/shadow": {"mirrorPercent": 10}},
         "shadow is allowed only when type is Shadow", "spec.strategy.shadow"),
    Case("md-ten-increasing-steps", MD, {CANARY: [{"weight": w} for w in range(10, 101, 10)]}),
    Case("md-steps-decreasing", MD, {CANARY: [{"weight": 50}, {"weight": 20}]},
         "steps[].weight must be strictly increasing", "spec.strategy.canary.steps"),
    Case("md-steps-equal-at-end", MD, {CANARY: [{"weight": w} for w in (10, 20, 30, 40, 50, 60, 70, 80, 90, 90)]},
         "steps[].weight must be strictly increasing", "spec.strategy.canary.steps"),
    Case("md-analysis-query", MD, {"spec/analysis/metrics/0": {"name": "q", "query": "vector(0)", "min": 0, "max": 1}}),
    Case("md-analysis-builtin-and-query", MD, {"spec/analysis/metrics/0/query": "vector(0)"},
         "exactly one of builtin or query must be set", "spec.analysis.metrics[0]"),
    Case("md-analysis-no-bounds", MD, {"spec/analysis/metrics/0/max": DELETE},
         "at least one of min or max must be set", "spec.analysis.metrics[0]"),
    Case("md-analysis-min-above-max", MD, {"spec/analysis/metrics/0/min": 0.5},
         "min must not be greater than max", "spec.analysis.metrics[0].min"),
    Case("md-post-promotion", MD, {"spec/analysis/postPromotion": {"duration": "10m"}}),
    Case("md-post-promotion-zero", MD, {"spec/analysis/postPromotion": {"duration": "0m0s"}},
         "postPromotion.duration must be longer than 0s", "spec.analysis.postPromotion.duration"),
    Case("md-logging", MD, {"spec/logging": {"sampleRate": 0.5, "batchRows": 100, "flushInterval": "5s",
                                             "maxBufferRows": 1000}}),
    Case("md-logging-defaults", MD, {"spec/logging": {}}),
    Case("md-logging-buffer-below-batch", MD, {"spec/logging": {"batchRows": 20000}},
         "maxBufferRows must be at least batchRows", "spec.logging.maxBufferRows"),
    Case("md-logging-flush-zero", MD, {"spec/logging": {"flushInterval": "0s"}},
         "flushInterval must be longer than 0s", "spec.logging.flushInterval"),
    Case("md-gateway", MD, {"spec/traffic": {"router": "gatewayAPI", "parentRefs": [{"name": "gw"}]}}),
    Case("md-gateway-without-parent", MD, {"spec/traffic/router": "gatewayAPI"},
         "parentRefs is required with router gatewayAPI and not allowed otherwise", "spec.traffic.parentRefs"),
    Case("md-parent-without-gateway", MD, {"spec/traffic/parentRefs": [{"name": "gw"}]},
         "parentRefs is required with router gatewayAPI and not allowed otherwise", "spec.traffic.parentRefs"),
    # --- pod overrides (one shape for every kind; tested on serving.pod and training.pod)
    *(Case(f"{kind.lower()}-pod-full", kind, {path: POD_FULL}) for kind, path in POD_PATHS),
    Case("md-autoscaling", MD, {"spec/serving/autoscaling": {"minReplicas": 2, "maxReplicas": 5,
                                                             "targetCpuUtilization": 70, "targetRequestsPerSecond": 20},
                                "spec/serving/podDisruptionBudget": {"maxUnavailable": 1}}),
    Case("md-autoscaling-no-target", MD, {"spec/serving/autoscaling": {"maxReplicas": 5}},
         "autoscaling needs targetCpuUtilization or targetRequestsPerSecond", "spec.serving.autoscaling"),
    Case("md-autoscaling-min-above-max", MD,
         {"spec/serving/autoscaling": {"minReplicas": 6, "maxReplicas": 5, "targetCpuUtilization": 70}},
         "minReplicas must not be greater than maxReplicas", "spec.serving.autoscaling.minReplicas"),
    Case("md-autoscaling-kserve", MD, {"spec/serving/runtime": "kserve", "spec/traffic/router": "kserve",
                                       "spec/serving/autoscaling": {"maxReplicas": 5, "targetCpuUtilization": 70}},
         "autoscaling applies to the builtin runtime only (KServe scales its own pods)", "spec.serving.autoscaling"),
    Case("md-budget-both", MD, {"spec/serving/podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": "10%"}},
         "exactly one of minAvailable or maxUnavailable must be set", "spec.serving.podDisruptionBudget"),
    Case("md-pod-toleration-exists-with-value", MD,
         {"spec/serving/pod": {"tolerations": [{"key": "ml", "operator": "Exists", "value": "x"}]}},
         "value must be empty when operator is Exists", "spec.serving.pod.tolerations[0].value"),
    Case("md-pod-toleration-equal-without-key", MD, {"spec/serving/pod": {"tolerations": [{"value": "x"}]}},
         "key is required unless operator is Exists", "spec.serving.pod.tolerations[0].key"),
    Case("md-pod-toleration-seconds-without-no-execute", MD,
         {"spec/serving/pod": {"tolerations": [{"key": "ml", "effect": "NoSchedule", "tolerationSeconds": 5}]}},
         "tolerationSeconds applies only with effect NoExecute", "spec.serving.pod.tolerations[0].tolerationSeconds"),
    Case("md-pod-localhost-seccomp-without-profile", MD,
         {"spec/serving/pod": {"securityContext": {"seccompProfile": {"type": "Localhost"}}}},
         "localhostProfile is required with type Localhost and not allowed otherwise",
         "spec.serving.pod.securityContext.seccompProfile.localhostProfile"),
    Case("mv-pod-omit-ids-with-user", MV, {"spec/training/pod": {"securityContext": {"omitIds": True, "runAsUser": 5}}},
         "runAsUser, runAsGroup and fsGroup cannot be set together with omitIds",
         "spec.training.pod.securityContext.omitIds"),
    # --- RetrainPolicy
    Case("rp-metric-trigger", RP,
         {"spec/triggers": {"metric": {"query": "x", "op": "<", "threshold": 0.8, "for": "10m"}}}),
    Case("rp-feature-set-trigger", RP, {"spec/triggers": {"onFeatureSetUpdate": True},
                                        f"{T}/dataset": DELETE, f"{T}/featureSet": {"name": "bc-features"}}),
    Case("rp-uri-template", RP, URI_TEMPLATE),
    Case("rp-no-trigger", RP, {"spec/triggers": {}},
         "triggers needs at least one of alerts, schedule, metric or onFeatureSetUpdate", "spec.triggers"),
    Case("rp-only-false-and-empty-triggers", RP, {"spec/triggers": {"alerts": [], "onFeatureSetUpdate": False}},
         "triggers needs at least one of alerts, schedule, metric or onFeatureSetUpdate", "spec.triggers"),
    Case("rp-feature-set-trigger-without-feature-set", RP, {"spec/triggers/onFeatureSetUpdate": True},
         "triggers.onFeatureSetUpdate needs template.training.featureSet", "spec.triggers.onFeatureSetUpdate"),
    Case("rp-template-gate-not-computed", RP, {"spec/template/gates/minMetrics": {"f1_macro": 0.9}},
         "gates may only use metrics listed in training.metrics", "spec.template.gates"),
    Case("rp-template-two-data", RP, {f"{T}/featureSet": {"name": "bc-features"}},
         "exactly one of featureSet or dataset must be set", "spec.template.training"),
    # --- HyperparameterSearch
    Case("hps-uri-template", HPS, URI_TEMPLATE),
    # `values` is typeless, invisible to CEL: these two are the schema's (not / minProperties).
    Case("hps-values-and-range", HPS, {"spec/space/n_estimators/min": 1, "spec/space/n_estimators/max": 5},
         "must not validate the schema (not)", "spec.space.n_estimators", via="schema"),
    Case("hps-empty-range", HPS, {"spec/space/max_depth": {}},
         "should have at least 1 properties", "spec.space.max_depth", via="schema"),
    Case("hps-min-only", HPS, {"spec/space/max_depth": {"min": 2}},
         "min and max must be set together", "spec.space[max_depth].max"),
    Case("hps-min-not-below-max", HPS, {"spec/space/max_depth/min": 6},
         "min must be less than max", "spec.space[max_depth].min"),
    Case("hps-log-from-zero", HPS, {"spec/space/learning_rate/min": 0},
         "scale log needs min > 0", "spec.space[learning_rate].scale"),
    Case("hps-values-with-type", HPS, {"spec/space/n_estimators/type": "int"},
         "type and scale apply only to min/max ranges", "spec.space[n_estimators]"),
    Case("hps-bad-key", HPS, {"spec/space/Bad-Name": {"values": [1]}},
         "keys must match ^[a-z_][a-z0-9_]*$", "spec.space"),
    Case("hps-long-key", HPS, {"spec/space/" + "p" * 65: {"values": [1]}},
         "keys must be at most 64 characters", "spec.space"),
    Case("hps-grid", HPS, {"spec/algorithm": "grid", "spec/space": GRID_SPACE}),
    Case("hps-grid-with-range", HPS, {"spec/algorithm": "grid"},
         "algorithm grid needs values, not min/max, in every space entry", "spec.space"),
    Case("hps-objective-not-computed", HPS, {"spec/objective/metric": "f1_macro"},
         "objective.metric must be listed in template.training.metrics", "spec.objective.metric"),
    # --- BatchPrediction
    Case("bp-uri-input", BP, {"spec/input": {"uri": S3, "format": "parquet"}}),
    Case("bp-uri-and-feature-set", BP, {"spec/input/uri": S3},
         "input: exactly one of uri or featureSet must be set", "spec.input"),
    Case("bp-no-input", BP, {"spec/input": {}}, "input: exactly one of uri or featureSet must be set", "spec.input"),
    Case("bp-format-without-uri", BP, {"spec/input/format": "csv"},
         "input.format applies only with input.uri", "spec.input.format"),
    Case("bp-passthrough-prediction", BP, {"spec/passthrough": ["id", "prediction"]},
         "passthrough must not name the column 'prediction' (the output column)", "spec.passthrough"),
)
NEGATIVE = tuple(c for c in CASES if c.message and c.via == "cel")
SCHEMA_NEGATIVE = tuple(c for c in CASES if c.message and c.via == "schema")
POSITIVE = tuple(c for c in CASES if not c.message)


def _python_rules() -> dict[str, CelRule]:
    """Rules with a Python twin, by message (walking every model reachable from the kinds)."""
    seen: dict[str, CelRule] = {}
    stack: list[type] = [k.spec_model for k in KINDS]
    visited: set[type] = set()
    while stack:
        cls = stack.pop()
        if cls in visited:
            continue
        visited.add(cls)
        seen.update({r.message: r for r in cls.cel_rules if r.check is not None})
        for f in cls.model_fields.values():
            stack += [t for t in _model_types(f.annotation)]
    return seen


def _model_types(annotation: Any) -> list[type]:
    if isinstance(annotation, type) and issubclass(annotation, ApiModel):
        return [annotation]
    return [t for arg in getattr(annotation, "__args__", ()) for t in _model_types(arg)]


PYTHON_RULES = _python_rules()
# The Python twins of the schema-only rules, by kind.
PYTHON_RULES_WITHOUT_CEL = {HPS: "exactly one of values or min/max must be set"}


# ----------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("kind", [k.kind for k in KINDS])
def test_given_the_kinds_example_when_evaluated_then_every_rule_passes_without_error(kind):
    verdicts = evaluate(crd_schema(kind), example(kind))
    assert verdicts, "the example reaches no CEL rule at all"
    assert [v for v in verdicts if not v.passed] == []


@pytest.mark.parametrize("case", POSITIVE, ids=lambda c: c.id)
def test_given_a_valid_variant_when_evaluated_then_cel_and_pydantic_accept_it(case):
    assert failures(case.obj(), case.old()) == []
    kind_info(case.kind).model.model_validate(case.obj())


@pytest.mark.parametrize("case", NEGATIVE, ids=lambda c: c.id)
def test_given_an_invalid_variant_when_evaluated_then_exactly_its_rule_fails_at_the_named_field(case):
    failed = failures(case.obj(), case.old())
    assert [(v.path, v.message) for v in failed] == [(case.field, case.message)]
    assert failed[0].error is None, f"the rule errored instead of evaluating to false: {failed[0].error}"


@pytest.mark.parametrize("case", [c for c in NEGATIVE if c.old_edits is None], ids=lambda c: c.id)
def test_given_an_invalid_variant_when_parsed_then_pydantic_rejects_it_too(case):
    with pytest.raises(ValidationError) as err:
        kind_info(case.kind).model.model_validate(case.obj())
    if case.message in PYTHON_RULES:
        assert case.message in str(err.value)


@pytest.mark.parametrize("case", SCHEMA_NEGATIVE, ids=lambda c: c.id)
def test_given_a_variant_only_the_schema_rejects_when_evaluated_then_cel_passes_and_pydantic_rejects(case):
    assert failures(case.obj()) == []
    with pytest.raises(ValidationError, match=PYTHON_RULES_WITHOUT_CEL[case.kind]):
        kind_info(case.kind).model.model_validate(case.obj())


def _all_rules() -> set[tuple[str, str, str]]:
    out = set()

    def walk(schema: dict[str, Any], node: str, kind: str) -> None:
        for r in schema.get("x-kubernetes-validations", []):
            out.add((kind, node, r["rule"]))
        for key, sub in schema.get("properties", {}).items():
            walk(sub, f"{node}.{key}", kind)
        if isinstance(schema.get("additionalProperties"), dict):
            walk(schema["additionalProperties"], f"{node}{{}}", kind)
        if "items" in schema:
            walk(schema["items"], f"{node}[]", kind)

    for k in KINDS:
        walk(crd_schema(k.kind), "", k.kind)
    return out


def test_given_every_cel_rule_in_the_crds_then_each_has_a_negative_case():
    rejected = {(c.kind, c.message) for c in NEGATIVE}
    by_message = {}
    for kind, node, rule in _all_rules():
        message = next(r["message"] for r in _rules_at(kind, node) if r["rule"] == rule)
        by_message.setdefault(message, set()).add(kind)
    missing = [m for m, kinds in by_message.items() if not any((k, m) in rejected for k in kinds)]
    assert missing == []


def test_given_every_cel_rule_in_the_crds_then_each_evaluates_true_somewhere_in_a_positive_case():
    passed = set()
    for kind in (k.kind for k in KINDS):
        passed |= {(kind, v.node, v.rule) for v in evaluate(crd_schema(kind), example(kind)) if v.passed}
    for case in POSITIVE:
        passed |= {(case.kind, v.node, v.rule) for v in evaluate(crd_schema(case.kind), case.obj(), case.old())
                   if v.passed}
    assert sorted(_all_rules() - passed) == []


def _rules_at(kind: str, node: str) -> list[dict[str, str]]:
    schema = crd_schema(kind)
    for part in _split_node(node):
        schema = schema["items"] if part == "[]" else schema["additionalProperties"] if part == "{}" \
            else schema["properties"][part]
    return schema.get("x-kubernetes-validations", [])


def _split_node(node: str) -> list[str]:
    parts: list[str] = []
    for piece in node.split("."):
        if not piece:
            continue
        name = piece.rstrip("[]{}")
        if name:
            parts.append(name)
        suffix = piece[len(name):]
        parts += [suffix[i:i + 2] for i in range(0, len(suffix), 2)]
    return parts


def test_given_a_list_of_ten_steps_when_the_last_pair_is_out_of_order_then_the_unrolled_rule_sees_it():
    # The strictly-increasing rule is unrolled up to maxItems: the last pair must be compared too.
    obj = Case("x", MD, {CANARY: [{"weight": w} for w in (1, 2, 3, 4, 5, 6, 7, 8, 100, 99)]}).obj()
    assert [v.message for v in failures(obj)] == ["steps[].weight must be strictly increasing"]


def test_given_the_cases_then_ids_are_unique_and_object_names_valid():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert all(len(c.obj()["metadata"]["name"]) <= 63 for c in CASES)
