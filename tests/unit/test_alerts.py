"""The Alertmanager webhook: payload parsing, policy matching, pendingAlerts merging (dedup, bound), and the
HTTP layer (auth, size, errors, the answer) with the kube calls replaced by an in-memory apiserver that
enforces resourceVersion like the real one (the real one is in tests/integration/test_alerts_webhook.py)."""

from __future__ import annotations

import copy
import json
import logging
from datetime import datetime, timezone
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from mlops_operator import web
from mlops_operator.api.v1alpha1.retrainpolicy import MAX_PENDING_ALERTS, RetrainPolicyStatus
from mlops_operator.handlers import alerts as handler
from mlops_operator.logic import alerts as logic
from mlops_operator.operator_settings import OperatorSettings
from mlops_operator.providers import kube

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
TOKEN = "s3cr3t-token"
DRIFT = {"alertname": "MLOpsFeatureDriftHigh", "model": "bc", "namespace": "team", "severity": "warning"}


def alert(fingerprint: str = "a1b2", starts_at: str = "2026-03-01T11:59:00.123456789Z", status: str = "firing",
          **labels: str) -> dict[str, Any]:
    return {"status": status, "labels": labels or dict(DRIFT), "annotations": {"summary": "drift"},
            "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom/graph",
            "fingerprint": fingerprint}


def payload(*alerts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"version": "4", "groupKey": "{}:{alertname=\"MLOpsFeatureDriftHigh\"}", "truncatedAlerts": 0,
            "status": "firing", "receiver": "mlops-operator", "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://am:9093", "alerts": list(alerts), **extra}


def parsed(*alerts: dict[str, Any]) -> list[logic.WebhookAlert]:
    return logic.parse_payload(json.dumps(payload(*alerts))).alerts


def policy(name: str = "bc-retrain", namespace: str = "team", *selectors: dict[str, str],
           status: dict[str, Any] | None = None, suspend: bool = False) -> dict[str, Any]:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "RetrainPolicy",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"},
            "spec": {"model": "bc", "suspend": suspend,
                     "triggers": {"alerts": [{"matchLabels": s} for s in selectors or ({"alertname": DRIFT["alertname"]},)]}},
            "status": status or {}}


# --- parsing -----------------------------------------------------------------------------------------------------


def test_given_a_real_v4_payload_with_unknown_fields_when_parsed_then_alerts_and_keys_are_read():
    body = payload(alert(), alert("c3d4", status="resolved"), somethingNew={"x": 1})
    got = logic.parse_payload(json.dumps(body).encode())
    assert [(a.fingerprint, a.firing) for a in got.alerts] == [("a1b2", True), ("c3d4", False)]
    assert got.alerts[0].key == "a1b2@2026-03-01T11:59:00.123456789Z"
    assert got.alerts[0].labels == DRIFT


@pytest.mark.parametrize("body, reason", [
    (b"{not json", "not valid JSON"),
    (b"[]", "body"),
    (json.dumps(payload(alert(), version="3")).encode(), "version"),
    (json.dumps({"version": "4"}).encode(), "alerts: Field required"),
    (json.dumps(payload({**alert(), "fingerprint": ""})).encode(), "alerts.0.fingerprint"),
    (json.dumps(payload({k: v for k, v in alert().items() if k != "startsAt"})).encode(), "alerts.0.startsAt"),
    (json.dumps(payload({**alert(), "startsAt": "yesterday"})).encode(), "alerts.0.startsAt"),
    (json.dumps(payload({**alert(), "status": "pending"})).encode(), "alerts.0.status"),
    (json.dumps(payload({**alert(), "labels": {"model": 3}})).encode(), "alerts.0.labels.model"),
])
def test_given_a_body_that_is_not_a_v4_payload_when_parsed_then_the_error_names_what_is_wrong(body, reason):
    with pytest.raises(logic.PayloadError, match="JSON" if b"not json" in body else "v4") as err:
        logic.parse_payload(body)
    assert reason in str(err.value)


def test_given_a_huge_invalid_value_when_rejected_then_the_message_does_not_echo_it():
    with pytest.raises(logic.PayloadError) as err:
        logic.parse_payload(json.dumps(payload({**alert(), "fingerprint": "x" * 5000})))
    assert len(str(err.value)) < 300


