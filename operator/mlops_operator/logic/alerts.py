"""The Alertmanager webhook's decisions: which alerts a payload holds, which RetrainPolicies they match, and
what a policy's ``status.pendingAlerts`` becomes once they are added.

Pure (no I/O, the clock passed in) so every rule below is tested with plain dicts:

- a payload is Alertmanager's webhook format version 4; unknown fields are ignored (Alertmanager adds
  fields over time), a missing fingerprint or startsAt is an error (they are the deduplication key);
- only ``firing`` alerts count: a resolved notification never starts a retrain;
- a policy matches an alert when ANY of its ``spec.triggers.alerts[].matchLabels`` is a subset of the
  alert's labels (suspended policies too: the reconciler records those as Suspended);
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
    """The firing ``alerts`` that ANY of the policy's alert triggers matches, in payload order."""
    wanted = selectors(policy)
    return [a for a in alerts if a.firing and any(alert_matches(s, a.labels) for s in wanted)]


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


def summary(payload: WebhookPayload, results: Sequence[Recorded]) -> dict[str, Any]:
    """The webhook's JSON answer: alert counts and, per matched policy, how many new triggers it got."""
    return {"alerts": len(payload.alerts), "firing": sum(1 for a in payload.alerts if a.firing),
            "matched": [r.to_dict() for r in results]}


def log_line(payload: WebhookPayload, results: Sequence[Recorded]) -> str:
    """One line per webhook call: counts and which policies got how many new triggers (no secrets).

    >>> p = WebhookPayload(version="4", alerts=[])
    >>> log_line(p, [Recorded("ns", "rp", 1)])
    'alerts webhook: 0 alerts (0 firing, 0 resolved); policies: ns/rp +1'
    """
    firing = sum(1 for a in payload.alerts if a.firing)
    text = f"alerts webhook: {len(payload.alerts)} alerts ({firing} firing, {len(payload.alerts) - firing} resolved)"
    if payload.truncated_alerts:
        text += f", {payload.truncated_alerts} truncated by Alertmanager"
    policies = ", ".join(f"{r.namespace}/{r.name} +{r.recorded}" for r in results) or "none matched"
    return f"{text}; policies: {policies}"


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


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[!")
