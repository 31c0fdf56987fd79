"""ModelDeployment: serve a model and move traffic between its versions safely.

The desired version is pinned (``version``) or followed (``track``: the newest Ready version, which is how
retraining reaches serving without anyone editing a spec). The strategy decides how traffic moves; the
analysis decides whether it may.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from mlops_operator.api.v1alpha1.common import (
    AGE_COLUMN,
    READY_COLUMN,
    REASON_COLUMN,
    ApiModel,
    CelRule,
    KindInfo,
    KubeObject,
    ModelDeploymentPhase,
    PrinterColumn,
    StatusBase,
    StatusModel,
    strictly_increasing,
)
from mlops_operator.api.v1alpha1.pod import PodOverrides
from mlops_operator.api.v1alpha1.primitives import (
    DNS_LABEL_PATTERN,
    Duration,
    ModelName,
    ObjectName,
    ResourceRequirements,
)

MAX_CANARY_STEPS = 10


class TrackPolicy(StrEnum):
    LATEST_READY = "latestReady"  # the newest Ready ModelVersion of spec.model


class StrategyType(StrEnum):
    RECREATE = "Recreate"
    BLUE_GREEN = "BlueGreen"
    CANARY = "Canary"
    SHADOW = "Shadow"


class NoDataAction(StrEnum):
    HOLD = "hold"  # stay at the current step until enough samples arrive
    FAIL = "fail"  # count the interval as a failed check


class BuiltinMetric(StrEnum):
    ERROR_RATE = "errorRate"
    LATENCY_P95_SECONDS = "latencyP95Seconds"
    LATENCY_P99_SECONDS = "latencyP99Seconds"
    ACCURACY = "accuracy"  # from label feedback (docs/feedback.md); its samples are the labelled rows
    MAE = "mae"  # the regression twin of accuracy: mean absolute error of the labelled rows


class ServingRuntime(StrEnum):
    BUILTIN = "builtin"
    KSERVE = "kserve"


class CompiledModel(StrEnum):
    AUTO = "auto"
    OFF = "off"


class Router(StrEnum):
    BUILTIN = "builtin"
    GATEWAY_API = "gatewayAPI"
    KSERVE = "kserve"
    SERVICE = "service"


class Track(ApiModel):
    """Follow versions of spec.model automatically instead of pinning one."""

    policy: TrackPolicy = Field(TrackPolicy.LATEST_READY, description="latestReady: the newest Ready version.")
    match_labels: dict[str, str] | None = Field(
        None, max_length=16, description="Only versions with these labels are followed."
    )


class CanaryStep(ApiModel):
    """One traffic weight held while analysis runs."""

    weight: int = Field(ge=1, le=100, description="Percent of traffic to the candidate (1..100).")
    pause: Duration | None = Field(None, description="How long to hold this weight; one analysis interval when absent.")


class Canary(ApiModel):
    """Shift traffic to the candidate in steps."""

    steps: list[CanaryStep] = Field(
        min_length=1, max_length=MAX_CANARY_STEPS,
        description="Steps with strictly increasing weights; after the last the candidate gets 100%.",
    )

    cel_rules = (strictly_increasing("steps", MAX_CANARY_STEPS, key="weight"),)


class BlueGreen(ApiModel):
    """Bring the candidate up beside stable, then switch all traffic at once."""

    auto_promote: bool = Field(True, description="Switch when analysis passes; otherwise wait for a manual promote.")
    preview_replicas: int = Field(1, ge=0, le=100, description="Candidate replicas before the switch.")
    scale_down_delay: Duration = Field("30s", description="How long the old version stays up after the switch.")


class Shadow(ApiModel):
    """Mirror traffic to the candidate (responses discarded) and compare its answers with stable's."""

    mirror_percent: int = Field(100, ge=1, le=100, description="Percent of requests mirrored (1..100).")
    duration: Duration = Field("10m", description="How long to shadow before deciding.")
    min_agreement: float = Field(0.95, ge=0.0, le=1.0, description="Fraction of identical predictions needed (0..1).")
    agreement_tolerance: float | None = Field(
        None, ge=0.0, allow_inf_nan=False,
        description=("Numeric predictions within this tolerance (relative to their magnitude, and absolute) count "
                     "as identical, so a regression model can meet minAgreement; labels always compare exactly. "
                     "The builtin router's default (1e-9) when absent."),
    )
    auto_promote: bool = Field(False, description="Promote when agreement and analysis pass.")


