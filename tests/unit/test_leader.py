"""Leader election: the pure Lease state machine (acquire, renew, expire, steal after expiry, release, never
two holders), the elector loop against an in-memory apiserver that enforces resourceVersion like the real
one, and the webhook answering 503 on a replica that does not lead. The real apiserver with two electors:
tests/integration/test_leader_election.py; the failover of the installed chart: tests/e2e/test_failover_e2e.py."""

from __future__ import annotations

import asyncio
import copy
import itertools
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mlops_operator import instruments, web
from mlops_operator.logic import alerts as alert_logic
from mlops_operator.logic import leader as logic
from mlops_operator.providers import kube
from mlops_operator.providers.leader import ElectorThread, LeaseApi, LeaseElector

pytestmark = pytest.mark.unit

T = logic.Timings()
WALL = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def held(holder: str, renewed: datetime = WALL, transitions: int = 0) -> logic.LeaseRecord:
    return logic.LeaseRecord(holder, 15, WALL, renewed, transitions)


# --- the pure state machine ---------------------------------------------------------------------------------


def test_given_the_standard_timings_then_they_are_kubernetes_own_and_inconsistent_ones_are_refused():
    assert (T.lease_duration, T.renew_deadline, T.retry_period) == (15.0, 10.0, 2.0)
    with pytest.raises(ValueError):
        logic.Timings(10, 10, 2)  # the leader must give up before a standby may take over
    with pytest.raises(ValueError):
        logic.Timings(15, 2, 2)  # a renewal needs more than one retry period


def test_given_no_lease_when_stepping_then_create_it_holding_it_from_now():
    s = logic.step(logic.View(), "a", 0.0, WALL, T)
    assert s.action == "create"
    assert s.record == logic.LeaseRecord("a", 15, WALL, WALL, 0)


def test_given_a_lease_held_by_another_when_not_expired_then_wait_and_after_its_duration_steal_it():
    view = logic.observe(logic.View(), held("a", transitions=3), "7", now=100.0)
    assert logic.step(view, "b", 114.9, WALL, T).action == "wait"
    steal = logic.step(view, "b", 115.0, WALL + timedelta(seconds=15), T)
    assert steal.action == "acquire"
    assert steal.record.holder == "b" and steal.record.transitions == 4
    assert steal.record.acquire_time == steal.record.renew_time == WALL + timedelta(seconds=15)


def test_given_the_holder_keeps_renewing_when_observed_then_the_lease_never_expires_for_the_standby():
    view = logic.observe(logic.View(), held("a"), "1", now=0.0)
    for i in range(1, 20):  # a renewal every 2 s for 38 s: each change restarts the age
        view = logic.observe(view, held("a", renewed=WALL + timedelta(seconds=2 * i)), str(i + 1), now=2.0 * i)
        assert logic.step(view, "b", 2.0 * i + 14.9, WALL, T).action == "wait"


def test_given_the_same_record_read_again_then_its_age_is_not_reset():
    view = logic.observe(logic.View(), held("a"), "1", now=0.0)
    view = logic.observe(view, held("a"), "1", now=10.0)
    assert view.observed_at == 0.0 and logic.expired(view, 15.0)


def test_given_a_skewed_renew_time_then_only_the_local_observation_counts():
    """The holder's clock says it renewed an hour ago: the standby still waits a full duration from when
    it saw the record change (node clocks never decide)."""
    view = logic.observe(logic.View(), held("a", renewed=WALL - timedelta(hours=1)), "1", now=50.0)
    assert logic.step(view, "b", 60.0, WALL, T).action == "wait"
    assert logic.step(view, "b", 65.0, WALL, T).action == "acquire"


def test_given_a_released_lease_then_a_standby_takes_it_at_once():
    record = logic.released(held("a", transitions=2), WALL + timedelta(seconds=5))
    assert record.holder == "" and record.duration == 1
    view = logic.observe(logic.View(), record, "9", now=0.0)
    s = logic.step(view, "b", 0.0, WALL + timedelta(seconds=6), T)
    assert s.action == "acquire" and s.record.transitions == 3
    assert logic.leaderless_seconds(record, WALL + timedelta(seconds=6)) == pytest.approx(1.0)


def test_given_the_holder_when_stepping_then_renew_keeping_acquire_time_and_transitions():
    view = logic.written(logic.View(), held("a", transitions=5), "3", started=0.0)
    s = logic.step(view, "a", 2.0, WALL + timedelta(seconds=2), T)
    assert s.action == "renew"
    assert (s.record.holder, s.record.acquire_time, s.record.transitions) == ("a", WALL, 5)
    assert s.record.renew_time == WALL + timedelta(seconds=2)


