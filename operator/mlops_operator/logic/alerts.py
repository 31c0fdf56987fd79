"""The Alertmanager webhook's decisions: which alerts a payload holds, which RetrainPolicies they match, and
what a policy's ``status.pendingAlerts`` becomes once they are added.

Pure (no I/O, the clock passed in) so every rule below is tested with plain dicts:

- a payload is Alertmanager's webhook format version 4; unknown fields are ignored (Alertmanager adds
  fields over time), a missing fingerprint or startsAt is an error (they are the deduplication key);
- only ``firing`` alerts count: a resolved notification never starts a retrain;
- an alert belongs to the namespace its ``namespace`` label names (one cluster, many teams): it is only
  ever matched against that namespace's policies. Without the label, with a value that is not a namespace
  name, or naming a namespace the operator does not watch, it triggers nothing and is reported as
  ``Ignored`` with the reason (the webhook counts it by reason);
- a policy matches an alert when the alert is in the policy's namespace and ANY of its
  ``spec.triggers.alerts[].matchLabels`` is a subset of the alert's labels (suspended policies too: the
  reconciler records those as Suspended);
- an alert is recorded once per firing: its key ``<fingerprint>@<startsAt>`` is never appended when it is
  already pending or already in ``status.history[].fingerprint`` (where the reconciler moves it), so
  Alertmanager's re-sends (repeat_interval, retries, an HA pair) add nothing;
- ``pendingAlerts`` holds at most ``MAX_PENDING_ALERTS``: when full the oldest are dropped (and reported),
  so an alert storm can never grow the object past etcd's size limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, Iterable, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops_operator.api.v1alpha1.retrainpolicy import MAX_PENDING_ALERTS, PendingAlert

MAX_STORED_LABELS = 32  # PendingAlert.labels maxProperties
MAX_STORED_VALUE = 256  # characters kept of each stored label value (the object must stay small)
NAMESPACE_LABEL = "namespace"  # the alert label naming the namespace whose policies it may trigger

# Why a firing alert triggered nothing (the label values of the webhook's ignored-alerts counter).
NO_NAMESPACE = "no_namespace"                    # no (or an empty) namespace label
INVALID_NAMESPACE = "invalid_namespace"          # the label is not a namespace name (RFC 1123 label)
NAMESPACE_NOT_WATCHED = "namespace_not_watched"  # a namespace outside MLOPS_NAMESPACES
NO_MATCHING_POLICY = "no_matching_policy"        # no RetrainPolicy of its namespace matches it
IGNORE_REASONS = (NO_NAMESPACE, INVALID_NAMESPACE, NAMESPACE_NOT_WATCHED, NO_MATCHING_POLICY)


class WebhookAlert(BaseModel):
    """One alert of the payload: the fields the operator uses (the rest, e.g. annotations, is ignored)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    starts_at: str = Field(alias="startsAt", min_length=1, max_length=64, pattern=r"^\d{4}-\d{2}-\d{2}T")
    # 128 leaves room for "@<startsAt>" in a history record's 256-character fingerprint.
    fingerprint: str = Field(min_length=1, max_length=128)

    @property
    def key(self) -> str:
        """The deduplication key: the same alert firing again later has a new startsAt, so it counts again."""
        return f"{self.fingerprint}@{self.starts_at}"

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    @property
    def namespace(self) -> str:
        """The value of the alert's ``namespace`` label ("" when absent)."""
        return self.labels.get(NAMESPACE_LABEL) or ""


class WebhookPayload(BaseModel):
    """Alertmanager's webhook body, version 4."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    version: Literal["4"]
    receiver: str | None = None
    group_key: str | None = Field(None, alias="groupKey")
    truncated_alerts: int = Field(0, alias="truncatedAlerts", ge=0)
    alerts: list[WebhookAlert]


class PayloadError(ValueError):
    """The body is not an Alertmanager v4 webhook payload; the message says why (never echoes the body)."""


def parse_payload(body: bytes | str) -> WebhookPayload:
    """Parse and validate a webhook body; ``PayloadError`` with a short reason when it is not v4 JSON."""
    try:
        return WebhookPayload.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise PayloadError("body is not valid JSON") from None
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors[:3])
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        raise PayloadError(f"not an Alertmanager v4 webhook payload: {where}{more}") from None


# ---------------------------------------------------------------------------------------------- matching


def selectors(policy: Mapping[str, Any]) -> list[dict[str, str]]:
    """The policy's ``spec.triggers.alerts[].matchLabels`` (empty selectors dropped: they would match all)."""
    triggers = ((policy.get("spec") or {}).get("triggers") or {}).get("alerts") or []
    return [dict(t["matchLabels"]) for t in triggers if isinstance(t, Mapping) and t.get("matchLabels")]