# --- matching ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("selectors, labels, matches", [
    ([{"alertname": "MLOpsFeatureDriftHigh"}], DRIFT, True),
    ([{"alertname": "MLOpsFeatureDriftHigh", "model": "bc"}], DRIFT, True),
    ([{"alertname": "MLOpsFeatureDriftHigh", "model": "other"}], DRIFT, False),
    ([{"alertname": "MLOpsFeatureDriftHigh", "team": "x"}], DRIFT, False),          # label absent on the alert
    ([{"model": "other"}, {"severity": "warning"}], DRIFT, True),                    # ANY trigger matches
    ([{"alertname": "mlopsfeaturedrifthigh"}], DRIFT, False),                        # values are exact
])
def test_given_policy_selectors_when_matched_then_any_subset_of_the_labels_matches(selectors, labels, matches):
    got = logic.matching_alerts(policy("p", "team", *selectors), parsed(alert(**labels)))
    assert bool(got) is matches


def test_given_resolved_alerts_or_a_policy_without_alert_triggers_when_matched_then_nothing_matches():
    assert logic.matching_alerts(policy(), parsed(alert(status="resolved"))) == []
    scheduled_only = policy()
    scheduled_only["spec"]["triggers"] = {"schedule": "0 3 * * 0"}
    assert logic.matching_alerts(scheduled_only, parsed(alert())) == []


@pytest.mark.parametrize("namespace, patterns, watched", [
    ("team-a", [], True), ("team-a", ["team-a"], True), ("team-b", ["team-a"], False),
    ("team-b", ["team-*"], True), ("prod", ["team-*", "prod"], True), ("kube-system", ["!kube-*"], False),
    ("default", ["!kube-*"], True),
])
def test_given_watched_namespace_patterns_when_checked_then_kopf_glob_semantics_apply(namespace, patterns, watched):
    assert logic.namespace_in_scope(namespace, patterns) is watched


# --- namespace scoping (one cluster, many teams) ---------------------------------------------------------------------


def twins(*namespaces: str) -> list[dict[str, Any]]:
    """Policies of the same name with the same matchLabels, one per namespace."""
    return [policy("bc-retrain", ns, {"alertname": DRIFT["alertname"], "model": "bc"}) for ns in namespaces]


@pytest.mark.parametrize("alert_namespace, matched", [
    ("team-a", ["team-a"]), ("team-b", ["team-b"]), ("team-c", []), (None, []), ("", []),
])
def test_given_twin_policies_in_two_namespaces_when_matched_then_only_the_alerts_namespace_matches(
        alert_namespace, matched):
    labels = {k: v for k, v in DRIFT.items() if k != "namespace"}
    if alert_namespace is not None:
        labels["namespace"] = alert_namespace
    batch = parsed(alert(**labels))
    assert [p["metadata"]["namespace"] for p in twins("team-a", "team-b") if logic.matching_alerts(p, batch)] == matched


def test_given_a_selector_naming_another_namespace_when_matched_then_the_policys_own_namespace_still_wins():
    elsewhere = policy("p", "team-a", {"alertname": DRIFT["alertname"], "namespace": "team-b"})
    assert logic.matching_alerts(elsewhere, parsed(alert(**{**DRIFT, "namespace": "team-b"}))) == []


@pytest.mark.parametrize("namespace, watched, reason", [
    (None, [], logic.NO_NAMESPACE),
    ("", ["team-*"], logic.NO_NAMESPACE),
    ("Team-A", [], logic.INVALID_NAMESPACE),
    ("team_a", [], logic.INVALID_NAMESPACE),
    ("../team-a", [], logic.INVALID_NAMESPACE),
    ("a" * 64, [], logic.INVALID_NAMESPACE),
    ("team-b", ["team-a"], logic.NAMESPACE_NOT_WATCHED),
    ("kube-system", ["!kube-*"], logic.NAMESPACE_NOT_WATCHED),
    ("team-a", ["team-a"], None),
    ("team-b", ["team-*"], None),
    ("a" * 63, [], None),
])
def test_given_an_alerts_namespace_label_when_routed_then_it_acts_there_or_is_ignored_with_the_reason(
        namespace, watched, reason):
    labels = {k: v for k, v in DRIFT.items() if k != "namespace"}
    if namespace is not None:
        labels["namespace"] = namespace
    routing = logic.route(parsed(alert("f1", **labels), alert("f2", status="resolved", **labels)), watched)
    if reason is None:
        assert list(routing.by_namespace) == [namespace] and routing.ignored == []
    else:
        assert routing.by_namespace == {}
        assert [(i.reason, i.alertname, i.fingerprint) for i in routing.ignored] == [(reason, DRIFT["alertname"], "f1")]