def test_given_a_leader_when_its_last_renewal_is_older_than_the_renew_deadline_then_it_no_longer_leads():
    view = logic.written(logic.View(), held("a"), "3", started=100.0)
    assert logic.leading(view, "a", 109.99, T)
    assert not logic.leading(view, "a", 110.0, T)
    assert not logic.leading(view, "b", 100.0, T)
    assert not logic.leading(logic.observe(logic.View(), held("a"), "1", 100.0), "a", 100.0, T), \
        "reading a record that names us is not holding it: only our own write is"


def test_given_the_old_leaders_deadline_and_the_standbys_expiry_then_they_never_overlap():
    """The leader's last renewal starts at t; the standby sees it no earlier than t. The leader stops at
    t + renew_deadline, the standby may take over at t + lease_duration at the earliest: 5 s apart."""
    for t, seen_after in [(0.0, 0.0), (3.0, 0.2), (7.5, 1.9)]:
        leader = logic.written(logic.View(), held("a"), "2", started=t)
        standby = logic.observe(logic.View(), held("a"), "2", now=t + seen_after)
        last_leading = max(x / 100 for x in range(0, 10000) if logic.leading(leader, "a", x / 100, T))
        first_steal = min(x / 100 for x in range(0, 10000)
                          if logic.step(standby, "b", x / 100, WALL, T).action == "acquire")
        assert first_steal - last_leading >= T.lease_duration - T.renew_deadline - 0.011


def test_given_the_lease_record_when_serialised_then_microtime_round_trips():
    record = logic.LeaseRecord("pod-a_1234", 15, WALL, WALL + timedelta(microseconds=123456), 2)
    spec = record.to_spec()
    assert spec["renewTime"] == "2026-03-01T12:00:00.123456Z"
    assert logic.LeaseRecord.from_spec(spec) == record
    assert logic.LeaseRecord.from_spec(logic.released(record, WALL).to_spec()).holder == ""


def test_given_a_previous_holder_when_taking_over_then_the_time_without_a_leader_is_since_its_last_renewal():
    assert logic.leaderless_seconds(held("a"), WALL + timedelta(seconds=16.5)) == pytest.approx(16.5)
    assert logic.leaderless_seconds(None, WALL) is None
    assert logic.leaderless_seconds(held("a", renewed=WALL + timedelta(seconds=9)), WALL) == 0.0


# --- the elector against an in-memory apiserver -------------------------------------------------------------


class FakeLeases:
    """One Lease store with resourceVersion checks (409 on a stale write, AlreadyExists on create)."""

    def __init__(self) -> None:
        self.obj: dict[str, Any] | None = None
        self.rv = itertools.count(1)
        self.down = False
        self.holders: list[str] = []  # every holder ever written, in order

    def api(self) -> LeaseApi:
        async def get(ns: str, name: str):
            await asyncio.sleep(0)
            self._check()
            return copy.deepcopy(self.obj)

        async def create(ns: str, body: dict):
            await asyncio.sleep(0)
            self._check()
            if self.obj is not None:
                raise kube.Conflict("exists", 409)
            return self._store(body)

        async def update(ns: str, name: str, body: dict):
            await asyncio.sleep(0)
            self._check()
            if self.obj is None or body["metadata"].get("resourceVersion") != self.obj["metadata"]["resourceVersion"]:
                raise kube.Conflict("stale", 409)
            return self._store(body)

        return LeaseApi(get, create, update)

    def _check(self) -> None:
        if self.down:
            raise kube.Unavailable("apiserver unreachable")

    def _store(self, body: dict) -> dict:
        self.obj = copy.deepcopy(body)
        self.obj["metadata"]["resourceVersion"] = str(next(self.rv))
        holder = self.obj["spec"].get("holderIdentity") or ""
        if not self.holders or self.holders[-1] != holder:
            self.holders.append(holder)
        return copy.deepcopy(self.obj)


class Clock:
    """A fake monotonic clock advanced by the event loop's sleeps (asyncio.sleep is patched to advance it)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return WALL + timedelta(seconds=self.now)


@pytest.fixture()
def clock(monkeypatch):
    """Virtual time: every asyncio.sleep(d) advances the clock by d and yields, so 60 s take milliseconds
    while the order of the electors' steps is that of real time."""
    c = Clock()
    real_sleep = asyncio.sleep
    pending: list[tuple[float, int, asyncio.Future]] = []
    seq = itertools.count()

    async def sleep(delay: float, result: Any = None) -> Any:
        if delay <= 0:
            await real_sleep(0)
            return result
        fut = asyncio.get_running_loop().create_future()
        pending.append((c.now + delay, next(seq), fut))
        await fut
        return result

    async def advance_until(predicate, limit: float) -> None:
        while not predicate() and c.now < limit:
            for _ in range(20):
                await real_sleep(0)
            if predicate():
                return
            pending.sort()
            if not pending:
                continue
            at, _, fut = pending.pop(0)
            c.now = max(c.now, at)
            if not fut.done():
                fut.set_result(None)
        for _ in range(20):
            await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    c.advance_until = advance_until  # type: ignore[attr-defined]
    return c