def _only_for(block: str, attr: str, type_: str) -> CelRule:
    return CelRule(f"!has(self.{block}) || self.type == '{type_}'",
                   f"{block} is allowed only when type is {type_}",
                   lambda s: getattr(s, attr) is None or s.type == type_, field_path=f".{block}")


class Strategy(ApiModel):
    """How traffic moves from stable to a new version."""

    type: StrategyType = Field(description="Recreate, BlueGreen, Canary or Shadow.")
    canary: Canary | None = Field(None, description="Canary steps; required when type is Canary.")
    blue_green: BlueGreen | None = Field(None, description="Blue/green settings; only when type is BlueGreen.")
    shadow: Shadow | None = Field(None, description="Shadow settings; only when type is Shadow.")

    cel_rules = (
        CelRule("has(self.canary) == (self.type == 'Canary')",
                "canary is required when type is Canary and not allowed otherwise",
                lambda s: (s.canary is not None) == (s.type == "Canary"), field_path=".canary"),
        _only_for("blueGreen", "blue_green", "BlueGreen"),
        _only_for("shadow", "shadow", "Shadow"),
    )


class AnalysisMetric(ApiModel):
    """A check run every analysis interval: a builtin metric or a PromQL query, with bounds."""

    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63, description="Name of the check.")
    builtin: BuiltinMetric | None = Field(None, description=(
        "errorRate, latencyP95Seconds, latencyP99Seconds, accuracy (classifiers: the share of rows labelled "
        "through the feedback endpoint that were predicted right; use min) or mae (regression models: the mean "
        "absolute error of those rows; use max). For accuracy and mae, minSamples counts labelled rows."))
    query: str | None = Field(
        None, min_length=1, max_length=4096,
        description="PromQL returning one value; {{model}}, {{version}} and {{namespace}} are substituted.",
    )
    min: float | None = Field(None, description="Smallest passing value.")
    max: float | None = Field(None, description="Largest passing value.")

    cel_rules = (
        CelRule("has(self.builtin) != has(self.query)", "exactly one of builtin or query must be set",
                lambda m: (m.builtin is None) != (m.query is None)),
        CelRule("has(self.min) || has(self.max)", "at least one of min or max must be set",
                lambda m: m.min is not None or m.max is not None),
        CelRule("!has(self.min) || !has(self.max) || self.min <= self.max", "min must not be greater than max",
                lambda m: m.min is None or m.max is None or m.min <= m.max, field_path=".min"),
    )


class PostPromotion(ApiModel):
    """Keep analysing a newly promoted version for a while, with the version it replaced kept warm."""

    duration: Duration = Field(
        description=("How long after a promotion the analysis keeps running against the new stable version; "
                     "failures beyond failureLimit in that time move all traffic back to the previous version."),
    )

    cel_rules = (
        CelRule("self.duration.matches('[1-9]')", "postPromotion.duration must be longer than 0s",
                lambda p: any(c in "123456789" for c in p.duration), field_path=".duration"),
    )


class Analysis(ApiModel):
    """Checks that must pass before traffic moves; failures beyond failureLimit roll back."""

    interval: Duration = Field("30s", description="Time between checks.")
    failure_limit: int = Field(2, ge=0, le=100, description="Failed checks tolerated before rolling back.")
    min_samples: int = Field(50, ge=1, le=1_000_000, description="Requests needed before a check can pass.")
    on_no_data: NoDataAction = Field(NoDataAction.HOLD, description="hold (default) or fail when samples are too few.")
    metrics: list[AnalysisMetric] | None = Field(
        None, max_length=16, description="Checks; errorRate and latency defaults when absent.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    post_promotion: PostPromotion | None = Field(
        None, description=("Keep the checks running against a newly promoted version for a duration (every "
                           "strategy; not for the first version, which replaces nothing)."),
    )