def test_given_alerts_of_several_namespaces_when_routed_then_they_are_grouped_by_namespace_in_name_order():
    batch = parsed(alert("f1", **{**DRIFT, "namespace": "zeta"}), alert("f2", **{**DRIFT, "namespace": "alpha"}),
                   alert("f3", **{**DRIFT, "namespace": "zeta"}))
    routing = logic.route(batch, [])
    assert {ns: [a.fingerprint for a in group] for ns, group in routing.by_namespace.items()} == {
        "alpha": ["f2"], "zeta": ["f1", "f3"]}
    assert list(routing.by_namespace) == ["alpha", "zeta"]


def test_given_alerts_no_policy_matches_when_checked_then_they_are_reported_as_unmatched():
    batch = parsed(alert("f1"), alert("f2", **{**DRIFT, "alertname": "Other"}), alert("f3", status="resolved"))
    got = logic.unmatched(batch, [policy()])
    assert got == [logic.Ignored(logic.NO_MATCHING_POLICY, "Other", "f2", "team")]


def test_given_a_bounded_first_seen_when_keys_repeat_or_overflow_then_each_is_first_once_and_memory_stays_bounded():
    seen = logic.FirstSeen(limit=2)
    assert [seen.first("no_namespace", "A"), seen.first("no_namespace", "A"), seen.first("no_namespace", "B"),
            seen.first("namespace_not_watched", "A"), seen.first("no_namespace", "B")] == [True, False, True, False, False]


def test_given_an_ignored_alert_with_control_characters_when_described_then_it_stays_one_line():
    line = logic.ignored_log_line(logic.Ignored(logic.NAMESPACE_NOT_WATCHED, "Drift\nFAKE", "f\r1", "team-b"))
    assert "\n" not in line and "\r" not in line and "namespace team-b is not watched" in line


# --- merging into pendingAlerts -------------------------------------------------------------------------------------


def test_given_an_empty_status_when_merged_then_one_valid_pending_entry_per_firing_alert():
    merge = logic.merge_pending({}, parsed(alert("f1"), alert("f2", status="resolved")), NOW)
    assert merge.recorded == ["f1@2026-03-01T11:59:00.123456789Z"] and merge.dropped == []
    assert merge.pending == [{"fingerprint": "f1", "startsAt": "2026-03-01T11:59:00.123456789Z",
                              "alertname": "MLOpsFeatureDriftHigh", "labels": DRIFT,
                              "receivedAt": "2026-03-01T12:00:00Z"}]
    RetrainPolicyStatus.model_validate({"pendingAlerts": merge.pending})  # the API model accepts it


def test_given_keys_already_pending_or_in_history_when_merged_then_nothing_is_added():
    first = logic.merge_pending({}, parsed(alert("f1")), NOW)
    again = logic.merge_pending({"pendingAlerts": first.pending}, parsed(alert("f1"), alert("f1")), NOW)
    assert not again.changed and again.pending == first.pending
    acted_on = {"history": [{"at": "2026-03-01T12:00:05Z", "source": "alert",
                             "fingerprint": "f1@2026-03-01T11:59:00.123456789Z"}]}
    assert not logic.merge_pending(acted_on, parsed(alert("f1")), NOW).changed


def test_given_the_same_alert_firing_again_later_when_merged_then_it_is_a_new_trigger():
    first = logic.merge_pending({}, parsed(alert("f1")), NOW)
    later = logic.merge_pending({"pendingAlerts": first.pending}, parsed(alert("f1", "2026-03-01T13:00:00Z")), NOW)
    assert later.recorded == ["f1@2026-03-01T13:00:00Z"]
    assert [p["startsAt"] for p in later.pending] == ["2026-03-01T11:59:00.123456789Z", "2026-03-01T13:00:00Z"]


