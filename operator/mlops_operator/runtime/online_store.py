"""The online feature store client (Redis): bounded, pipelined writes for the materializer, one round trip
per request for the model server. Key layout and value format: ``features.online``.

Configured from the environment (the operator sets both when the chart names an online store):
``MLOPS_ONLINE_STORE_URL`` (``redis://host:port/db``) and ``REDIS_PASSWORD`` (from a Secret, never logged).
``redis`` is imported only when a store is configured, so pods without one never load it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlops_operator.features.online import Descriptor, descriptor_key, vector_key

ENV_URL = "MLOPS_ONLINE_STORE_URL"
ENV_PASSWORD = "REDIS_PASSWORD"
WRITE_BATCH = 1000  # SETs per pipeline round trip: bounded memory on both ends, few round trips


class StoreUnavailable(Exception):
    """The online store cannot be reached, refused the credentials, or timed out."""


class OnlineStore:
    def __init__(self, url: str, password: str | None = None, timeout: float = 1.0) -> None:
        import redis  # only pods that use an online store pay for the import

        self._errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
        self.url = url
        self._client = redis.Redis.from_url(url, password=password or None, socket_timeout=timeout,
                                            socket_connect_timeout=timeout, retry_on_timeout=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, timeout: float = 1.0) -> "OnlineStore | None":
        env = os.environ if env is None else env
        url = (env.get(ENV_URL) or "").strip()
        return cls(url, env.get(ENV_PASSWORD), timeout) if url else None

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        # The URL carries no password (it comes from REDIS_PASSWORD), so naming it is safe.
        return StoreUnavailable(f"online store {self.url} unavailable: {type(exc).__name__}: {exc}")

    def publish(self, namespace: str, feature_set: str, descriptor: Descriptor,
                vectors: Iterable[tuple[str, bytes]], expire_seconds: int, batch: int = WRITE_BATCH) -> int:
        """Write every vector (in pipelined batches of ``batch``), then the descriptor; the number written."""
        written = 0
        try:
            pipe = self._client.pipeline(transaction=False)
            for entity, raw in vectors:
                pipe.set(vector_key(namespace, feature_set, entity), raw, ex=expire_seconds)
                written += 1
                if written % batch == 0:
                    pipe.execute()
            pipe.set(descriptor_key(namespace, feature_set), descriptor.encode())
            pipe.execute()
        except self._errors as exc:
            raise self._unavailable(exc) from exc
        return written

    def read(self, namespace: str, feature_set: str, entities: Sequence[str]) -> tuple[Any, list[Any]]:
        """(descriptor bytes or None, vector bytes or None per entity) in one round trip."""
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.get(descriptor_key(namespace, feature_set))
            pipe.mget([vector_key(namespace, feature_set, e) for e in entities])
            descriptor, vectors = pipe.execute()
        except self._errors as exc:
            raise self._unavailable(exc) from exc
        return descriptor, list(vectors)

    def close(self) -> None:
        self._client.close()
