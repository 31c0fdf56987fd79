"""V1 and V2 (Open Inference Protocol) request decoding and response encoding for `mlops-serve`.

Pure functions, no I/O: bytes in, V2 tensors (`serve_v2.Request`, `serve_v2.Response`) or plain dicts out.
Every client mistake raises `serve_errors.InvalidInput` with a message that names the problem, so the HTTP
layer can answer 400 without guessing; nothing here may raise anything else for a bad payload.

Feature matrices are float64 with `NaN` for a JSON `null` (a missing feature, counted by the server and left
to the model's imputer); infinities and non-numeric values are refused (JSON itself cannot carry NaN/inf,
and orjson refuses `1e999`, so a NaN here always means "missing").
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlops_operator.runtime.serve_errors import InvalidInput
from mlops_operator.runtime.serve_json import BadJSON, dumps
from mlops_operator.runtime.serve_json import parse_json as _parse_json
from mlops_operator.runtime.serve_limits import EMPTY, HUGE_NUMBER, INVALID, NESTING
from mlops_operator.runtime.serve_v2 import BINARY_SIZE, Request, Response, Tensor, numpy_dtype, split_binary

OUTPUT_NAME = "output-0"  # the name kserve's own sklearn server gives its single output
BINARY_HEADER = "inference-header-content-length"  # V2 binary tensor extension
_NUMERIC_KINDS = frozenset("biuf")
_SCALAR_TYPES = (int, float, bool)


class Refused(InvalidInput):
    """An InvalidInput (400) that knows which kind of client mistake it is: the metrics' `reason` label."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.refusal = reason  # not `reason`: InvalidInput keeps its message there


def reason_of(exc: InvalidInput) -> str:
    return getattr(exc, "refusal", INVALID)


def parse_json(body: bytes) -> Any:
    """Parse a request body; malformed JSON is the client's fault, so it becomes InvalidInput (Refused)."""
    try:
        return _parse_json(body)
    except BadJSON as exc:
        raise Refused(exc.refusal, str(exc)) from None


def numeric_array(data: Any, what: str, max_abs: float = math.inf) -> np.ndarray:
    """A float64 array from nested JSON lists: `null` -> NaN (missing), anything non-numeric -> InvalidInput,
    a magnitude above `max_abs` (or infinite) -> Refused(huge_number)."""
    try:
        arr = np.array(data)
    except (ValueError, TypeError, RecursionError):
        raise InvalidInput(f"{what} must be a rectangular array of numbers (rows of equal length)") from None
    kind = arr.dtype.kind
    if kind == "O":  # nulls or mixed scalars; a rare path, so a per-element check is affordable
        for value in arr.ravel():
            if value is not None and not isinstance(value, _SCALAR_TYPES):
                raise InvalidInput(f"{what} holds a non-numeric value {_short(value)}; features must be numbers or null")
    elif kind not in _NUMERIC_KINDS:
        raise InvalidInput(f"{what} holds non-numeric values (e.g. {_short(arr.ravel()[0])}); features must be numbers or null")
    try:
        arr = arr.astype(np.float64, copy=False)
    except OverflowError:  # an integer beyond float64 (only a non-orjson decoder lets one through)
        raise Refused(HUGE_NUMBER, f"{what} holds a number too large for a float") from None
    check_magnitude(arr, what, max_abs)
    return arr