def alert_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """True when every label of ``selector`` is on the alert with the same value.

    >>> alert_matches({"alertname": "Drift"}, {"alertname": "Drift", "model": "bc"})
    True
    >>> alert_matches({"alertname": "Drift", "model": "bc"}, {"alertname": "Drift"})
    False
    """
    return all(labels.get(name) == value for name, value in selector.items())


def matching_alerts(policy: Mapping[str, Any], alerts: Iterable[WebhookAlert]) -> list[WebhookAlert]:
    """The firing ``alerts`` of the policy's namespace that ANY of its alert triggers matches, in payload
    order. An alert labelled with another namespace (or none) never matches, whatever its other labels."""
    wanted = selectors(policy)
    namespace = (policy.get("metadata") or {}).get("namespace")
    return [a for a in alerts if a.firing and namespace and a.namespace == namespace
            and any(alert_matches(s, a.labels) for s in wanted)]


# ------------------------------------------------------------------------------------- namespace scoping


_NAMESPACE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def ignore_reason(namespace: str, watched: Sequence[str]) -> str | None:
    """Why an alert labelled ``namespace`` can trigger nothing; None when its namespace's policies are
    to be consulted (``watched`` = ``MLOPS_NAMESPACES`` items, empty = all).

    >>> ignore_reason("", []), ignore_reason("Team_A", []), ignore_reason("team-b", ["team-a"])
    ('no_namespace', 'invalid_namespace', 'namespace_not_watched')
    >>> ignore_reason("team-a", ["team-*"]) is None
    True
    """
    if not namespace:
        return NO_NAMESPACE
    if not _NAMESPACE_NAME.match(namespace):
        return INVALID_NAMESPACE
    if not namespace_in_scope(namespace, watched):
        return NAMESPACE_NOT_WATCHED
    return None


@dataclass(frozen=True)
class Ignored:
    """A firing alert that triggered nothing, and why (one of ``IGNORE_REASONS``)."""

    reason: str
    alertname: str
    fingerprint: str
    namespace: str = ""

    @classmethod
    def of(cls, alert: WebhookAlert, reason: str) -> "Ignored":
        return cls(reason, (alert.labels.get("alertname") or "")[:MAX_STORED_VALUE], alert.fingerprint,
                   alert.namespace[:MAX_STORED_VALUE])

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "alertname": self.alertname, "fingerprint": self.fingerprint,
                **({"namespace": self.namespace} if self.namespace else {})}


@dataclass(frozen=True)
class Routing:
    """A batch's firing alerts grouped by the namespace they may act in, and those that may act nowhere."""

    by_namespace: dict[str, list[WebhookAlert]]  # namespaces in name order, alerts in payload order
    ignored: list[Ignored]


def route(alerts: Iterable[WebhookAlert], watched: Sequence[str]) -> Routing:
    """Group the firing ``alerts`` by their ``namespace`` label; ignore those without a watched one.

    >>> a = WebhookAlert(status="firing", labels={"namespace": "b"}, startsAt="2026-01-01T00:00:00Z", fingerprint="f")
    >>> r = route([a], ["a"])
    >>> r.by_namespace, [i.reason for i in r.ignored]
    ({}, ['namespace_not_watched'])
    """
    groups: dict[str, list[WebhookAlert]] = {}
    ignored: list[Ignored] = []
    for alert in alerts:
        if not alert.firing:
            continue
        reason = ignore_reason(alert.namespace, watched)
        if reason is None:
            groups.setdefault(alert.namespace, []).append(alert)
        else:
            ignored.append(Ignored.of(alert, reason))
    return Routing({ns: groups[ns] for ns in sorted(groups)}, ignored)


def unmatched(alerts: Iterable[WebhookAlert], policies: Iterable[Mapping[str, Any]]) -> list[Ignored]:
    """The firing ``alerts`` that none of ``policies`` matches (reason ``no_matching_policy``)."""
    matched = {id(a) for p in policies for a in matching_alerts(p, alerts)}
    return [Ignored.of(a, NO_MATCHING_POLICY) for a in alerts if a.firing and id(a) not in matched]