def elector(name: str, store: FakeLeases, clock: Clock, events: list) -> LeaseElector:
    async def acquired(gap):
        events.append((name, "acquired", clock.now, gap))

    return LeaseElector(name, "mlops-system", "mlops-operator", T, store.api(), on_acquired=acquired,
                        on_lost=lambda: events.append((name, "lost", clock.now, None)), clock=clock, wall=clock.wall)


async def test_given_two_electors_then_exactly_one_leads_and_keeps_leading_while_it_renews(clock):
    random.seed(1)
    store, events = FakeLeases(), []
    a, b = elector("a", store, clock, events), elector("b", store, clock, events)
    a.start(), b.start()
    await clock.advance_until(lambda: False, 60.0)
    assert [e[:2] for e in events] == [("a", "acquired")] or [e[:2] for e in events] == [("b", "acquired")]
    leader, standby = (a, b) if events[0][0] == "a" else (b, a)
    assert leader.is_leader() and not standby.is_leader()
    assert store.holders == [leader.identity] and store.obj["spec"]["leaseTransitions"] == 0
    await a.stop(), await b.stop()


async def test_given_the_leader_stops_renewing_then_the_standby_takes_over_within_duration_plus_retry(clock):
    random.seed(2)
    store, events = FakeLeases(), []
    a = elector("a", store, clock, events)
    a.start()
    await clock.advance_until(lambda: a.acquired.is_set(), 5)
    b = elector("b", store, clock, events)
    b.start()
    await clock.advance_until(lambda: False, clock.now + 10)
    last_renewal = clock.now
    await a.stop()  # frozen: no renewal, no release (a killed pod)
    await clock.advance_until(lambda: b.acquired.is_set(), clock.now + 60)
    took = events[-1]
    assert took[:2] == ("b", "acquired")
    assert took[2] - last_renewal <= T.lease_duration + T.retry_period * logic.JITTER + T.retry_period
    assert took[3] == pytest.approx(took[2] - (last_renewal - (last_renewal % 2)), abs=T.retry_period + 0.5)
    assert store.holders == ["a", "b"] and store.obj["spec"]["leaseTransitions"] == 1
    await b.stop()


async def test_given_the_apiserver_unreachable_then_the_leader_gives_up_after_renew_deadline_before_expiry(clock):
    store, events = FakeLeases(), []
    a = elector("a", store, clock, events)
    a.start()
    await clock.advance_until(lambda: a.acquired.is_set(), 5)
    await clock.advance_until(lambda: False, clock.now + 7)
    renewed = a.view.renewed_at
    store.down = True
    await clock.advance_until(lambda: a.lost, clock.now + 60)
    assert events[-1][:2] == ("a", "lost")
    assert renewed + T.renew_deadline <= events[-1][2] <= renewed + T.renew_deadline + T.retry_period
    assert not a.is_leader()


async def test_given_another_holder_written_when_renewing_then_deposed_at_once(clock):
    store, events = FakeLeases(), []
    a = elector("a", store, clock, events)
    a.start()
    await clock.advance_until(lambda: a.acquired.is_set(), 5)
    store._store({**store.obj, "spec": {**store.obj["spec"], "holderIdentity": "intruder"}})
    await clock.advance_until(lambda: a.lost, clock.now + 5)
    assert a.lost and events[-1][:2] == ("a", "lost") and not a.is_leader()


async def test_given_a_clean_shutdown_then_the_lease_is_released_and_the_standby_takes_it_within_a_retry(clock):
    store, events = FakeLeases(), []
    a = elector("a", store, clock, events)
    a.start()
    await clock.advance_until(lambda: a.acquired.is_set(), 5)
    b = elector("b", store, clock, events)
    b.start()
    await clock.advance_until(lambda: False, clock.now + 6)
    released_at = clock.now
    await a.release()
    assert store.obj["spec"]["holderIdentity"] is None and not a.is_leader()
    await clock.advance_until(lambda: b.acquired.is_set(), clock.now + 30)
    assert clock.now - released_at <= T.retry_period * logic.JITTER + 0.01
    assert events[-1][3] is not None and events[-1][3] <= T.retry_period * logic.JITTER + 0.01