def test_given_an_alert_that_began_before_the_last_retrain_when_merged_then_it_is_not_news():
    # A storm: one alert per feature, re-sent every repeat interval long after its history record scrolled out.
    status = {"lastTriggered": {"at": "2026-03-01T12:00:00Z", "source": "alert"}}
    merge = logic.merge_pending(status, parsed(alert("old", starts_at="2026-03-01T11:59:59.999999999Z"),
                                               alert("new", starts_at="2026-03-01T12:00:01.5Z")), NOW)
    assert [p["fingerprint"] for p in merge.pending] == ["new"]


@pytest.mark.parametrize("value, expected", [
    ("2026-03-01T11:59:00.123456789Z", datetime(2026, 3, 1, 11, 59, 0, 123456, tzinfo=timezone.utc)),
    ("2026-03-01T12:00:00Z", datetime(2026, 3, 1, 12, tzinfo=timezone.utc)),
    ("2026-03-01T13:00:00.5+01:00", datetime(2026, 3, 1, 12, 0, 0, 500000, tzinfo=timezone.utc)),
    ("yesterday", None), (None, None),
])
def test_given_alertmanager_and_kubernetes_times_when_read_then_nanoseconds_and_zones_are_understood(value, expected):
    assert logic.instant(value) == expected


def test_given_a_full_pending_list_when_merged_then_the_oldest_are_dropped_and_reported():
    full = logic.merge_pending({}, parsed(*[alert(f"old{i}") for i in range(MAX_PENDING_ALERTS)]), NOW)
    assert len(full.pending) == MAX_PENDING_ALERTS and not full.dropped
    merge = logic.merge_pending({"pendingAlerts": full.pending}, parsed(alert("new1"), alert("new2")), NOW)
    assert len(merge.pending) == MAX_PENDING_ALERTS
    assert merge.dropped == ["old0@2026-03-01T11:59:00.123456789Z", "old1@2026-03-01T11:59:00.123456789Z"]
    assert [p["fingerprint"] for p in merge.pending[-2:]] == ["new1", "new2"]
    assert merge.recorded == ["new1@2026-03-01T11:59:00.123456789Z", "new2@2026-03-01T11:59:00.123456789Z"]


def test_given_an_alert_with_many_long_labels_when_stored_then_alertname_is_kept_and_size_bounded():
    labels = {f"l{i:02d}": "v" * 1000 for i in range(40)} | {"alertname": "Drift"}
    entry = logic.merge_pending({}, parsed(alert("f1", **labels)), NOW).pending[0]
    assert len(entry["labels"]) == logic.MAX_STORED_LABELS and entry["labels"]["alertname"] == "Drift"
    assert max(len(v) for v in entry["labels"].values()) == logic.MAX_STORED_VALUE


# --- recording through the kube calls (a fake apiserver with real resourceVersion semantics) -------------------------


class FakeApi:
    """RetrainPolicies in memory; a status write with a stale resourceVersion gets 409, like the apiserver.
    ``interfere`` runs before each write, to play the reconciler or Kopf writing first."""

    def __init__(self, *policies: dict[str, Any], down: bool = False, prune_pending: bool = False) -> None:
        self.objects = {(p["metadata"]["namespace"], p["metadata"]["name"]): copy.deepcopy(p) for p in policies}
        self.down, self.prune_pending = down, prune_pending
        self.writes: list[tuple[str, str]] = []
        self.listed: list[str] = []  # the namespaces whose policies were listed
        self.interfere: list[Any] = []

    async def list_policies(self, namespace: str) -> list[dict[str, Any]]:
        if self.down:
            raise kube.Unavailable("GET /apis/mlops.dev/v1alpha1/retrainpolicies: apiserver unreachable (OSError)")
        self.listed.append(namespace)
        return copy.deepcopy([p for (ns, _), p in self.objects.items() if ns == namespace])

    async def get_policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects.get((namespace, name)))

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any], rv: str) -> dict[str, Any]:
        if self.interfere:
            self.interfere.pop(0)(self)
        obj = self.objects.get((namespace, name))
        if obj is None:
            raise kube.Unavailable("not found", 404)
        if obj["metadata"]["resourceVersion"] != rv:
            raise kube.Conflict("the object has been modified", 409)
        if not self.prune_pending:
            obj["status"] = {**obj.get("status", {}), **status}
        obj["metadata"]["resourceVersion"] = str(int(rv) + 1)
        self.writes.append((namespace, name))
        return copy.deepcopy(obj)

    def bump(self, key: tuple[str, str], **status: Any) -> None:
        obj = self.objects[key]
        obj["status"] = {**obj.get("status", {}), **status}
        obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)

    def access(self, *watched: str) -> handler.KubeAccess:
        return handler.KubeAccess(self.list_policies, self.get_policy, self.patch_status, watched)

    def pending(self, namespace: str = "team", name: str = "bc-retrain") -> list[str]:
        return [logic.pending_key(p) for p in self.objects[(namespace, name)]["status"].get("pendingAlerts") or []]