class ServingLimits(ApiModel):
    """What one client may ask of a model server pod (and of the builtin router) before it is refused."""

    max_rows_per_request: int = Field(
        10_000, ge=1, le=1_000_000,
        description="Rows one prediction request may hold; more are refused with 413 before any model work.",
    )
    max_concurrent_requests: int = Field(
        64, ge=1, le=10_000,
        description=("Prediction requests one server pod holds at once; beyond it requests get 429 with "
                     "Retry-After. The builtin router allows this many per serving replica."),
    )
    max_concurrent_large_requests: int = Field(
        4, ge=1, le=1_000,
        description=("Of those, requests with a body over largeRequestBytes; small requests have their own "
                     "workers and never queue behind them."),
    )
    large_request_bytes: int = Field(
        65_536, ge=1_024, le=64 << 20, description="A request body over this size counts as large.",
    )
    max_body_bytes: int = Field(
        1 << 20, ge=1_024, le=64 << 20, description="Largest request body accepted (413 beyond).",
    )
    max_abs_value: float = Field(
        1e15, gt=0, allow_inf_nan=False,
        description="Feature values beyond +/- this are refused with 400 before any model work.",
    )


class Autoscaling(ApiModel):
    """A HorizontalPodAutoscaler on the stable version's Deployment (docs/pods.md, Autoscaling).

    With it the operator stops writing the stable version's replicas (the autoscaler owns them) and
    sizes a candidate from the stable version's current replicas and its traffic weight.
    """

    min_replicas: int = Field(1, ge=1, le=100, description="Fewest stable replicas.")
    max_replicas: int = Field(ge=1, le=100, description="Most stable replicas.")
    target_cpu_utilization: int | None = Field(
        None, ge=1, le=1000,
        description="Average CPU use per pod, in percent of its CPU request (needs metrics-server).")
    target_requests_per_second: int | None = Field(
        None, ge=1, le=1_000_000,
        description=("Average requests per second per pod, read from the Pods metric mlops_requests_per_second "
                     "(needs a custom-metrics adapter such as prometheus-adapter; see docs/pods.md)."))

    cel_rules = (
        CelRule("has(self.targetCpuUtilization) || has(self.targetRequestsPerSecond)",
                "autoscaling needs targetCpuUtilization or targetRequestsPerSecond",
                lambda a: a.target_cpu_utilization is not None or a.target_requests_per_second is not None),
        CelRule("(has(self.minReplicas) ? self.minReplicas : 1) <= self.maxReplicas",
                "minReplicas must not be greater than maxReplicas",
                lambda a: a.min_replicas <= a.max_replicas, field_path=".minReplicas"),
    )


PERCENT_PATTERN = r"^(100|[1-9]?[0-9])%$"


def _count_or_percent(value: int | str) -> int | str:
    if isinstance(value, int) and value < 0 or isinstance(value, str) and not re.match(PERCENT_PATTERN, value):
        raise ValueError(f"{value!r} is neither a pod count nor a percent such as 50%")
    return value


IntOrPercent = Annotated[
    int | str, AfterValidator(_count_or_percent),
    Field(json_schema_extra={"x-kubernetes-int-or-string": True, "pattern": PERCENT_PATTERN}),
]


class DisruptionBudget(ApiModel):
    """A PodDisruptionBudget over the model server pods of every version (exactly one of its fields)."""

    min_available: IntOrPercent | None = Field(
        None, description="Server pods that must stay up during voluntary disruptions (a number or a percent).")
    max_unavailable: IntOrPercent | None = Field(
        None, description="Server pods that may be down during voluntary disruptions (a number or a percent).")

    cel_rules = (
        CelRule("has(self.minAvailable) != has(self.maxUnavailable)",
                "exactly one of minAvailable or maxUnavailable must be set",
                lambda b: (b.min_available is None) != (b.max_unavailable is None)),
    )