def check_magnitude(arr: np.ndarray, what: str, max_abs: float = math.inf) -> None:
    """Refuse infinite values and values beyond `max_abs` (NaN, a missing value, passes)."""
    if np.isinf(arr).any():
        raise Refused(HUGE_NUMBER, f"{what} holds an infinite value; features must be finite numbers or null")
    if max_abs < math.inf and np.nanmax(np.abs(arr), initial=0.0) > max_abs:
        raise Refused(HUGE_NUMBER, f"{what} holds a value beyond +/-{max_abs:g}; features must be numbers within it")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class FeatureSchema:
    """What the model expects: the feature count and, when known, the feature names (in column order)."""

    __slots__ = ("n_features", "names", "_index")

    def __init__(self, n_features: int, names: Sequence[str] | None = None):
        if names is not None and len(names) != n_features:
            raise ValueError(f"{len(names)} feature names for {n_features} features")
        self.n_features = n_features
        self.names = list(names) if names is not None else None
        self._index = {name: i for i, name in enumerate(self.names)} if self.names else {}

    def check(self, x: np.ndarray, what: str) -> np.ndarray:
        """Refuse anything that is not a non-empty (rows, n_features) matrix."""
        if x.ndim == 0 or x.shape[0] == 0:
            raise Refused(EMPTY, f"{what} holds no rows")
        if x.ndim > 2:
            raise Refused(NESTING, f"{what} is nested {x.ndim} deep: send a list of rows, each a list of "
                                   f"{self.n_features} feature values")
        if x.ndim != 2:
            raise InvalidInput(f"{what} must be a list of rows, each a list of {self.n_features} feature values")
        if x.shape[1] != self.n_features:
            raise InvalidInput(f"{what} rows have {x.shape[1]} features; the model expects {self.n_features}")
        return x

    def rows_from_records(self, records: list[Any], max_abs: float = math.inf) -> np.ndarray:
        """V1 instances given as {feature: value} objects; an absent feature is missing (NaN)."""
        if not self.names:
            raise InvalidInput("this model has no feature names: send each instance as a list of numbers")
        x = np.full((len(records), self.n_features), np.nan)
        for r, record in enumerate(records):
            if not isinstance(record, dict):
                raise InvalidInput("instances must be all lists or all objects, not a mix")
            if not record:
                raise Refused(EMPTY, f"instance {r} is an empty record: name at least one feature")
            for name, value in record.items():
                col = self._index.get(name)
                if col is None:
                    raise InvalidInput(f"instance {r} has unknown feature {_short(name)}")
                if value is None:
                    continue
                if not isinstance(value, _SCALAR_TYPES):
                    raise InvalidInput(f"feature {name!r} of instance {r} is {_short(value)}; expected a finite number or null")
                try:
                    x[r, col] = value
                except OverflowError:
                    raise Refused(HUGE_NUMBER, f"feature {name!r} of instance {r} is too large for a float") from None
        check_magnitude(x, "instances", max_abs)
        return x


# ---------------------------------------------------------------------------------------------- V1
def decode_v1(body: bytes) -> dict:
    """`{"instances": [...]}` -> the V1 request document."""
    doc = parse_json(body)
    if not isinstance(doc, dict) or "instances" not in doc:
        raise InvalidInput('Expected a JSON object with "instances"')
    if not isinstance(doc["instances"], list):
        raise InvalidInput('Expected "instances" to be a list')
    return doc


def v1_rows(doc: dict) -> int:
    """Rows of a decoded V1 request (for the row cap, before any matrix is built)."""
    return len(doc["instances"])


def v1_matrix(doc: dict, schema: FeatureSchema, max_abs: float = math.inf) -> np.ndarray:
    instances = doc.get("instances")
    if not isinstance(instances, list):
        raise InvalidInput('Expected "instances" to be a list')
    if instances and isinstance(instances[0], dict):
        return schema.check(schema.rows_from_records(instances, max_abs), "instances")
    if instances and isinstance(instances[0], list) and instances[0] and isinstance(instances[0][0], (list, dict)):
        raise Refused(NESTING, "instances are nested too deeply: send a list of rows, each a list of feature values")
    return schema.check(numeric_array(instances, "instances", max_abs), "instances")


def v1_request_id(doc: dict) -> str:
    """The id of a V1 answer: the request's own `"id"` when it sent a non-empty string, else a new UUID
    (V2 does the same in `encode_v2`). It is what label feedback names the prediction by."""
    given = doc.get("id")
    return given if isinstance(given, str) and given else str(uuid.uuid4())


