"""V1 / V2 request decoding and response encoding of the model server (pure functions, no HTTP)."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from mlops_operator.runtime.serve_errors import InvalidInput
from mlops_operator.runtime.serve_protocol import (
    BINARY_HEADER,
    FeatureSchema,
    decode_v1,
    decode_v2,
    encode_v1,
    encode_v2,
    response_v2_body,
    v1_matrix,
    v2_matrix,
)
from mlops_operator.runtime.serve_v2 import Request, Response

pytestmark = pytest.mark.unit

SCHEMA = FeatureSchema(3, ["a", "b", "c"])


def v2_body(data, shape, datatype="FP64", name="input-0", **extra) -> bytes:
    import orjson

    return orjson.dumps({"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}], **extra})


# ---------------------------------------------------------------------------------------------- V1
def test_given_v1_rows_when_decoded_then_float_matrix_in_row_order():
    x = v1_matrix(decode_v1(b'{"instances": [[1, 2, 3], [4.5, 5, 6]]}'), SCHEMA)
    assert x.dtype == np.float64
    assert x.tolist() == [[1, 2, 3], [4.5, 5, 6]]


def test_given_v1_nulls_when_decoded_then_missing_values_are_nan():
    x = v1_matrix(decode_v1(b'{"instances": [[1, null, 3]]}'), SCHEMA)
    assert math.isnan(x[0, 1]) and x[0, 0] == 1 and x[0, 2] == 3


def test_given_v1_objects_when_decoded_then_columns_follow_feature_names_and_absent_is_missing():
    x = v1_matrix(decode_v1(b'{"instances": [{"c": 3, "a": 1}]}'), SCHEMA)
    assert x[0, 0] == 1 and math.isnan(x[0, 1]) and x[0, 2] == 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty request body"),
        (b"{not json", "Unrecognized request format"),
        (b"[1, 2, 3]", '"instances"'),
        (b'{"inputs": [[1, 2, 3]]}', '"instances"'),
        (b'{"instances": 5}', "to be a list"),
        (b'{"instances": []}', "no rows"),
        (b'{"instances": [1, 2, 3]}', "list of rows"),
        (b'{"instances": [[1, 2]]}', "have 2 features; the model expects 3"),
        (b'{"instances": [[1, 2, 3], [4, 5]]}', "rectangular"),
        (b'{"instances": [[1, "x", 3]]}', "non-numeric"),
        (b'{"instances": [["1", "2", "3"]]}', "non-numeric"),
        (b'{"instances": [[1, null, "x"]]}', "non-numeric"),
        (b'{"instances": [[1, {"a": 1}, 3]]}', "non-numeric"),
        (b'{"instances": [[1, 2, 1e999]]}', "Unrecognized request format"),  # orjson refuses infinity
        (b'{"instances": [[1, 2, NaN]]}', "Unrecognized request format"),
        (b'{"instances": [{"a": 1, "zz": 2}]}', "unknown feature 'zz'"),
        (b'{"instances": [{"a": "x"}]}', "expected a finite number"),
        (b'{"instances": [{"a": 1}, [1, 2, 3]]}', "not a mix"),
    ],
)
def test_given_bad_v1_payload_when_decoded_then_invalid_input_names_the_problem(body, message):
    with pytest.raises(InvalidInput, match=message):
        v1_matrix(decode_v1(body), SCHEMA)


def test_given_schema_without_names_when_v1_objects_sent_then_refused():
    with pytest.raises(InvalidInput, match="no feature names"):
        v1_matrix(decode_v1(b'{"instances": [{"a": 1}]}'), FeatureSchema(3))


def test_given_predictions_when_v1_encoded_then_plain_list():
    assert encode_v1(np.array([0, 2, 1])) == {"predictions": [0, 2, 1]}


# ---------------------------------------------------------------------------------------------- V2
def test_given_v2_tensor_when_decoded_then_request_with_matrix():
    request = decode_v2(v2_body([1, 2, 3, 4, 5, 6], [2, 3], id="r-1"), "m")
    assert isinstance(request, Request)
    assert request.model_name == "m" and request.id == "r-1"
    assert v2_matrix(request, SCHEMA).tolist() == [[1, 2, 3], [4, 5, 6]]


def test_given_v2_fp32_tensor_when_decoded_then_declared_precision_is_honoured():
    x = v2_matrix(decode_v2(v2_body([0.1, 0.2, 0.3], [1, 3], "FP32"), "m"), SCHEMA)
    assert x.dtype == np.float32


def test_given_v2_tensor_per_feature_when_decoded_then_columns_follow_feature_names():
    import orjson

    body = orjson.dumps({"inputs": [
        {"name": "c", "shape": [2], "datatype": "FP64", "data": [3, 6]},
        {"name": "a", "shape": [2, 1], "datatype": "INT64", "data": [1, 4]},
        {"name": "b", "shape": [2], "datatype": "FP64", "data": [2, None]},
    ]})
    x = v2_matrix(decode_v2(body, "m"), SCHEMA)
    assert x[:, 0].tolist() == [1, 4] and x[:, 2].tolist() == [3, 6]
    assert x[0, 1] == 2 and math.isnan(x[1, 1])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"inputs": []}', "non-empty list"),
        (b'{"instances": [[1, 2, 3]]}', "non-empty list"),
        (b'{"inputs": [5]}', "must be an object"),
        (v2_body([1, 2, 3], "1,3"), "shape must be a list"),
        (v2_body([1, 2, 3], [1, -3]), "shape must be a list"),
        (v2_body([1, 2, 3], [1, 3], "FLOAT"), "unknown datatype"),
        (v2_body([1, 2, 3], [1, 3], "FP16"), "FP16"),
        (v2_body(["a", "b", "c"], [1, 3], "BYTES"), "BYTES tensors are not accepted"),
        (v2_body([1, 2, 3, 4], [1, 3]), "holds 4 values but shape"),
        (v2_body([1, 2], [1, 2]), "have 2 features; the model expects 3"),
        (v2_body([1, "x", 3], [1, 3]), "non-numeric"),
        (v2_body([1.5, 2, 3], [1, 3], "INT64"), "non-integer"),
        (v2_body([1, None, 3], [1, 3], "INT32"), "cannot hold null"),
        (b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64"}]}', "'data' field is missing"),
        (v2_body([1, 2, 3], [1, 3], outputs="all"), '"outputs" must be a list'),
    ],
)
def test_given_bad_v2_payload_when_decoded_then_invalid_input_names_the_problem(body, message):
    with pytest.raises(InvalidInput, match=message):
        v2_matrix(decode_v2(body, "m"), SCHEMA)


def test_given_v2_per_feature_tensors_with_unknown_name_when_decoded_then_refused():
    import orjson

    body = orjson.dumps({"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]},
                                    {"name": "zz", "shape": [1], "datatype": "FP64", "data": [1]}]})
    with pytest.raises(InvalidInput, match="'zz' is not a feature"):
        v2_matrix(decode_v2(body, "m"), SCHEMA)


def test_given_v2_binary_extension_when_decoded_then_raw_tensor_is_read():
    import orjson

    header = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64",
                                       "parameters": {"binary_data_size": 24}}]})
    body = header + struct.pack("<3d", 1.0, 2.0, 3.0)
    request = decode_v2(body, "m", {BINARY_HEADER: str(len(header))})
    assert v2_matrix(request, SCHEMA).tolist() == [[1.0, 2.0, 3.0]]


@pytest.mark.parametrize("length", ["abc", "0", "99999"])
def test_given_v2_binary_extension_with_bad_length_when_decoded_then_invalid_input(length):
    with pytest.raises(InvalidInput, match="malformed binary inference request"):
        decode_v2(b'{"inputs": []}', "m", {BINARY_HEADER: length})


def test_given_predictions_when_v2_encoded_then_response_with_one_output_and_request_id():
    request = decode_v2(v2_body([1, 2, 3], [1, 3], id="abc"), "m")
    response = encode_v2(request, np.array([2]), "m", "v7")
    assert isinstance(response, Response)
    body, extra = response_v2_body(response)
    import orjson

    assert orjson.loads(body) == {"id": "abc", "model_name": "m", "model_version": "v7",
                                  "outputs": [{"name": "output-0", "shape": [1], "datatype": "INT64", "data": [2]}]}
    assert extra == {}


def test_given_string_labels_when_v2_encoded_then_bytes_output_carries_strings():
    request = decode_v2(v2_body([1, 2, 3], [1, 3]), "m")
    body, _ = response_v2_body(encode_v2(request, np.array(["benign"]), "m", ""))
    import orjson

    doc = orjson.loads(body)
    assert doc["outputs"][0]["datatype"] == "BYTES" and doc["outputs"][0]["data"] == ["benign"]
    assert doc["id"]  # generated when the request had none


def test_given_request_for_unknown_output_when_encoded_then_invalid_input():
    request = decode_v2(v2_body([1, 2, 3], [1, 3], outputs=[{"name": "probabilities"}]), "m")
    with pytest.raises(InvalidInput, match="probabilities"):
        response_v2_body(encode_v2(request, np.array([1]), "m", ""))


def test_given_binary_output_requested_when_encoded_then_binary_extension_header_is_set():
    request = decode_v2(v2_body([1, 2, 3], [1, 3], parameters={"binary_data_output": True}), "m")
    body, extra = response_v2_body(encode_v2(request, np.array([7], dtype=np.int64), "m", ""))
    json_length = int(extra[BINARY_HEADER])
    assert struct.unpack("<q", body[json_length:]) == (7,)