async def test_given_many_electors_racing_for_an_expired_lease_then_never_two_holders(clock):
    """Five standbys, leaders killed one after another: every write that named a new holder followed an
    expiry, and at no instant do two electors consider themselves leader."""
    random.seed(3)
    store, events = FakeLeases(), []
    electors = [elector(n, store, clock, events) for n in "abcde"]
    for e in electors:
        e.start()
    overlaps = []

    def check() -> bool:
        if sum(e.is_leader() for e in electors) > 1:
            overlaps.append(clock.now)
        return False

    for _ in range(4):
        await clock.advance_until(check, clock.now + 40)
        current = next(e for e in electors if e.is_leader())
        await current.stop()  # killed: stops renewing
        current.lost = True
    await clock.advance_until(check, clock.now + 40)
    assert not overlaps
    assert len([e for e in events if e[1] == "acquired"]) == 5
    assert len(store.holders) == 5 and len(set(store.holders)) == 5
    for e in electors:
        await e.stop()


# --- the elector on its own thread: a busy operator loop cannot cost the lease --------------------------------

FAST = logic.Timings(lease_duration=0.6, renew_deadline=0.4, retry_period=0.05)  # real time, scaled down


def real_time_elector(store: FakeLeases, events: list) -> LeaseElector:
    return LeaseElector("a", "mlops-system", "mlops-operator", FAST, store.api(),
                        on_lost=lambda: events.append("lost"))


def renewals(store: FakeLeases) -> int:
    return int(store.obj["metadata"]["resourceVersion"]) if store.obj else 0


async def test_given_the_elector_on_the_operators_loop_when_that_loop_is_blocked_past_the_deadline_then_it_is_lost():
    """Why the elector has a thread of its own: on the shared loop, one long blocking stretch (a busy
    startup) outlasts renew_deadline and the leader gives up: a second, needless handover."""
    store, events = FakeLeases(), []
    a = real_time_elector(store, events)
    a.start()
    await asyncio.wait_for(a.acquired.wait(), 2)
    time.sleep(FAST.renew_deadline * 2.5)  # the operator's loop held, as a blocking handler would
    await asyncio.sleep(FAST.retry_period * 3)
    assert events == ["lost"] and not a.is_leader()
    await a.stop()


async def test_given_the_elector_thread_when_the_operators_loop_is_blocked_then_it_keeps_renewing_and_leading():
    store, events = FakeLeases(), []
    a = real_time_elector(store, events)
    election = ElectorThread(a)
    await asyncio.wait_for(election.until_leading(), 2)
    before = renewals(store)
    time.sleep(FAST.renew_deadline * 2.5)
    during = renewals(store) - before
    assert during >= 5, f"only {during} renewals while the loop was blocked for {FAST.renew_deadline * 2.5:g}s"
    assert a.is_leader() and events == []
    await election.release()
    assert store.obj["spec"]["holderIdentity"] is None and not a.is_leader()
    await election.stop()


# --- the webhook on a standby ---------------------------------------------------------------------------------


async def test_given_a_standby_when_alertmanager_posts_then_503_with_retry_after_and_nothing_recorded():
    recorded: list = []
    leading = {"now": False}

    async def recorder(batch, now):
        recorded.append(batch)
        return alert_logic.Outcome([], [])

    route = web.alerts_route("t0ken", recorder, leading=lambda: leading["now"])
    body = {"version": "4", "status": "firing", "receiver": "r", "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "", "groupKey": "k", "truncatedAlerts": 0,
            "alerts": [{"status": "firing", "labels": {"alertname": "X", "namespace": "team"}, "annotations": {},
                        "startsAt": "2026-03-01T11:59:00Z", "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "", "fingerprint": "f1"}]}
    auth = {"Authorization": "Bearer t0ken"}
    async with TestClient(TestServer(web.build_app([route]))) as client:
        r = await client.post("/alerts", json=body, headers=auth)
        assert r.status == 503 and r.headers["Retry-After"] == "5"
        assert "not the leader" in (await r.json())["error"]
        assert recorded == []
        assert (await client.post("/alerts", json=body, headers={"Authorization": "Bearer no"})).status == 401
        leading["now"] = True
        assert (await client.post("/alerts", json=body, headers=auth)).status == 200
    assert len(recorded) == 1


def test_given_the_operator_metrics_then_leadership_transitions_and_leaderless_time_are_exported():
    from prometheus_client import generate_latest

    text = generate_latest().decode()
    for name in ("mlops_operator_leader_transitions_total", "mlops_operator_leaderless_seconds_bucket"):
        assert name in text
    for event in ("acquired", "lost", "released"):
        assert f'mlops_operator_leader_transitions_total{{event="{event}"}}' in text
    instruments.LEADER.labels("pod-x").set(1)
    assert 'mlops_operator_leader{pod="pod-x"} 1.0' in generate_latest().decode()
    instruments.LEADER.remove("pod-x")