async def test_given_a_concurrent_status_write_when_recording_then_it_rereads_and_keeps_both_writes():
    api = FakeApi(policy())
    # The reconciler consumed an earlier alert and wrote history between our read and our write.
    api.interfere.append(lambda a: a.bump(("team", "bc-retrain"), history=[{"fingerprint": "old@t"}]))
    got = await handler.record(parsed(alert("f1")), NOW, api.access())
    assert got == logic.Outcome([logic.Recorded("team", "bc-retrain", 1)])
    status = api.objects[("team", "bc-retrain")]["status"]
    assert status["history"] == [{"fingerprint": "old@t"}] and api.pending() == ["f1@2026-03-01T11:59:00.123456789Z"]


async def test_given_the_alert_acted_on_meanwhile_when_the_write_conflicts_then_it_is_not_added_again():
    api = FakeApi(policy())
    key = "f1@2026-03-01T11:59:00.123456789Z"
    api.interfere.append(lambda a: a.bump(("team", "bc-retrain"), history=[{"fingerprint": key}]))
    got = await handler.record(parsed(alert("f1")), NOW, api.access())
    assert got == logic.Outcome([logic.Recorded("team", "bc-retrain", 0)]) and api.pending() == []


async def test_given_conflicts_on_every_write_when_recording_then_it_gives_up_unavailable():
    api = FakeApi(policy())
    api.interfere.extend([lambda a: a.bump(("team", "bc-retrain"))] * handler.MAX_ATTEMPTS)
    with pytest.raises(kube.Unavailable, match="409"):
        await handler.record(parsed(alert("f1")), NOW, api.access())


async def test_given_a_crd_that_prunes_pending_alerts_when_recording_then_it_is_an_error_not_a_200():
    with pytest.raises(kube.Invalid, match="CRD is older"):
        await handler.record(parsed(alert("f1")), NOW, FakeApi(policy(), prune_pending=True).access())


async def test_given_only_resolved_alerts_when_recording_then_the_apiserver_is_not_called():
    assert await handler.record(parsed(alert(status="resolved")), NOW, FakeApi(down=True).access()) == logic.Outcome()


async def test_given_twin_policies_in_two_namespaces_when_an_alert_of_one_is_recorded_then_only_its_policy_gets_it():
    api = FakeApi(*twins("team-a", "team-b"))
    got = await handler.record(parsed(alert("f1", **{**DRIFT, "namespace": "team-a"})), NOW, api.access())
    assert got == logic.Outcome([logic.Recorded("team-a", "bc-retrain", 1)])
    assert api.pending("team-a") == ["f1@2026-03-01T11:59:00.123456789Z"] and api.pending("team-b") == []
    assert api.listed == ["team-a"], "the other namespace's policies are not even read"


async def test_given_alerts_without_a_watched_namespace_when_recording_then_nothing_is_written_or_read():
    api = FakeApi(*twins("team-a", "team-b"), down=True)  # any API call would raise
    no_namespace = {k: v for k, v in DRIFT.items() if k != "namespace"}
    got = await handler.record(parsed(alert("f1", **no_namespace), alert("f2", **{**DRIFT, "namespace": "team-b"})),
                               NOW, api.access("team-a"))
    assert got.recorded == [] and api.writes == [] and api.listed == []
    assert [(i.reason, i.fingerprint) for i in got.ignored] == [(logic.NO_NAMESPACE, "f1"),
                                                                (logic.NAMESPACE_NOT_WATCHED, "f2")]


