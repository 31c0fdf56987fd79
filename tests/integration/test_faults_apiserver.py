"""The operator (in-process, Kopf run as in production, scoped to the test's namespace) talking to the real
apiserver through a TCP proxy on loopback that the test breaks on purpose (the installed operator is
scaled to zero by this tier's conftest, so nothing else acts on these objects):

- scenario 6, the apiserver unreachable for two minutes: every connection, old and new, goes silent
  (packets dropped, not refused). The operator must not exit; an object created meanwhile is reconciled
  by itself once the apiserver is reachable again;
- scenario 7, the watch stream silently stalls: every open connection stops carrying bytes while new ones
  work. With MLOPS_WATCH_CLIENT_TIMEOUT the operator gives up on the silent stream, lists again and
  handles the object created during the stall within that timeout (plus one reconcile).

Times to recover are printed and recorded for the fault table (``make faults``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kopf.testing import KopfRunner

from mlops_operator.operator_settings import operator_settings
from mlops_operator.providers import kube
import test_operator_references as shared
from test_operator_references import OPERATOR_ENV, apply, condition, crds, get, model_version, wait_for  # noqa: F401
from tests.conftest import kubectl

pytestmark = pytest.mark.faults

OUTAGE = 120.0  # seconds without an apiserver (RELIABILITY scenario 6)
CLIENT_TIMEOUT = 15  # MLOPS_WATCH_CLIENT_TIMEOUT for the stall test: a silent watch is dropped after this


class _Conn:
    """One proxied connection: two pumps that forward while ``flowing`` is set."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.writers = [writer]
        self.tasks: list[asyncio.Task[None]] = []

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for writer in self.writers:
            writer.close()
        self.flowing.set()  # a connection held during an outage stops waiting


class BreakableProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target`` (TLS passes through untouched: the apiserver's
    certificate names 127.0.0.1). ``outage()`` silences every connection and holds new ones unanswered;
    ``recover()`` drops the silenced ones (as a reset NAT entry would) and forwards new ones again;
    ``stall_open()`` silences the open connections only."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="apiserver proxy")
        self.conns: set[_Conn] = set()
        self.down = False
        self.server: asyncio.AbstractServer | None = None

    def start(self) -> int:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, "127.0.0.1", 0), self.loop).result(10)
        return self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer)
        self.conns.add(conn)
        if self.down:
            conn.flowing.clear()
            await conn.flowing.wait()  # held until recover() closes it
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            conn.close()
            return
        conn.writers.append(up_writer)
        conn.tasks = [asyncio.ensure_future(self._pump(reader, up_writer, conn)),
                      asyncio.ensure_future(self._pump(up_reader, writer, conn))]

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, conn: _Conn) -> None:
        try:
            while data := await src.read(65536):
                await conn.flowing.wait()
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            conn.close()
            self.conns.discard(conn)

    def _call(self, fn) -> None:
        async def run() -> None:
            fn()
        asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def stall_open(self) -> None:
        self._call(lambda: [c.flowing.clear() for c in list(self.conns)])

    def outage(self) -> None:
        def go() -> None:
            self.down = True
            for c in list(self.conns):
                c.flowing.clear()
        self._call(go)

    def recover(self) -> None:
        def go() -> None:
            self.down = False
            for c in list(self.conns):
                if not c.flowing.is_set():
                    c.close()
                    self.conns.discard(c)
        self._call(go)

    def stop(self) -> None:
        def go() -> None:
            for c in list(self.conns):
                c.close()
            if self.server is not None:
                self.server.close()
        self._call(go)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture()
