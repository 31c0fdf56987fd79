"""Router configuration: validation, the generation rule, file reload (ConfigMap-style) and `PUT /-/config`."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import httpx
import pytest

from mlops_operator.runtime.route import ConfigFile, RouteSettings, build_app
from mlops_operator.runtime.route_app import RouterApp, RouterState
from mlops_operator.runtime.route_config import FULL, ConfigError, Verdict, decide, parse_config
from mlops_operator.runtime.route_metrics import RouterMetrics
from mlops_operator.runtime.route_shadow import ShadowMirror
from mlops_operator.runtime.serve_asgi import LoopbackServer

pytestmark = pytest.mark.unit


def config(generation: int = 1, weight: float = 10, **extra) -> dict:
    return {
        "generation": generation,
        "model": "bc",
        "stable": {"url": "http://bc-stable:8080", "version": "v6"},
        "candidate": {"url": "http://bc-candidate.ns.svc:8080/", "version": "v7", "weight": weight},
        **extra,
    }


# ------------------------------------------------------------------------------------------ parsing
def test_given_full_document_when_parsed_then_weights_in_basis_points_and_upstreams_resolved():
    parsed = parse_config(config(weight=12.5, shadow={"url": "http://bc-shadow:9000/base", "version": "v8", "percent": 50}))
    assert parsed.weights == {"stable": FULL - 1250, "candidate": 1250}
    assert (parsed.candidate.host, parsed.candidate.port, parsed.candidate.base_path) == ("bc-candidate.ns.svc", 8080, "")
    assert (parsed.shadow.port, parsed.shadow.base_path, parsed.shadow_percent) == (9000, "/base", 5000)
    assert [u.name for u in parsed.upstreams] == ["stable", "candidate", "shadow"]


def test_given_stable_only_when_parsed_then_all_traffic_to_stable():
    parsed = parse_config({"generation": 0, "stable": {"url": "http://s"}})
    assert parsed.weights == {"stable": FULL} and parsed.stable.port == 80 and parsed.candidate is None
    assert parsed.upstreams == [parsed.stable]


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ([], "JSON object"),
        ({"stable": {"url": "http://s"}}, "generation"),
        ({"generation": -1, "stable": {"url": "http://s"}}, "generation"),
        ({"generation": True, "stable": {"url": "http://s"}}, "generation"),
        ({"generation": 1}, "stable is required"),
        ({"generation": 1, "stable": {"version": "v1"}}, "stable.url"),
        ({"generation": 1, "stable": {"url": "https://s"}}, "stable.url must be an http://"),
        ({"generation": 1, "stable": {"url": "http://s:99999"}}, "invalid port"),
        ({"generation": 1, "stable": {"url": "http://s?x=1"}}, "stable.url must be scheme"),
        (config(weight=101), "candidate.weight"),
        (config(weight=-1), "candidate.weight"),
        (config(weight=float("nan")), "candidate.weight"),
        (config(weight="10"), "candidate.weight"),
        (config(shadow={"url": "http://sh", "percent": 200}), "shadow.percent"),
        (config(shadow={"url": "ftp://sh"}), "shadow.url"),
    ],
)
def test_given_invalid_document_when_parsed_then_error_names_the_field(doc, field):
    with pytest.raises(ConfigError, match=field):
        parse_config(doc)


# ------------------------------------------------------------------------------------------ generation rule
@pytest.mark.parametrize(
    ("current", "new", "verdict"),
    [
        (None, config(5), Verdict.APPLY),
        (config(5), config(6, weight=50), Verdict.APPLY),
        (config(5), config(4, weight=50), Verdict.STALE),
        (config(5), config(5), Verdict.UNCHANGED),
        (config(5), config(5, weight=50), Verdict.CONFLICT),
    ],
)
def test_given_current_and_new_generation_when_decided_then_only_newer_applies(current, new, verdict):
    assert decide(parse_config(current) if current else None, parse_config(new))[0] is verdict


# ------------------------------------------------------------------------------------------ admin API
def make_router(token: str | None = None) -> RouterApp:
    metrics = RouterMetrics()
    return RouterApp(RouterState(metrics), ShadowMirror(metrics.observe), metrics, token=token)


def http(app: RouterApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router")


async def test_given_no_config_when_probed_or_proxied_then_503_until_a_config_is_put():
    app = make_router()
    async with http(app) as client:
        assert (await client.get("/-/ready")).status_code == 503
        assert (await client.post("/v1/models/bc:predict", json={})).status_code == 503
        assert (await client.get("/-/healthz")).status_code == 200
        put = await client.put("/-/config", json=config(3))
        ready = await client.get("/-/ready")
        current = await client.get("/-/config")
    assert put.status_code == 200 and put.json()["applied"] is True
    assert ready.json() == {"ready": True, "generation": 3}
    assert current.json() == config(3)


async def test_given_token_when_put_without_or_with_wrong_bearer_then_401_and_nothing_changes():
    app = make_router(token="s3cret")
    async with http(app) as client:
        missing = await client.put("/-/config", json=config(1))
        wrong = await client.put("/-/config", json=config(1), headers={"authorization": "Bearer nope"})
        assert app.state.route is None
        right = await client.put("/-/config", json=config(1), headers={"authorization": "Bearer s3cret"})
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)


async def test_given_applied_config_when_stale_conflicting_invalid_or_repeated_put_then_current_is_kept():
    app = make_router()
    async with http(app) as client:
        await client.put("/-/config", json=config(5, weight=20))
        stale = await client.put("/-/config", json=config(4, weight=90))
        conflict = await client.put("/-/config", json=config(5, weight=90))
        invalid = await client.put("/-/config", json=config(6, weight=900))
        malformed = await client.put("/-/config", content=b"{")
        repeat = await client.put("/-/config", json=config(5, weight=20))
    assert (stale.status_code, stale.json()["verdict"]) == (409, "stale")
    assert (conflict.status_code, conflict.json()["verdict"]) == (409, "conflict")
    assert invalid.status_code == 400 and "candidate.weight" in invalid.json()["error"]
    assert malformed.status_code == 400
    assert (repeat.status_code, repeat.json()["verdict"]) == (200, "unchanged")
    assert app.state.route.config.generation == 5 and app.state.route.config.candidate_weight == 2000


# ------------------------------------------------------------------------------------------ file reload
async def generation(client: httpx.AsyncClient, wanted: int) -> None:
    """Returns once the router serves config generation ``wanted`` (polling ``GET /-/config``)."""
    while (await client.get("/-/config")).json()["generation"] != wanted:
        await asyncio.sleep(0.02)


class ConfigMapDir:
    """A directory laid out like a kubelet ConfigMap volume: file -> ..data/file, ..data swapped atomically."""

    def __init__(self, root: Path, name: str = "router.json"):
        self.root, self.name, self.n = root, name, 0
        self.path = root / name

    def write(self, doc: dict) -> None:
        self.n += 1
        target = self.root / f"..v{self.n}"
        target.mkdir()
        (target / self.name).write_text(json.dumps(doc))
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(target.name)
        os.replace(tmp, self.root / "..data")
        if not self.path.is_symlink():
            self.path.symlink_to(f"..data/{self.name}")


def test_given_config_file_when_unchanged_touched_or_changed_then_content_reported_only_on_change(tmp_path):
    volume = ConfigMapDir(tmp_path)
    volume.write(config(1))
    file = ConfigFile(str(volume.path))
    assert json.loads(file.changed_content()) == config(1)
    assert file.changed_content() is None  # nothing moved
    volume.write(config(1))  # same content, new inode: read but not reported
    assert file.changed_content() is None
    volume.write(config(2))
    assert json.loads(file.changed_content()) == config(2)


async def test_given_running_router_when_configmap_changes_then_new_weight_applies(tmp_path):
    volume = ConfigMapDir(tmp_path)
    volume.write(config(1, weight=10))
    app = build_app(RouteSettings(router_config=str(volume.path), router_poll=0.25))
    assert app.state.route.config.generation == 1  # read before serving: a restart resumes the split
    async with LoopbackServer(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        volume.write(config(2, weight=50))
        await asyncio.wait_for(generation(client, 2), timeout=10)  # how soon: `make bench` (latency)
        volume.write(config(1, weight=90))  # an older generation showing up late is ignored
        volume.write({"generation": 9, "stable": {"url": "gopher://x"}})  # and so is an invalid one
        await asyncio.sleep(0.6)
        assert app.state.route.config.generation == 2 and app.state.route.config.candidate_weight == 5000
        put = await client.put("/-/config", json=config(3, weight=100))  # the operator's fast path
        assert put.status_code == 200 and app.state.route.config.weights == {"stable": 0, "candidate": FULL}