async def test_given_a_watched_namespace_without_a_matching_policy_when_recording_then_the_alert_is_unmatched():
    api = FakeApi(*twins("team-a"))
    got = await handler.record(parsed(alert("f1", **{**DRIFT, "namespace": "team-b"})), NOW, api.access())
    assert got == logic.Outcome([], [logic.Ignored(logic.NO_MATCHING_POLICY, DRIFT["alertname"], "f1", "team-b")])
    assert api.listed == ["team-b"] and api.writes == []


# --- the HTTP layer --------------------------------------------------------------------------------------------------


async def client_for(api: FakeApi, token: str | None = TOKEN) -> TestClient:
    route = web.alerts_route(token, lambda batch, now: handler.record(batch, now, api.access()), clock=lambda: NOW)
    client = TestClient(TestServer(web.build_app([route])))
    await client.start_server()
    return client


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                                     {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}x"}])
async def test_given_no_or_a_wrong_token_when_posted_then_401_and_nothing_written(headers, caplog):
    api = FakeApi(policy())
    caplog.set_level(logging.INFO, logger="mlops_operator.web")
    async with await client_for(api) as client:
        r = await client.post("/alerts", json=payload(alert()), headers=headers)
        assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert api.writes == []
    assert [r.getMessage() for r in caplog.records] == ["alerts webhook: 401 missing or wrong bearer token"]


@pytest.mark.parametrize("token", [None, ""])
async def test_given_no_token_configured_when_posted_then_503_disabled_even_without_auth(token):
    api = FakeApi(policy())
    async with await client_for(api, token=token) as client:
        r = await client.post("/alerts", json=payload(alert()), headers=AUTH)
        assert r.status == 503 and "disabled" in (await r.json())["error"]
    assert api.writes == []


async def test_given_a_malformed_payload_when_posted_then_400_with_the_reason():
    async with await client_for(FakeApi(policy())) as client:
        r = await client.post("/alerts", data=b"{oops", headers=AUTH)
        assert r.status == 400 and "JSON" in (await r.json())["error"]
        r = await client.post("/alerts", json=payload(alert(), version="2"), headers=AUTH)
        assert r.status == 400 and "v4" in (await r.json())["error"]


async def test_given_a_body_over_one_mebibyte_when_posted_then_413_and_nothing_written():
    api = FakeApi(policy())
    big = payload(*[alert(f"f{i}", pad="x" * 2000) for i in range(600)])
    async with await client_for(api) as client:
        r = await client.post("/alerts", data=json.dumps(big).encode(), headers=AUTH)
        assert r.status == 413 and "larger than" in (await r.json())["error"]
        chunked = iter([json.dumps(big).encode()])  # no Content-Length: the read limit still applies

        async def stream():
            for part in chunked:
                yield part
        r = await client.post("/alerts", data=stream(), headers=AUTH)
        assert r.status == 413 and "larger than" in (await r.json())["error"]
    assert api.writes == []


async def test_given_an_unreachable_apiserver_when_posted_then_503_so_alertmanager_retries():
    async with await client_for(FakeApi(policy(), down=True)) as client:
        r = await client.post("/alerts", json=payload(alert()), headers=AUTH)
        assert r.status == 503 and "Unavailable" in (await r.json())["error"]


