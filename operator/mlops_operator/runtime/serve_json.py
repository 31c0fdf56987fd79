"""JSON for the request path of `mlops-serve` and `mlops-route`: orjson when installed, refusals by reason.

Kept free of kserve, numpy and pydantic so the router imports only what it uses (it parses its own
configuration and reads predictions for shadow agreement, nothing else).
"""

from __future__ import annotations

from typing import Any

from mlops_operator.runtime.serve_limits import EMPTY, MALFORMED, NESTING

try:  # orjson is about 3x faster; json keeps the module importable without it
    import orjson

    _decode_error: type[Exception] = orjson.JSONDecodeError

    def loads(body: bytes) -> Any:
        return orjson.loads(body)

    def dumps(doc: Any) -> bytes:
        return orjson.dumps(doc)

except ImportError:  # pragma: no cover - exercised only in images without orjson
    import json

    _decode_error = ValueError

    def _refuse_constant(token: str) -> Any:
        raise ValueError(f"{token} is not valid JSON")

    def loads(body: bytes) -> Any:
        return json.loads(body, parse_constant=_refuse_constant)

    def dumps(doc: Any) -> bytes:
        return json.dumps(doc, separators=(",", ":")).encode()


class BadJSON(ValueError):
    """A body that is not JSON, with the reason label it is counted under (empty, nesting, malformed)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.refusal = reason


def parse_json(body: bytes) -> Any:
    """Parse a request body; raises BadJSON naming the problem. orjson stops at 1024 levels of nesting
    before building anything deeper."""
    if not body:
        raise BadJSON(EMPTY, "empty request body: expected a JSON object")
    try:
        return loads(body)
    except RecursionError:
        raise BadJSON(NESTING, "Unrecognized request format: nested too deeply") from None
    except (_decode_error, UnicodeDecodeError) as exc:
        raise BadJSON(NESTING if "depth limit" in str(exc) else MALFORMED, f"Unrecognized request format: {exc}") from None