class FirstSeen:
    """Remembers which keys were seen, at most ``limit`` of them: ``first(key)`` is True once per key, so
    a caller logs the first occurrence of something that may repeat on every request. Once full it answers
    False to every new key (memory stays bounded; the caller's counters still count)."""

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self._seen: set[tuple[str, ...]] = set()

    def first(self, *key: str) -> bool:
        """
        >>> seen = FirstSeen(limit=2)
        >>> seen.first("a", "x"), seen.first("a", "x"), seen.first("b", "x"), seen.first("c", "x")
        (True, False, True, False)
        """
        if key in self._seen or len(self._seen) >= self.limit:
            return False
        self._seen.add(key)
        return True


# ------------------------------------------------------------------------------------------ recording


def pending_key(entry: Mapping[str, Any]) -> str:
    return f"{entry.get('fingerprint')}@{entry.get('startsAt')}"


def known_keys(status: Mapping[str, Any]) -> set[str]:
    """Keys already pending or already acted on (history records carry ``<fingerprint>@<startsAt>``)."""
    pending = {pending_key(p) for p in status.get("pendingAlerts") or []}
    history = {h["fingerprint"] for h in status.get("history") or [] if h.get("fingerprint")}
    return pending | history


_INSTANT = re.compile(r"^(?P<base>[^.]+?)(?:\.(?P<frac>\d+))?(?P<zone>Z|[+-]\d\d:\d\d)$")


def instant(value: str | None) -> datetime | None:
    """An RFC 3339 time as Alertmanager (nanoseconds) or Kubernetes (seconds) writes it; None if unreadable."""
    m = _INSTANT.match(value or "")
    if m is None:
        return None
    frac = (m["frac"] or "")[:6]
    zone = "+00:00" if m["zone"] == "Z" else m["zone"]
    try:
        return datetime.fromisoformat(f"{m['base']}{'.' + frac if frac else ''}{zone}")
    except ValueError:
        return None


def answered_by_last_retrain(starts_at: str | None, status: Mapping[str, Any]) -> bool:
    """An alert that began before the last retrain started was answered by it (caused, coalesced or gated).

    Alertmanager re-sends a firing alert every repeat interval, and a drift rule fires one alert per feature:
    remembering keys only in the bounded history would let a long storm trigger again once its records
    scroll out. Only an alert that started after the last retrain started is news.
    """
    started, last = instant(starts_at), instant((status.get("lastTriggered") or {}).get("at"))
    return started is not None and last is not None and started < last


def stored_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels kept with a pending alert: alertname first, then by name, at most 32, values shortened —
    enough for the reconciler's record and a human, never large enough to bloat the object."""
    names = sorted(labels, key=lambda n: (n != "alertname", n))[:MAX_STORED_LABELS]
    return {n: labels[n][:MAX_STORED_VALUE] for n in names}


def pending_entry(alert: WebhookAlert, now: datetime) -> dict[str, Any]:
    """The ``status.pendingAlerts`` item for ``alert`` (validated by the API model, camelCase)."""
    return PendingAlert(fingerprint=alert.fingerprint, starts_at=alert.starts_at,
                        alertname=(alert.labels.get("alertname") or "")[:256] or None,
                        labels=stored_labels(alert.labels) or None, received_at=now).to_dict()


@dataclass(frozen=True)
class Merge:
    """``pendingAlerts`` after adding a batch: what was recorded and what the bound pushed out."""

    pending: list[dict[str, Any]]
    recorded: list[str] = field(default_factory=list)  # keys added (and still there)
    dropped: list[str] = field(default_factory=list)   # keys pushed out as the oldest, when full

    @property
    def changed(self) -> bool:
        return bool(self.recorded or self.dropped)


def merge_pending(status: Mapping[str, Any], alerts: Sequence[WebhookAlert], now: datetime,
                  limit: int = MAX_PENDING_ALERTS) -> Merge:
    """Append the firing ``alerts`` not yet known to ``status.pendingAlerts`` (oldest first, at most ``limit``).

    >>> from datetime import timezone
    >>> a = WebhookAlert(status="firing", labels={"alertname": "D"}, startsAt="2026-01-01T00:00:00Z", fingerprint="f1")
    >>> m = merge_pending({"history": [{"fingerprint": "f0@2026-01-01T00:00:00Z"}]}, [a, a],
    ...                   datetime(2026, 1, 1, tzinfo=timezone.utc))
    >>> m.recorded, [p["startsAt"] for p in m.pending]
    (['f1@2026-01-01T00:00:00Z'], ['2026-01-01T00:00:00Z'])
    """
    pending = [dict(p) for p in status.get("pendingAlerts") or []]
    seen = known_keys(status)
    added: list[str] = []
    for alert in alerts:
        if alert.firing and alert.key not in seen and not answered_by_last_retrain(alert.starts_at, status):
            seen.add(alert.key)
            added.append(alert.key)
            pending.append(pending_entry(alert, now))
    overflow = max(0, len(pending) - limit)
    dropped = [pending_key(p) for p in pending[:overflow]]
    kept = pending[overflow:]
    gone = set(dropped)
    return Merge(pending=kept, recorded=[k for k in added if k not in gone], dropped=dropped)