def encode_v1(predictions: np.ndarray, request_id: str | None = None) -> dict:
    out: dict[str, Any] = {"predictions": predictions.tolist()}
    if request_id is not None:
        out["id"] = request_id
    return out


# ---------------------------------------------------------------------------------------------- V2
def decode_v2(body: bytes, model_name: str, headers: dict[str, str] | None = None) -> Request:
    """An Open Inference Protocol request body -> `Request` (JSON, or the binary tensor extension)."""
    json_length = (headers or {}).get(BINARY_HEADER)
    if json_length is None:
        return _request(parse_json(body), model_name)
    try:
        length = int(json_length)
    except ValueError:
        raise InvalidInput(f"malformed binary inference request: {BINARY_HEADER} {_short(json_length)} is not a length") from None
    if not 0 < length <= len(body):
        raise InvalidInput(f"malformed binary inference request: {BINARY_HEADER} {length} is outside the body's {len(body)} bytes")
    return _request(parse_json(body[:length]), model_name, body, length)


def _request(doc: Any, model_name: str, body: bytes = b"", json_length: int = 0) -> Request:
    if not isinstance(doc, dict):
        raise InvalidInput("Expected a JSON object with \"inputs\"")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput('Expected "inputs" to be a non-empty list')
    sizes = [_binary_size(item, i) for i, item in enumerate(raw_inputs)] if json_length else [None] * len(raw_inputs)
    raws = split_binary(body, json_length, sizes) if json_length else sizes
    inputs = [_infer_input(item, i, raw) for i, (item, raw) in enumerate(zip(raw_inputs, raws))]
    request_id = doc.get("id")
    parameters = doc.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidInput('"parameters" must be an object')
    return Request(model_name=model_name, inputs=inputs, id=request_id if isinstance(request_id, str) else None,
                   parameters=parameters, outputs=_requested_outputs(doc.get("outputs")))


def _binary_size(item: Any, i: int) -> int | None:
    parameters = item.get("parameters") if isinstance(item, dict) else None
    size = parameters.get(BINARY_SIZE) if isinstance(parameters, dict) else None
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInput(f"malformed binary inference request: inputs[{i}].parameters.{BINARY_SIZE} is not a size")
    return size


def _infer_input(item: Any, i: int, raw: bytes | None = None) -> Tensor:
    if not isinstance(item, dict):
        raise InvalidInput(f"inputs[{i}] must be an object with name, shape, datatype and data")
    name, shape, datatype, data = item.get("name"), item.get("shape"), item.get("datatype"), item.get("data")
    if not isinstance(name, str):
        raise InvalidInput(f"inputs[{i}].name must be a string")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InvalidInput(f"input {name!r}: shape must be a list of non-negative integers")
    if not isinstance(datatype, str) or numpy_dtype(datatype.upper()) is None:
        raise InvalidInput(f"input {name!r}: unknown datatype {_short(datatype)}")
    if raw is not None:
        if data is not None:
            raise InvalidInput(f"input {name!r} has both binary data and a 'data' field")
    elif data is None:
        raise InvalidInput(f"'data' field is missing for input '{name}'")
    elif datatype.upper() == "FP16":
        raise InvalidInput(f"Receiving FP16 data via JSON is not supported. Please use the binary data format for input {name}")
    return Tensor(name=name, shape=shape, datatype=datatype.upper(), data=data, raw=raw, parameters=item.get("parameters"))


def _requested_outputs(outputs: Any) -> list[dict] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
        raise InvalidInput('"outputs" must be a list of objects with a "name"')
    return outputs or None


def v2_rows(request: Request) -> int:
    """Rows of a decoded V2 request: the largest first dimension of its input tensors (0 for scalars)."""
    return max((tensor.shape[0] for tensor in request.inputs if tensor.shape), default=0)


