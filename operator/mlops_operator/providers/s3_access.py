"""S3 access for the operator: a namespace's S3 Secret, read and checked, and one cached client per credential set.

Credentials come from a Secret in the object's own namespace (a team's bucket is the team's business).
boto3 clients are cached per credential set (a small LRU keyed by a hash of the values, never the values
themselves), because building one costs far more than the calls it makes; a rotated Secret gets a new
client. The values are credentials: they are never logged, and messages name only the missing keys.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Mapping

from pydantic import SecretStr

from mlops_operator.providers import kube, storage
from mlops_operator.settings import S3Settings

REQUIRED_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_BUCKET")
_STORES: OrderedDict[str, storage.ArtifactStore] = OrderedDict()
_MAX_STORES = 16
_STORES_LOCK = threading.Lock()


def store_for(secret: Mapping[str, str]) -> storage.ArtifactStore:
    """An ``ArtifactStore`` for these credentials (cached; a rotated secret gets a new client)."""
    key = hashlib.sha256(json.dumps(sorted(secret.items())).encode()).hexdigest()
    with _STORES_LOCK:
        if key in _STORES:
            _STORES.move_to_end(key)
            return _STORES[key]
    settings = S3Settings.model_construct(
        s3_endpoint_url=secret.get("S3_ENDPOINT_URL") or None, s3_bucket=secret["S3_BUCKET"],
        aws_access_key_id=SecretStr(secret["AWS_ACCESS_KEY_ID"]),
        aws_secret_access_key=SecretStr(secret["AWS_SECRET_ACCESS_KEY"]),
        aws_region=secret.get("AWS_REGION") or "us-east-1")
    store = storage.ArtifactStore.from_settings(
        settings, storage.client_config(connect_timeout=3, read_timeout=20, max_attempts=2))
    with _STORES_LOCK:
        _STORES[key] = store
        while len(_STORES) > _MAX_STORES:
            _STORES.popitem(last=False)
    return store


async def s3_secret(namespace: str, name: str) -> tuple[dict[str, str] | None, str]:
    """The S3 secret's data, or None and why it cannot be used."""
    data = await kube.read_secret(namespace, name)
    if data is None:
        return None, f"Secret {name!r} not found in namespace {namespace!r} (keys: {', '.join(REQUIRED_SECRET_KEYS)})"
    missing = [k for k in REQUIRED_SECRET_KEYS if not data.get(k)]
    if missing:
        return None, f"Secret {name!r} in namespace {namespace!r} lacks {', '.join(missing)}"
    return data, ""
