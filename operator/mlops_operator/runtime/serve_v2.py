"""The Open Inference Protocol (V2) REST types `mlops-serve` speaks: request and response tensors, JSON and
the binary tensor extension, with numpy only.

Just what one model with one output needs. Decoding and validation of what clients send live in
`serve_protocol`; these classes only hold a request and write a response.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlops_operator.runtime.serve_errors import InvalidInput
from mlops_operator.runtime.serve_json import dumps

BINARY_SIZE = "binary_data_size"

_DTYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}
_DATATYPES = {np.dtype(t): name for name, t in _DTYPES.items() if name != "BYTES"}


def numpy_dtype(datatype: str) -> np.dtype | None:
    """The numpy dtype of a V2 datatype name, None for an unknown name."""
    found = _DTYPES.get(datatype)
    return np.dtype(found) if found is not None else None


def datatype_of(dtype: np.dtype) -> str:
    """The V2 datatype of a numpy dtype; anything non-numeric (strings, objects) travels as BYTES."""
    return _DATATYPES.get(np.dtype(dtype), "BYTES")


@dataclass
class Tensor:
    """One input tensor: `data` from JSON, or `raw` little-endian bytes from the binary extension."""

    name: str
    shape: list[int]
    datatype: str
    data: Any = None
    raw: bytes | None = None
    parameters: dict | None = None

    def as_numpy(self) -> np.ndarray:
        """The binary tensor as declared (datatype, shape); ValueError when the bytes do not fit them."""
        dtype = numpy_dtype(self.datatype)
        if self.raw is None or dtype is None or dtype.kind == "O":
            raise ValueError(f"no fixed-size binary data for a {self.datatype} tensor")
        return np.frombuffer(self.raw, dtype=dtype.newbyteorder("<")).reshape(self.shape)


@dataclass
class Request:
    """A decoded V2 inference request."""

    model_name: str
    inputs: list[Tensor]
    id: str | None = None
    parameters: dict | None = None
    outputs: list[dict] | None = None  # requested outputs: [{"name": ..., "parameters": {...}}]

    @property
    def binary_outputs(self) -> bool:
        return bool((self.parameters or {}).get("binary_data_output", False))


@dataclass
class Response:
    """A V2 answer holding one output tensor."""

    id: str
    model_name: str
    model_version: str | None
    output_name: str
    predictions: np.ndarray
    binary: bool = False
    extra: dict = field(default_factory=dict)

    def to_rest(self) -> tuple[dict | bytes, int | None]:
        """(JSON document, None), or (JSON header + tensor bytes, header length) for a binary output."""
        y = self.predictions
        datatype = datatype_of(y.dtype)
        output: dict[str, Any] = {"name": self.output_name, "shape": list(y.shape), "datatype": datatype}
        doc = {"id": self.id, "model_name": self.model_name, "model_version": self.model_version, "outputs": [output]}
        if not self.binary:
            output["data"] = [str(v) for v in y.ravel()] if datatype == "BYTES" else y.ravel().tolist()
            return doc, None
        payload = _bytes_tensor(y) if datatype == "BYTES" else np.ascontiguousarray(y, dtype=y.dtype.newbyteorder("<")).tobytes()
        output["parameters"] = {BINARY_SIZE: len(payload)}
        header = dumps(doc)
        return header + payload, len(header)


def _bytes_tensor(y: np.ndarray) -> bytes:
    """BYTES elements in the binary extension: each a 4-byte little-endian length, then its UTF-8 bytes."""
    parts = []
    for value in y.ravel():
        encoded = str(value).encode()
        parts.append(len(encoded).to_bytes(4, "little") + encoded)
    return b"".join(parts)


def split_binary(body: bytes, json_length: int, sizes: list[int | None]) -> list[bytes | None]:
    """The raw bytes of each input that declared `binary_data_size`, in order; every byte must be accounted for."""
    offset = json_length
    raws: list[bytes | None] = []
    for size in sizes:
        if size is None:
            raws.append(None)
            continue
        if offset + size > len(body):
            raise InvalidInput(f"malformed binary inference request: the body ends before its {size}-byte tensor")
        raws.append(body[offset:offset + size])
        offset += size
    if offset != len(body):
        raise InvalidInput(f"malformed binary inference request: {len(body) - offset} bytes beyond the declared tensors")
    return raws