def proxied_operator(crds, namespace, monkeypatch, tmp_path) -> Iterator[Any]:  # noqa: F811
    """A factory: ``run(**env)`` starts the operator on ``namespace`` with every API call going through a
    fresh BreakableProxy; yields (proxy, runner)."""
    with open(os.environ["KUBECONFIG"]) as f:
        config = yaml.safe_load(f)
    server = urllib.parse.urlsplit(config["clusters"][0]["cluster"]["server"])
    proxy = BreakableProxy(server.hostname, server.port or 443)
    port = proxy.start()
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    # The operator reads $KUBECONFIG (the proxy); the test's own kubectl keeps talking to the apiserver.
    direct = os.environ["KUBECONFIG"]
    monkeypatch.setattr(shared, "kubectl", lambda *args, **kw: kubectl("--kubeconfig", direct, *args, **kw))

    @contextlib.contextmanager
    def run(**env: str) -> Iterator[tuple[BreakableProxy, KopfRunner]]:
        for key, value in {**OPERATOR_ENV, **env}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("KUBECONFIG", str(path))
        monkeypatch.setattr(kube, "_client", None)  # the operator's own client goes through the proxy too
        operator_settings.cache_clear()
        args = ["run", "-m", "mlops_operator.main", "--namespace", namespace, "--standalone"]
        runner = KopfRunner(args, timeout=120)
        runner._thread.daemon = True  # an operator wedged by a fault must not keep the test session alive
        with runner:
            try:
                yield proxy, runner
            except AssertionError as exc:  # what the operator logged is the diagnosis
                raise AssertionError(f"{exc}\noperator output (tail):\n{runner.output[-6000:]}") from None

    try:
        yield run
    finally:
        proxy.stop()
        operator_settings.cache_clear()


def _reconciled(namespace: str, name: str) -> dict | None:
    """The version's InvalidSpec condition (its FeatureSet is missing): proof that a pass ran on it."""
    obj = get(namespace, "modelversion", name)
    return obj if condition(obj, "InvalidSpec").get("status") == "True" else None


def _missing_reference(name: str) -> dict:
    return model_version(name, training={"featureSet": {"name": "absent"},
                                         "estimator": "sklearn.linear_model.LogisticRegression"})


@pytest.mark.scenario(6, "apiserver unreachable for 2 minutes: no crash, converges after")
def test_given_the_apiserver_unreachable_for_two_minutes_then_the_operator_stays_up_and_converges_after(
        namespace, proxied_operator, record_property):
    with proxied_operator() as (proxy, runner):
        apply(namespace, _missing_reference("before"))
        wait_for("the first version reconciled", lambda: _reconciled(namespace, "before"), 60)
        proxy.outage()
        cut = time.monotonic()
        apply(namespace, _missing_reference("during"))  # the test's kubectl: straight to the apiserver
        while time.monotonic() - cut < OUTAGE:
            assert not runner.future.done(), f"the operator exited during the outage:\n{runner.output[-3000:]}"
            time.sleep(2)
        assert _reconciled(namespace, "during") is None, "reconciled while the apiserver was unreachable?"
        proxy.recover()
        back = time.monotonic()
        wait_for("the version created during the outage reconciled", lambda: _reconciled(namespace, "during"), 180)
        recovered = time.monotonic() - back
        record_property("recovery_s", recovered)
        print(f"\napiserver back after {OUTAGE:g}s: the object created meanwhile was reconciled {recovered:.1f}s later")
        assert not runner.future.done(), runner.output[-3000:]
    assert runner.exit_code == 0, runner.output[-3000:]


@pytest.mark.scenario(7, "watch stream stalled: reconnects within the client timeout")
def test_given_a_silently_stalled_watch_when_an_object_is_created_then_it_is_handled_within_the_client_timeout(
        namespace, proxied_operator, record_property):
    env = {"MLOPS_WATCH_CLIENT_TIMEOUT": str(CLIENT_TIMEOUT), "MLOPS_WATCH_SERVER_TIMEOUT": "600"}
    with proxied_operator(**env) as (proxy, runner):
        apply(namespace, _missing_reference("before"))
        wait_for("the first version reconciled", lambda: _reconciled(namespace, "before"), 60)
        proxy.stall_open()  # the watch streams (and any pooled connection) go silent; new connections work
        stalled = time.monotonic()
        apply(namespace, _missing_reference("during"))
        wait_for("the version created during the stall handled", lambda: _reconciled(namespace, "during"),
                 CLIENT_TIMEOUT + 60)
        recovered = time.monotonic() - stalled
        record_property("recovery_s", recovered)
        print(f"\nwatch stalled: the object created meanwhile was handled after {recovered:.1f}s "
              f"(client timeout {CLIENT_TIMEOUT}s)")
        assert not runner.future.done(), runner.output[-3000:]
    assert runner.exit_code == 0, runner.output[-3000:]