class Serving(ApiModel):
    """The model server pods."""

    replicas: int = Field(1, ge=0, le=100, description="Replicas of each serving version.")
    resources: ResourceRequirements | None = Field(None, description="Resources of the server container.")
    runtime: ServingRuntime = Field(ServingRuntime.BUILTIN, description="builtin (default) or kserve.")
    pod: PodOverrides | None = Field(
        None, description=("Service account, pull secrets, placement and security overrides of the model server pods; "
                           "the builtin router's pods get the same except the service account."))
    limits: ServingLimits | None = Field(
        None, description=("Caps per request and per pod (rows, bodies, concurrency, value range) of the builtin "
                           "server and router; defaults when absent."),
    )
    autoscaling: Autoscaling | None = Field(
        None, description="Scale the stable version with a HorizontalPodAutoscaler (replicas is then ignored).")
    pod_disruption_budget: DisruptionBudget | None = Field(
        None, description="A PodDisruptionBudget over the server pods.")
    compiled_model: CompiledModel = Field(
        CompiledModel.AUTO,
        description=("auto (default): the builtin server runs a version's compiled form (ModelVersion "
                     "status.compiled, ONNX) when it has one, else scikit-learn; off: always scikit-learn. "
                     "While two versions serve (a rollout), running pods keep the form they started with, so a "
                     "canary compares the two; otherwise a change restarts them. Quote it in YAML (\"off\"): a bare off is "
                     "the boolean false."),
    )

    cel_rules = (
        CelRule("!has(self.autoscaling) || !has(self.runtime) || self.runtime == 'builtin'",
                "autoscaling applies to the builtin runtime only (KServe scales its own pods)",
                lambda s: s.autoscaling is None or s.runtime == "builtin", field_path=".autoscaling"),
    )


class InferenceLogging(ApiModel):
    """Write a sampled share of requests and answers to S3 as Parquet (docs/rollouts.md, Inference logging)."""

    sample_rate: float = Field(
        0.1, ge=0.0, le=1.0, allow_inf_nan=False,
        description=("Share of requests logged (0..1), chosen by a hash of the request id, so a primary and its "
                     "shadow log the same mirrored requests; 0 turns logging off."),
    )
    batch_rows: int = Field(1000, ge=1, le=100_000, description="Logged requests per Parquet object, at most.")
    flush_interval: Duration = Field(
        "30s", description="A batch is written at least this often when it holds anything (at least 1s).",
    )
    max_buffer_rows: int = Field(
        10_000, ge=1, le=1_000_000,
        description=("Logged requests a server buffers in memory while writing; beyond it new ones are dropped "
                     "and counted, never waited for. At least batchRows."),
    )

    cel_rules = (
        CelRule("(has(self.maxBufferRows) ? self.maxBufferRows : 10000) >= (has(self.batchRows) ? self.batchRows : 1000)",
                "maxBufferRows must be at least batchRows",
                lambda g: g.max_buffer_rows >= g.batch_rows, field_path=".maxBufferRows"),
        CelRule("!has(self.flushInterval) || self.flushInterval.matches('[1-9]')", "flushInterval must be longer than 0s",
                lambda g: any(c in "123456789" for c in g.flush_interval), field_path=".flushInterval"),
    )


class ParentRef(ApiModel):
    """A Gateway the HTTPRoute attaches to."""

    name: ObjectName = Field(description="Gateway name.")
    namespace: ObjectName | None = Field(None, description="Gateway namespace; this namespace when absent.")
    section_name: str | None = Field(None, max_length=253, description="Listener name.")


