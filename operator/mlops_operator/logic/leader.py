"""Leader election on a ``coordination.k8s.io/v1`` Lease: the pure decisions (no I/O, clocks passed in).

The rules, those of client-go's leaderelection package:

- one Lease object names the holder (``holderIdentity``) and how long a holder's renewal counts
  (``leaseDurationSeconds``); every write carries the resourceVersion the decision was taken on, so of two
  replicas that decide to take the same expired lease the apiserver lets exactly one through (409 for the
  other): never two holders of one record;
- a replica measures a lease's age on its OWN monotonic clock, from the moment it saw the record change
  (``View.observed_at``), never by comparing the holder's ``renewTime`` with its own wall clock: clock skew
  between nodes cannot make a live lease look expired;
- the holder renews every ``retry_period``; it counts itself leader only until ``renew_deadline`` after the
  START of its last successful renewal, and stops acting when that passes. A standby takes the lease only
  ``lease_duration`` after it last saw the record change, which is after the renewal was sent, so the old
  leader has given up at least ``lease_duration - renew_deadline`` (5 s with the standard 15/10/2) before
  anyone else can hold the lease;
- an empty ``holderIdentity`` is a released lease (a leader that shut down cleanly): taken at once;
- ``leaseTransitions`` counts changes of holder.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, Mapping

JITTER = 1.2  # client-go's JitterFactor: a standby waits retry_period * [1, 1.2) between attempts
MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class Timings:
    """Seconds. Defaults are the standard ones of Kubernetes' own controllers (kube-controller-manager)."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline:
            raise ValueError("lease_duration must be greater than renew_deadline")
        if not self.renew_deadline > self.retry_period * JITTER:
            raise ValueError(f"renew_deadline must be greater than retry_period * {JITTER}")
        if self.retry_period <= 0:
            raise ValueError("retry_period must be positive")


def format_microtime(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime(MICROTIME)


def parse_microtime(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease's spec: who holds it, for how long a renewal counts, and when it was taken and renewed."""

    holder: str = ""  # "" = nobody (released)
    duration: int = 15
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> "LeaseRecord":
        spec = spec or {}
        return cls(holder=str(spec.get("holderIdentity") or ""), duration=int(spec.get("leaseDurationSeconds") or 0),
                   acquire_time=parse_microtime(spec.get("acquireTime")),
                   renew_time=parse_microtime(spec.get("renewTime")),
                   transitions=int(spec.get("leaseTransitions") or 0))

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"holderIdentity": self.holder or None, "leaseDurationSeconds": self.duration,
                                "leaseTransitions": self.transitions}
        if self.acquire_time:
            spec["acquireTime"] = format_microtime(self.acquire_time)
        if self.renew_time:
            spec["renewTime"] = format_microtime(self.renew_time)
        return spec


@dataclass(frozen=True)
class View:
    """What one replica knows of the lease: the last record read or written, its resourceVersion, when (own
    monotonic clock) the record last CHANGED, and when this replica's last successful write as holder
    started (``None`` unless it holds the lease)."""

    record: LeaseRecord | None = None
    resource_version: str | None = None
    observed_at: float | None = None
    renewed_at: float | None = None


def observe(view: View, record: LeaseRecord | None, resource_version: str | None, now: float) -> View:
    """A record just read. Its age restarts only when it differs from the one seen before."""
    changed = record != view.record or view.observed_at is None
    return replace(view, record=record, resource_version=resource_version,
                   observed_at=now if changed else view.observed_at)


def written(view: View, record: LeaseRecord, resource_version: str, started: float) -> View:
    """Our own write (create, acquire or renew) succeeded; ``started`` is when it was sent."""
    return View(record=record, resource_version=resource_version, observed_at=started, renewed_at=started)


def expired(view: View, now: float) -> bool:
    """Free to take: released, or unchanged for longer than its own duration since we saw it change."""
    record = view.record
    if record is None or not record.holder:
        return True
    assert view.observed_at is not None
    return now >= view.observed_at + record.duration


def leading(view: View, me: str, now: float, timings: Timings) -> bool:
    """True while ``me`` holds the lease AND its last renewal started less than ``renew_deadline`` ago.
    Read on every webhook call and on every tick: a stuck renewal loop cannot extend it."""
    return (view.record is not None and view.record.holder == me and view.renewed_at is not None
            and now < view.renewed_at + timings.renew_deadline)


Action = Literal["create", "acquire", "renew", "wait"]


@dataclass(frozen=True)
class Step:
    action: Action
    record: LeaseRecord | None = None  # what to write (None for wait)


def step(view: View, me: str, now: float, wall: datetime, timings: Timings) -> Step:
    """The next write of replica ``me`` given what it saw: create the lease, take an expired one, renew its
    own, or wait. ``wall`` stamps the record (informational: nobody's decision reads another's clock)."""
    duration = max(1, round(timings.lease_duration))
    record = view.record
    if record is None:
        return Step("create", LeaseRecord(me, duration, wall, wall, 0))
    if record.holder == me:
        return Step("renew", replace(record, duration=duration, renew_time=wall))
    if not expired(view, now):
        return Step("wait")
    return Step("acquire", LeaseRecord(me, duration, wall, wall, record.transitions + 1))


def released(record: LeaseRecord, wall: datetime) -> LeaseRecord:
    """The record a leader shutting down cleanly writes: nobody holds it, so a standby takes it at once
    (client-go's ReleaseOnCancel also shortens the duration to 1 s for older clients)."""
    return replace(record, holder="", duration=1, renew_time=wall)


def leaderless_seconds(previous: LeaseRecord | None, acquired: datetime) -> float | None:
    """How long the lease went without a live leader, as seen by the replica that just took it: from the
    previous holder's last renewal (or its release) to now. ``None`` for a lease created from nothing
    (there was no leader to lose). An upper bound (the old leader may have acted a little after its last
    renewal); relies on the two nodes' wall clocks agreeing, so it is reported, never decided on."""
    if previous is None or previous.renew_time is None:
        return None
    return max(0.0, (acquired - previous.renew_time).total_seconds())
