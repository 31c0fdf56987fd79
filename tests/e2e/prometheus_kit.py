"""What the e2e tests share to talk to the local cluster's real Prometheus (it scrapes and evaluates every
5 s): instant queries, waiting for a series, and a rules file loaded for the length of a block."""

from __future__ import annotations

import pathlib
import time
from typing import Any, Callable

import httpx


def query(url: str, expr: str) -> list[dict[str, Any]]:
    """An instant query; the result vector."""
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["result"]


def wait_series(url: str, expr: str, until: Callable[[list[dict[str, Any]]], bool],
                timeout: float = 90) -> list[dict[str, Any]]:
    """Poll Prometheus until ``until(result)`` holds."""
    deadline, result = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        result = query(url, expr)
        if until(result):
            return result
        time.sleep(1)
    raise AssertionError(f"{expr}: never as expected within {timeout}s, last {result}")


class Rules:
    """``with Rules(rules_dir, url, name, text)``: the rule file ``<name>.yaml`` is in Prometheus' rules
    directory (and loaded) inside the block."""

    def __init__(self, rules_dir: str, url: str, name: str, text: str):
        self.path = pathlib.Path(rules_dir) / f"{name}.yaml"
        self.url, self.text = url, text

    def _reload(self) -> None:
        answer = httpx.post(f"{self.url}/-/reload", timeout=10)
        assert answer.status_code == 200, f"Prometheus did not reload its rules: {answer.status_code} {answer.text}"

    def __enter__(self) -> "Rules":
        self.path.write_text(self.text)
        self._reload()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.path.unlink(missing_ok=True)
        self._reload()