def v2_matrix(request: Request, schema: FeatureSchema, max_abs: float = math.inf) -> np.ndarray:
    """One [rows, features] tensor, or one [rows] (or [rows, 1]) tensor per feature named after it."""
    if len(request.inputs) == 1:
        return schema.check(_tensor(request.inputs[0], max_abs), f"input {request.inputs[0].name!r}")
    if not schema.names:
        raise InvalidInput("this model takes a single [rows, features] input tensor")
    columns: dict[str, np.ndarray] = {}
    for tensor in request.inputs:
        if tensor.name not in schema.names:
            raise InvalidInput(f"input {tensor.name!r} is not a feature of this model")
        column = _tensor(tensor, max_abs)
        if column.ndim == 2 and column.shape[1] == 1:
            column = column[:, 0]
        if column.ndim != 1:
            raise InvalidInput(f"input {tensor.name!r}: a per-feature tensor must have shape [rows] or [rows, 1]")
        columns[tensor.name] = column
    missing = [name for name in schema.names if name not in columns]
    if missing:
        raise InvalidInput(f"missing feature inputs: {', '.join(missing[:5])}")
    if len({c.shape[0] for c in columns.values()}) != 1:
        raise InvalidInput("per-feature input tensors must all have the same number of rows")
    return schema.check(np.column_stack([columns[name] for name in schema.names]), "inputs")


def _tensor(tensor: Tensor, max_abs: float = math.inf) -> np.ndarray:
    """The tensor as declared (datatype, shape), with client errors made explicit."""
    what = f"input {tensor.name!r}"
    if tensor.datatype == "BYTES":
        raise InvalidInput(f"{what}: BYTES tensors are not accepted; features must be numeric")
    if tensor.raw is not None:  # binary extension: decoded exactly as declared
        try:
            values = tensor.as_numpy()
        except ValueError as exc:
            raise InvalidInput(f"{what}: {exc}") from None
        return numeric_array(values, what, max_abs)
    values = numeric_array(tensor.data, what, max_abs)
    expected = math.prod(tensor.shape)
    if values.size != expected:
        raise InvalidInput(f"{what}: data holds {values.size} values but shape {tensor.shape} needs {expected}")
    declared = numpy_dtype(tensor.datatype)
    if declared.kind in "iub":
        if np.isnan(values).any():
            raise InvalidInput(f"{what}: a {tensor.datatype} tensor cannot hold null; declare FP32/FP64 to send missing values")
        if not np.array_equal(values, np.trunc(values)):
            raise InvalidInput(f"{what}: a {tensor.datatype} tensor holds non-integer values")
    elif declared == np.float32:  # honour the declared precision
        values = values.astype(np.float32)
    return values.reshape(tensor.shape)


def encode_v2(request: Request, predictions: np.ndarray, model_name: str, model_version: str | None) -> Response:
    """The prediction as a single `output-0` tensor; a request for any other output is the client's mistake."""
    binary = request.binary_outputs
    for wanted in request.outputs or ():
        if wanted["name"] != OUTPUT_NAME:
            raise InvalidInput(f"output {_short(wanted['name'])} is not produced by this model; it has only {OUTPUT_NAME!r}")
        parameters = wanted.get("parameters")
        if isinstance(parameters, dict) and "binary_data" in parameters:
            binary = bool(parameters["binary_data"])
    return Response(id=request.id or str(uuid.uuid4()), model_name=model_name, model_version=model_version,
                    output_name=OUTPUT_NAME, predictions=predictions, binary=binary)


def response_v2_body(response: Response) -> tuple[bytes, dict[str, str]]:
    """`Response` -> (body, extra headers): JSON, or the binary extension's header + tensor bytes."""
    body, json_length = response.to_rest()
    if json_length is None:
        return dumps(body), {}
    return body, {BINARY_HEADER: str(json_length)}
