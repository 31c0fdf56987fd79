"""The processes of the router benchmark: `mlops-route`, nginx (the peer, and static upstreams), `mlops-serve`
shadows. Loopback only.

Every process gets its own session (so stopping it stops its children) and a log file in the work dir;
`wait_ready` polls a readiness URL and fails fast, naming the log, if the process exits first.
nginx runs as a local, single-process instance (`master_process off`, `daemon off`) with every path under
the work dir, so it needs no privileges and touches nothing of the system's nginx.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.bench import common
from tests.bench.common import REPO, Unavailable, free_port, pinned

NGINX = "/usr/sbin/nginx"


class Proc:
    """One benchmark process on a loopback port, optionally pinned to a core."""

    def __init__(self, name: str, argv: Sequence[str], workdir: Path, core: int | None, env: dict[str, str] | None = None,
                 port: int | None = None):
        self.name, self.port = name, port or free_port()
        self.log_path = workdir / f"{name}.log"
        self.log = self.log_path.open("wb")
        argv = list(argv) if core is None else pinned(core, argv)
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir,
                                     env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str, timeout: float = 60.0) -> None:
        common.wait_http_ok(self.proc, self.url + path, self.name, str(self.log_path), timeout)

    def stop(self) -> None:
        common.stop_group(self.proc, self.log)


def backend(name: str, model: str, version: str, prefix: str, root: Path, workdir: Path, core: int | None,
            fault: str = "") -> Proc:
    """The real mlops-serve app (see router_backend.py) as `name`, e.g. shadow-healthy / shadow-slow.

    Its periodic drift computation is pushed out of the run: here the shadow shares the load core with
    vegeta and the primaries, which it never does in a cluster, so its bursts would land on the primary.
    """
    port = free_port()
    env = {"MLOPS_MODEL": model, "MLOPS_MODEL_VERSION": version, "MLOPS_ROLE": name.split("-")[0],
           "MLOPS_ARTIFACT_PREFIX": prefix, "MLOPS_HOST": "127.0.0.1", "MLOPS_PORT": str(port), "MLOPS_FAULT": fault,
           "MLOPS_DRIFT_INTERVAL": "3600", "MLOPS_LOG_LEVEL": "WARNING"}
    return Proc(name, [sys.executable, "-m", "tests.bench.router_backend", str(root)], workdir, core, env, port)


def router(workdir: Path, core: int | None, config: dict) -> Proc:
    """`mlops-route` (the console script) reading `config` from a file, as it reads the mounted ConfigMap."""
    path = workdir / "router-config.json"
    path.write_text(json.dumps(config))
    port = free_port()
    env = {"MLOPS_ROUTER_CONFIG": str(path), "MLOPS_HOST": "127.0.0.1", "MLOPS_PORT": str(port),
           "MLOPS_ROUTER_TOKEN": "bench", "MLOPS_LOG_LEVEL": "WARNING"}
    script = Path(sys.executable).parent / "mlops-route"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "mlops_operator.runtime.route"]
    return Proc("router", argv, workdir, core, env, port)


def requests_total(url: str) -> int:
    """Sum of `mlops_requests_total` (all codes) on a model server's /metrics: what it actually received."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return int(sum(s.value for fam in text_string_to_metric_families(text) if fam.name == "mlops_requests"
                   for s in fam.samples if s.name == "mlops_requests_total"))


def router_counts(url: str) -> dict[str, int]:
    """`mlops_router_requests_total` per variant from the router's /metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, int] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name == "mlops_router_requests":
            for s in fam.samples:
                if s.name == "mlops_router_requests_total":
                    out[s.labels["variant"]] = out.get(s.labels["variant"], 0) + int(s.value)
    return out


def put_config(router_url: str, doc: dict, token: str = "bench") -> dict:
    req = urllib.request.Request(router_url + "/-/config", data=json.dumps(doc).encode(), method="PUT",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _nginx_head(tmp: Path) -> str:
    """Process-level settings of every nginx here: one foreground process, all paths under `tmp`."""
    return f"""daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_body_buffer_size 64k;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
