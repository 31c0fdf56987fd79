"""`mlops-route`: the builtin traffic router of a ModelDeployment (weighted split + shadow mirroring).

Environment:
    MLOPS_ROUTER_CONFIG        path of the JSON configuration (the mounted ConfigMap; format in
                               runtime/route_config.py). Re-read within MLOPS_ROUTER_POLL seconds of a change.
    MLOPS_ROUTER_POLL          seconds between checks of the file (mtime, size, inode, then content). Default 0.25.
    MLOPS_ROUTER_TOKEN         if set, `PUT /-/config` needs `Authorization: Bearer <token>`.
    MLOPS_MODEL                model name for the shadow metrics when the config has no "model".
    MLOPS_HOST / MLOPS_PORT    listen address, default 0.0.0.0:8080.
    MLOPS_MAX_BODY_BYTES       larger request bodies get 413. Default 1 MiB.
    MLOPS_LIMIT_MAX_IN_FLIGHT, MLOPS_LIMIT_MAX_LARGE_IN_FLIGHT, MLOPS_LIMIT_LARGE_BYTES   requests in flight,
                               and of them large ones (body over LARGE_BYTES), beyond which requests get 429
                               with Retry-After (runtime/serve_limits.py). Health and admin paths never count.
    MLOPS_UPSTREAM_TIMEOUT     seconds before a primary request is answered 502. Default 30.
    MLOPS_SHADOW_TIMEOUT       seconds before a mirrored request is abandoned. Default 5.
    MLOPS_SHADOW_QUEUE         mirrored requests waiting at most; more are dropped (counted). Default 256.
    MLOPS_SHADOW_CONCURRENCY   mirrored requests in flight at most. Default 4.
    MLOPS_SHADOW_TOLERANCE     relative tolerance when comparing numeric predictions. Default 1e-9.
    MLOPS_ROUTER_RETIRED_TTL   seconds a version that left the router is still asked for feedback by id (0: never).
                               Default 3600, the model servers' own MLOPS_FEEDBACK_TTL default.

Two ways in for a new configuration, both under the generation rule (lower generations are ignored):
the ConfigMap file, which is durable and read at start (so a restarted router resumes the last split),
and `PUT /-/config`, which the operator uses so a new weight takes effect at once rather than after the
kubelet's volume sync (up to a minute). Readiness: `GET /-/ready` is 503 until a configuration is in effect.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os

from prometheus_client import disable_created_metrics
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlops_operator.runtime.route_app import RouterApp, RouterState
from mlops_operator.runtime.route_feedback import RetiredVersions
from mlops_operator.runtime.route_metrics import RouterMetrics
from mlops_operator.runtime.route_shadow import ShadowMirror
from mlops_operator.runtime.serve_asgi import Background, serve
from mlops_operator.runtime.serve_limits import LimitSettings
from mlops_operator.runtime.serve_json import parse_json

log = logging.getLogger("mlops_operator.route")


class RouteSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore", protected_namespaces=())

    router_config: str = Field(min_length=1)
    router_poll: float = Field(0.25, gt=0, le=5)
    router_token: str | None = None
    model: str = ""
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    upstream_timeout: float = Field(30.0, gt=0)
    shadow_timeout: float = Field(5.0, gt=0)
    shadow_queue: int = Field(256, ge=1)
    shadow_concurrency: int = Field(4, ge=1)
    shadow_tolerance: float = Field(1e-9, ge=0)
    router_retired_ttl: float = Field(3600.0, ge=0)
    log_level: str = "INFO"


class ConfigFile:
    """Change detection for the config file: a cheap stat first, the content hash only when that moved."""

    def __init__(self, path: str):
        self.path = path
        self._stat: tuple[int, int, int] | None = None
        self._digest: bytes | None = None

    def changed_content(self) -> bytes | None:
        """The file's bytes if they differ from the last call's; None if unchanged or absent."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if key == self._stat:
            return None
        with open(self.path, "rb") as handle:
            content = handle.read()
        self._stat = key
        digest = hashlib.sha256(content).digest()
        if digest == self._digest:
            return None
        self._digest = digest
        return content


def load_file(state: RouterState, file: ConfigFile) -> None:
    """Offer the file's content to the state if it changed; a bad file is logged, the current config kept."""
    content = file.changed_content()
    if content is None:
        return
    try:
        state.offer(parse_json(content), "file")
    except ValueError as exc:
        log.error("router config file %s is invalid, keeping the current configuration: %s", file.path, exc)


async def watch_file(state: RouterState, file: ConfigFile, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            load_file(state, file)
        except OSError as exc:  # e.g. mid-swap of the ConfigMap symlink: try again next tick
            log.warning("cannot read router config %s: %s", file.path, exc)
        except Exception:  # the watcher must outlive any bad file
            log.exception("router config reload failed")


def build_app(settings: RouteSettings) -> RouterApp:
    metrics = RouterMetrics()
    state = RouterState(metrics, RetiredVersions(ttl=settings.router_retired_ttl))
    file = ConfigFile(settings.router_config)
    load_file(state, file)  # before serving: a restarted router resumes the durable split at once
    if state.route is None:
        log.warning("no valid configuration in %s yet; not Ready until one arrives", settings.router_config)
    mirror = ShadowMirror(metrics.observe, settings.shadow_queue, settings.shadow_concurrency,
                          settings.shadow_timeout, settings.shadow_tolerance)
    if not settings.router_token:
        log.warning("MLOPS_ROUTER_TOKEN is not set: PUT /-/config accepts unauthenticated changes")
    background = Background(lambda: watch_file(state, file, settings.router_poll))
    return RouterApp(state, mirror, metrics, settings.router_token, settings.model, settings.max_body_bytes,
                     settings.upstream_timeout, background.start, background.stop, LimitSettings().limits())


def main() -> None:
    settings = RouteSettings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    disable_created_metrics()
    serve(build_app(settings), settings.host, settings.port)


if __name__ == "__main__":
    main()