@dataclass(frozen=True)
class Recorded:
    """The outcome for one matched policy, as the webhook reports it."""

    namespace: str
    name: str
    recorded: int
    dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": self.name, "recorded": self.recorded}


@dataclass(frozen=True)
class Outcome:
    """What one webhook call did: per matched policy, what it recorded; per firing alert that acted
    nowhere, why."""

    recorded: list[Recorded] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)

    def ignored_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.ignored:
            counts[item.reason] = counts.get(item.reason, 0) + 1
        return counts


def summary(payload: WebhookPayload, outcome: Outcome) -> dict[str, Any]:
    """The webhook's JSON answer: alert counts; per matched policy, how many new triggers it got; the
    firing alerts that triggered nothing, with the reason."""
    return {"alerts": len(payload.alerts), "firing": sum(1 for a in payload.alerts if a.firing),
            "matched": [r.to_dict() for r in outcome.recorded], "ignored": [i.to_dict() for i in outcome.ignored]}


def log_line(payload: WebhookPayload, outcome: Outcome) -> str:
    """One line per webhook call: counts, which policies got how many new triggers, and how many alerts were
    ignored by reason (no secrets, no label values).

    >>> p = WebhookPayload(version="4", alerts=[])
    >>> log_line(p, Outcome([Recorded("ns", "rp", 1)], [Ignored("no_namespace", "Drift", "f")]))
    'alerts webhook: 0 alerts (0 firing, 0 resolved); policies: ns/rp +1; ignored: no_namespace 1'
    """
    firing = sum(1 for a in payload.alerts if a.firing)
    text = f"alerts webhook: {len(payload.alerts)} alerts ({firing} firing, {len(payload.alerts) - firing} resolved)"
    if payload.truncated_alerts:
        text += f", {payload.truncated_alerts} truncated by Alertmanager"
    policies = ", ".join(f"{r.namespace}/{r.name} +{r.recorded}" for r in outcome.recorded) or "none matched"
    text = f"{text}; policies: {policies}"
    ignored = outcome.ignored_by_reason()
    if ignored:
        text += "; ignored: " + ", ".join(f"{reason} {n}" for reason, n in sorted(ignored.items()))
    return text


def ignored_log_line(item: Ignored) -> str:
    """Why a firing alert triggered nothing, in words (the webhook logs it once per alertname and reason).

    >>> ignored_log_line(Ignored("no_namespace", "Drift\\nX", "f1"))
    'firing alert Drift?X (fingerprint f1) triggers nothing: it has no namespace label'
    """
    why = {NO_NAMESPACE: "it has no namespace label",
           INVALID_NAMESPACE: "its namespace label is not a namespace name",
           NAMESPACE_NOT_WATCHED: f"namespace {item.namespace} is not watched by this operator",
           NO_MATCHING_POLICY: f"no RetrainPolicy in namespace {item.namespace} matches it"}[item.reason]
    return f"firing alert {_printable(item.alertname) or '(no alertname)'} " \
           f"(fingerprint {_printable(item.fingerprint)}) triggers nothing: {why}"


def _printable(text: str) -> str:
    """Label values in a log line: control characters replaced, so one alert is always one line."""
    return "".join(c if c.isprintable() else "?" for c in text)


def namespace_in_scope(namespace: str, patterns: Sequence[str]) -> bool:
    """Whether the operator watches ``namespace`` (``MLOPS_NAMESPACES`` items, kopf's glob syntax per item:
    ``*``/``?`` globs, ``!glob`` = every namespace but those). No patterns = all namespaces.

    >>> namespace_in_scope("team-a", ["team-*"]), namespace_in_scope("kube-system", ["!kube-*"])
    (True, False)
    """
    if not patterns:
        return True
    return any(not fnmatchcase(namespace, p[1:].strip()) if p.startswith("!") else fnmatchcase(namespace, p)
               for p in patterns)