"""


def proxy_conf(tmp: Path, stable: int, candidate: int, shadows: dict[int, int], candidate_percent: int) -> str:
    """The peer: `split_clients` on the random $request_id, `mirror` of every request to a shadow.

    One `server` per listen port in `shadows` (listen port -> shadow port), so the degraded-shadow cells
    switch shadows by port instead of reloading. Upstream keep-alive as the router has it; no access log
    (the router keeps none either). Request bodies stay in memory (client_body_buffer_size > any body here).
    """
    servers = []
    for listen, shadow in shadows.items():
        servers.append(f"""
    upstream shadow_{listen} {{ server 127.0.0.1:{shadow}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{listen};
        location = /-/ready {{ return 200 "ok"; }}
        location / {{
            mirror /_shadow;
            mirror_request_body on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://$variant;
        }}
        location = /_shadow {{
            internal;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
            proxy_read_timeout 5s;
            proxy_pass http://shadow_{listen}$request_uri;
        }}
    }}""")
    return _nginx_head(tmp) + f"""    upstream stable {{ server 127.0.0.1:{stable}; keepalive 64; }}
    upstream candidate {{ server 127.0.0.1:{candidate}; keepalive 64; }}
    split_clients "${{request_id}}" $variant {{
        {candidate_percent}% candidate;
        * stable;
    }}{''.join(servers)}
}}
"""


def static_conf(tmp: Path, port: int, body: str) -> str:
    """A static upstream: answers every request with `body` (a V2 inference response); stub_status counts them."""
    if "'" in body or "\\" in body:
        raise ValueError("the static body must not contain quotes or backslashes")
    return _nginx_head(tmp) + f"""    server {{
        listen 127.0.0.1:{port};
        location = /-/ready {{ return 200 "ok"; }}
        location = /-/status {{ stub_status; }}
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""


def ensure_nginx() -> str:
    """Path of nginx, installing the Debian package once if missing (docs/benchmarks.md: peers install themselves)."""
    if Path(NGINX).exists():
        return NGINX
    found = shutil.which("nginx")
    if found:
        return found
    print("  nginx not found: installing the Debian package (apt-get install -y nginx-light || nginx) ...", flush=True)
    for package in ("nginx-light", "nginx"):
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", package], capture_output=True, timeout=600)
        found = shutil.which("nginx") or (NGINX if Path(NGINX).exists() else None)
        if found:
            return found
    raise Unavailable("nginx is not installed and apt-get could not install it")


def _nginx(name: str, workdir: Path, core: int | None, port: int, conf_text) -> Proc:
    binary = ensure_nginx()
    tmp = workdir / name
    tmp.mkdir(exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(conf_text(tmp))
    check = subprocess.run([binary, "-t", "-q", "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)],
                           capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise Unavailable(f"nginx -t refused the generated config {conf}: {check.stderr.strip()}")
    return Proc(name, [binary, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)], workdir, core, port=port)


def nginx_proxy(workdir: Path, core: int | None, stable: int, candidate: int, shadows: dict[int, int],
                candidate_percent: int) -> Proc:
    return _nginx("nginx", workdir, core, next(iter(shadows)),
                  lambda tmp: proxy_conf(tmp, stable, candidate, shadows, candidate_percent))


def static_backend(name: str, workdir: Path, core: int | None, body: str) -> Proc:
    port = free_port()
    return _nginx(name, workdir, core, port, lambda tmp: static_conf(tmp, port, body))


def static_requests(url: str) -> int:
    """stub_status's request counter of a static upstream. It counts the status requests too (each one
    itself), so the traffic between two readings is `after - before - 1`."""
    with urllib.request.urlopen(url + "/-/status", timeout=5) as resp:
        lines = resp.read().decode().splitlines()
    return int(lines[2].split()[2])