class Traffic(ApiModel):
    """Who splits traffic between versions."""

    router: Router = Field(Router.BUILTIN, description="builtin (default), gatewayAPI, kserve or service.")
    parent_refs: list[ParentRef] | None = Field(
        None, min_length=1, max_length=8, description="Gateways for the HTTPRoute; required with router gatewayAPI."
    )

    cel_rules = (
        CelRule("has(self.parentRefs) == (has(self.router) && self.router == 'gatewayAPI')",
                "parentRefs is required with router gatewayAPI and not allowed otherwise",
                lambda t: (t.parent_refs is not None) == (t.router == "gatewayAPI"), field_path=".parentRefs"),
    )


def _is_kserve(spec: ModelDeploymentSpec) -> tuple[bool, bool]:
    runtime = spec.serving is not None and spec.serving.runtime == "kserve"
    router = spec.traffic is not None and spec.traffic.router == "kserve"
    return runtime, router


class ModelDeploymentSpec(ApiModel):
    """Desired serving of a model."""

    model: ModelName = Field(description="Model served (ModelVersion spec.model); also the served model name.")
    version: ObjectName | None = Field(None, description="ModelVersion to serve (exactly one of version or track).")
    track: Track | None = Field(None, description="Follow versions automatically (exactly one of version or track).")
    strategy: Strategy | None = Field(None, description="How traffic moves to a new version; Recreate when absent.")
    analysis: Analysis | None = Field(None, description="Checks gating each traffic move.")
    serving: Serving | None = Field(None, description="Model server pods.")
    traffic: Traffic | None = Field(None, description="Traffic router.")
    logging: InferenceLogging | None = Field(
        None, description=("Inference logging: a sampled share of requests and answers (the shadow's too) written "
                           "to S3 as Parquet under inference-logs/<namespace>/<name>/."),
    )
    paused: bool = Field(False, description="Hold the rollout where it is.")
    progress_deadline: Duration = Field("10m", description="A candidate not Ready within this is rolled back.")

    cel_rules = (
        CelRule("has(self.version) != has(self.track)", "exactly one of version or track must be set",
                lambda s: (s.version is None) != (s.track is None)),
        CelRule("(has(self.serving) && has(self.serving.runtime) && self.serving.runtime == 'kserve') == "
                "(has(self.traffic) && has(self.traffic.router) && self.traffic.router == 'kserve')",
                "serving.runtime kserve and traffic.router kserve must be used together",
                lambda s: _is_kserve(s)[0] == _is_kserve(s)[1], field_path=".traffic"),
        CelRule("!has(self.strategy) || self.strategy.type != 'Shadow' || !has(self.traffic) || "
                "!has(self.traffic.router) || self.traffic.router in ['builtin', 'gatewayAPI']",
                "strategy.type Shadow needs traffic.router builtin or gatewayAPI",
                lambda s: s.strategy is None or s.strategy.type != "Shadow" or s.traffic is None
                or s.traffic.router in ("builtin", "gatewayAPI"), field_path=".strategy"),
    )


class AnalysisRun(StatusModel):
    """One check result."""

    at: datetime = Field(description="When the check ran.")
    metric: str = Field(description="Check name.")
    value: float | None = Field(None, description="Measured value; absent when there was no data.")
    passed: bool = Field(description="Whether the check passed.")
    samples: int | None = Field(None, ge=0, description="Requests the value is based on.")
    message: str | None = Field(None, max_length=1024, description="Why it failed or held.")


class Endpoint(StatusModel):
    """Where to send requests."""

    url: str | None = Field(None, description="In-cluster base URL, e.g. http://bc.ns.svc:8080.")
    service: str | None = Field(None, description="Service name (same as the ModelDeployment).")
    port: int | None = Field(None, ge=1, le=65535, description="Service port.")
    model_name: str | None = Field(
        None, description="Model name in /v1/models/<name>:predict and /v2/models/<name>/infer."
    )


class HistoryEvent(StrEnum):
    PROMOTED = "promoted"
    ROLLED_BACK = "rolledBack"
    ABORTED = "aborted"


