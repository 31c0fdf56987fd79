"""Leader election against the real apiserver: two in-process electors campaign for one
coordination.k8s.io/v1 Lease with the standard timings (15 s / 10 s / 2 s). Exactly one leads; when it stops
renewing (a killed pod: no release) the other takes over within leaseDuration + retryPeriod of the last
renewal; a clean release is taken within one retry period; the Lease records holder and transitions.
The pure rules: tests/unit/test_leader.py; the installed chart's failover: tests/e2e/test_failover_e2e.py."""

from __future__ import annotations

import asyncio
import time

import pytest

from mlops_operator.logic import leader as logic
from mlops_operator.providers import kube
from mlops_operator.providers.leader import KUBE_LEASES, LeaseElector, lease_path

pytestmark = pytest.mark.integration

T = logic.Timings()  # the standard timings, as the chart ships them
LEASE = "mlops-operator-it"


def electors(namespace: str, events: list) -> tuple[LeaseElector, LeaseElector]:
    def make(name: str) -> LeaseElector:
        async def acquired(gap):
            events.append((name, "acquired", time.monotonic(), gap))

        return LeaseElector(name, namespace, LEASE, T, KUBE_LEASES, on_acquired=acquired,
                            on_lost=lambda: events.append((name, "lost", time.monotonic(), None)))

    return make("replica-a"), make("replica-b")


async def watch_leaders(pair: tuple[LeaseElector, LeaseElector], seconds: float, overlaps: list) -> None:
    """Sample who considers itself leader every 50 ms: never both."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if all(e.is_leader() for e in pair):
            overlaps.append(time.monotonic())
        await asyncio.sleep(0.05)


async def test_given_two_electors_when_the_leader_stops_renewing_then_the_other_takes_over_in_time(namespace):
    events: list = []
    a, b = electors(namespace, events)
    a.start()
    await asyncio.wait_for(a.acquired.wait(), 10)
    b.start()
    overlaps: list = []
    await watch_leaders((a, b), 8, overlaps)  # b stands by through several renewals
    assert a.is_leader() and not b.is_leader() and not b.acquired.is_set()

    last_renewal = a.view.renewed_at
    await a.stop()  # killed: neither renews nor releases
    watcher = asyncio.create_task(watch_leaders((a, b), 30, overlaps))
    await asyncio.wait_for(b.acquired.wait(), T.lease_duration + 3 * T.retry_period + 5)
    took_over = next(t for n, e, t, _ in events if n == "replica-b" and e == "acquired")
    failover = took_over - last_renewal
    print(f"\nLease failover (leader stopped renewing -> standby leads): {failover:.2f}s "
          f"(leaseDuration {T.lease_duration:g}s + retryPeriod {T.retry_period:g}s)")
    assert failover <= T.lease_duration + T.retry_period * logic.JITTER + 1.0, failover
    assert failover >= T.lease_duration - 0.5, "taken before the lease could have expired"
    assert not a.is_leader() and b.is_leader()
    watcher.cancel()
    assert not overlaps, "two electors considered themselves leader at once"

    lease = await kube.get(lease_path(namespace, LEASE))
    assert lease["spec"]["holderIdentity"] == "replica-b" and lease["spec"]["leaseTransitions"] == 1
    assert lease["spec"]["leaseDurationSeconds"] == 15
    gap = next(g for n, e, _, g in events if n == "replica-b" and e == "acquired")
    assert gap is not None and T.lease_duration - 1 <= gap <= T.lease_duration + 3 * T.retry_period, gap

    # The new leader releases cleanly; a fresh candidate takes the released lease within a retry period.
    c = LeaseElector("replica-c", namespace, LEASE, T, KUBE_LEASES)
    c.start()
    await asyncio.sleep(1)
    released = time.monotonic()
    await b.release()
    await asyncio.wait_for(c.acquired.wait(), T.retry_period * logic.JITTER + 2)
    print(f"Lease handover after a clean release: {time.monotonic() - released:.2f}s")
    assert c.is_leader() and not b.is_leader()
    assert (await kube.get(lease_path(namespace, LEASE)))["spec"]["leaseTransitions"] == 2
    await c.stop()


async def test_given_two_electors_started_together_then_exactly_one_wins_the_create(namespace):
    events: list = []
    a, b = electors(namespace, events)
    a.start(), b.start()
    await asyncio.wait_for(asyncio.wait([asyncio.create_task(a.acquired.wait()),
                                         asyncio.create_task(b.acquired.wait())],
                                        return_when=asyncio.FIRST_COMPLETED), 10)
    overlaps: list = []
    await watch_leaders((a, b), 6, overlaps)
    assert not overlaps and [e.is_leader() for e in (a, b)].count(True) == 1
    assert len([e for e in events if e[1] == "acquired"]) == 1
    await a.stop(), await b.stop()