async def test_given_firing_and_resolved_alerts_when_posted_then_200_counts_and_records_per_policy(caplog):
    suspended = policy("paused", "team", {"model": "bc"}, suspend=True)
    other = policy("other", "team", {"alertname": "MLOpsAccuracyLow"})
    api = FakeApi(policy(), suspended, other)
    body = payload(alert("f1"), alert("f2", status="resolved"), alert("f3", model="bc", alertname="X", namespace="team"))
    caplog.set_level(logging.INFO, logger="mlops_operator.web")
    async with await client_for(api) as client:
        r = await client.post("/alerts", json=body, headers={"Authorization": f"bearer  {TOKEN} "})
        assert r.status == 200
        assert await r.json() == {"alerts": 3, "firing": 2, "matched": [
            {"namespace": "team", "name": "bc-retrain", "recorded": 1},
            {"namespace": "team", "name": "paused", "recorded": 2}], "ignored": []}
        again = await client.post("/alerts", json=body, headers=AUTH)
        assert (await again.json())["matched"] == [
            {"namespace": "team", "name": "bc-retrain", "recorded": 0}, {"namespace": "team", "name": "paused", "recorded": 0}]
    assert api.pending() == ["f1@2026-03-01T11:59:00.123456789Z"]
    assert api.pending("team", "paused") == ["f1@2026-03-01T11:59:00.123456789Z", "f3@2026-03-01T11:59:00.123456789Z"]
    assert "other" not in {name for _, name in api.writes} and len(api.writes) == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "mlops_operator.web"]
    assert lines[0] == "alerts webhook: 3 alerts (2 firing, 1 resolved); policies: team/bc-retrain +1, team/paused +2"
    assert not any(TOKEN in line for line in lines)


def ignored_count(reason: str) -> float:
    return REGISTRY.get_sample_value("mlops_operator_alerts_ignored_total", {"reason": reason}) or 0.0


async def test_given_alerts_without_namespace_when_posted_twice_then_counted_by_reason_reported_and_logged_once(caplog):
    api = FakeApi(*twins("team-a", "team-b"))
    no_namespace = {k: v for k, v in DRIFT.items() if k != "namespace"}
    body = payload(alert("f1", **no_namespace), alert("f2", **no_namespace),
                   alert("f3", **{**DRIFT, "namespace": "team-a"}))
    before = {r: ignored_count(r) for r in logic.IGNORE_REASONS}
    caplog.set_level(logging.INFO, logger="mlops_operator.web")
    async with await client_for(api) as client:
        for _ in range(2):  # Alertmanager re-sends every repeat interval
            r = await client.post("/alerts", json=body, headers=AUTH)
            assert r.status == 200
            answer = await r.json()
    assert answer["matched"] == [{"namespace": "team-a", "name": "bc-retrain", "recorded": 0}]
    assert answer["ignored"] == [{"reason": "no_namespace", "alertname": DRIFT["alertname"], "fingerprint": f}
                                 for f in ("f1", "f2")]
    assert api.pending("team-a") == ["f3@2026-03-01T11:59:00.123456789Z"] and api.pending("team-b") == []
    assert {r: ignored_count(r) - before[r] for r in logic.IGNORE_REASONS} == {
        "no_namespace": 4, "invalid_namespace": 0, "namespace_not_watched": 0, "no_matching_policy": 0}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "f1" in warnings[0] and "no namespace label" in warnings[0]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos[-1].endswith("policies: team-a/bc-retrain +0; ignored: no_namespace 2")


def test_given_a_token_file_value_when_settings_load_then_the_trailing_newline_is_ignored_and_never_printed(monkeypatch):
    monkeypatch.setenv("MLOPS_ALERT_TOKEN", f"{TOKEN}\n")
    cfg = OperatorSettings()
    assert cfg.alert_token_value == TOKEN and TOKEN not in repr(cfg)
    monkeypatch.setenv("MLOPS_ALERT_TOKEN", " ")
    assert OperatorSettings().alert_token_value is None


async def test_given_operator_settings_when_main_wires_the_webhook_then_post_alerts_uses_the_configured_token():
    from mlops_operator import main

    route = main.alerts_route(OperatorSettings(alert_token=f"{TOKEN}\n", namespaces="team"))
    assert (route.method, route.path) == ("POST", "/alerts")
    async with TestClient(TestServer(web.build_app([route]))) as client:
        assert (await client.post("/alerts", json=payload(alert()), headers={"Authorization": "Bearer x"})).status == 401
        resolved_only = await client.post("/alerts", json=payload(alert(status="resolved")), headers=AUTH)
        assert resolved_only.status == 200 and await resolved_only.json() == {"alerts": 1, "firing": 0, "matched": [],
                                                                     "ignored": []}