class HistoryEntry(StatusModel):
    """A finished rollout."""

    version: str = Field(description="The candidate version.")
    event: HistoryEvent = Field(description="promoted, rolledBack or aborted.")
    at: datetime = Field(description="When it happened.")
    reason: str | None = Field(None, max_length=1024, description="Why.")


class PostPromotionStatus(StatusModel):
    """The post-promotion window in progress."""

    version: str = Field(description="The newly promoted version under analysis (the stable version).")
    previous: str = Field(description="The version it replaced, kept warm: all traffic returns to it on failure.")
    started_at: datetime = Field(description="When the window began (the promotion).")
    until: datetime = Field(description="When the window ends; the previous version is then scaled down.")


class ModelDeploymentStatus(StatusBase):
    """Observed state of a ModelDeployment."""

    phase: ModelDeploymentPhase | None = Field(
        None, description="Pending, Progressing, Paused, Succeeded, Degraded, RolledBack or Failed."
    )
    desired_version: str | None = Field(None, description="Version resolved from spec.version or spec.track.")
    stable_version: str | None = Field(None, description="Version serving the bulk of traffic.")
    candidate_version: str | None = Field(None, description="Version being rolled out, if any.")
    canary_weight: int | None = Field(None, ge=0, le=100, description="Percent of traffic on the candidate.")
    current_step: int | None = Field(None, ge=0, description="Index of the current canary step.")
    step_started_at: datetime | None = Field(None, description="When the current step began.")
    failed_checks: int | None = Field(None, ge=0, description="Failed checks in the current rollout.")
    aborted_version: str | None = Field(
        None, description="Candidate aborted or rolled back; not retried until retried or the desired version changes."
    )
    handled_requests: dict[str, str] | None = Field(
        None, max_length=8,
        description="Last handled value of each user request annotation (promote, abort, retry): a request acts once.",
    )
    analysis: list[AnalysisRun] | None = Field(None, max_length=100, description="Recent check results, newest last.")
    endpoint: Endpoint | None = Field(None, description="Where to send requests.")
    history: list[HistoryEntry] | None = Field(None, max_length=100, description="Finished rollouts, newest last.")
    post_promotion: PostPromotionStatus | None = Field(
        None, description="The post-promotion window in progress (spec.analysis.postPromotion), if any.",
    )
    blocked_versions: list[str] | None = Field(
        None, max_length=20,
        description=("Versions rolled back or aborted here, newest last: track never picks them again until "
                     "the mlops.dev/retry annotation is set."),
    )


class ModelDeployment(KubeObject):
    """Serves a model and rolls new versions out (Recreate, BlueGreen, Canary, Shadow) with analysis."""

    kind: Literal["ModelDeployment"] = Field("ModelDeployment", description="ModelDeployment.")
    spec: ModelDeploymentSpec = Field(description="Desired serving.")
    status: ModelDeploymentStatus = Field(default_factory=ModelDeploymentStatus, description="Observed state.")


KIND_INFO = KindInfo(
    kind="ModelDeployment",
    plural="modeldeployments",
    singular="modeldeployment",
    short_names=("mdep",),
    model=ModelDeployment,
    spec_model=ModelDeploymentSpec,
    status_model=ModelDeploymentStatus,
    printer_columns=(
        PrinterColumn("Model", "string", ".spec.model", "Model served."),
        PrinterColumn("Stable", "string", ".status.stableVersion", "Version serving the bulk of traffic."),
        PrinterColumn("Candidate", "string", ".status.candidateVersion", "Version being rolled out."),
        PrinterColumn("Weight", "integer", ".status.canaryWeight", "Percent of traffic on the candidate."),
        PrinterColumn("Phase", "string", ".status.phase", "Rollout phase."),
        PrinterColumn("Strategy", "string", ".spec.strategy.type", "Rollout strategy.", 1),
        READY_COLUMN,
        REASON_COLUMN,
        PrinterColumn("Endpoint", "string", ".status.endpoint.url", "In-cluster URL of the entry Service."),
        AGE_COLUMN,
    ),
)
