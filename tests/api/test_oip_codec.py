"""The v2 codec alone: schema to named inputs, tensors to instances, predictions to
outputs, and errors in the protocol's shape."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import Field
from werkzeug.datastructures import Headers

from common.api.oip.codec import InferenceRequest, decode_request, refuse_binary_body
from common.api.oip.errors import error_body
from common.api.oip.outputs import output_specs, output_tensors
from common.api.oip.signature import input_specs
from common.api.oip.tensors import TensorSpec
from common.core.errors import InvalidValuesError, MalformedRequestError
from common.core.validation import StrictModel


class Part(StrictModel):
    x: float
    tags: list[str] | None = None


class Row(StrictModel):
    name: str
    count: int = 1
    flag: bool | None = None
    pair: list[float] = Field(min_length=2, max_length=2)
    part: Part


SPECS = input_specs(Row.model_json_schema())


def spec(name: str) -> TensorSpec:
    return next(s for s in SPECS if s.name == name)


def test_inputs_follow_the_schema_nested_objects_flattened() -> None:
    assert [(s.name, s.datatype, s.shape, s.optional) for s in SPECS] == [
        ("name", "BYTES", (-1,), False),
        ("count", "INT64", (-1,), True),
        ("flag", "BOOL", (-1,), True),
        ("pair", "FP64", (-1, 2), False),
        ("part.x", "FP64", (-1,), False),
        ("part.tags", "BYTES", (-1, -1), True),
    ]


def test_an_open_object_takes_the_schema_given_for_it_else_json() -> None:
    class Composite(StrictModel):
        inner: dict[str, Any]

    schema = Composite.model_json_schema()
    assert [(s.name, s.content_type) for s in input_specs(schema)] == [("inner", "json")]
    nested = input_specs(schema, {"inner": Part.model_json_schema()})
    assert [s.name for s in nested] == ["inner.x", "inner.tags"]


def request(*inputs: dict[str, Any], **extra: Any) -> InferenceRequest:
    return InferenceRequest.model_validate({"inputs": list(inputs), **extra})


def test_tensors_become_instances_with_dotted_names_nested() -> None:
    decoded = decode_request(
        request(
            {"name": "name", "shape": [2, 1], "datatype": "BYTES", "data": [["a"], ["b"]]},
            {"name": "pair", "shape": [2, 2], "datatype": "FP64", "data": [[1, 2.5], [3, 4]]},
            {"name": "part.x", "shape": [2], "datatype": "INT32", "data": [7, 8]},
            {"name": "flag", "shape": [2], "datatype": "BOOL", "data": [True, None]},
            parameters={"binary_data_output": True, "seed": 3},
            outputs=[{"name": "b"}, {"name": "a"}, {"name": "b"}],
        ),
        SPECS,
        max_rows=10,
    )
    assert decoded.instances == [
        {"name": "a", "pair": [1, 2.5], "part": {"x": 7}, "flag": True},
        {"name": "b", "pair": [3, 4], "part": {"x": 8}},
    ]
    assert (decoded.parameters, decoded.outputs) == ({"seed": 3}, ("b", "a"))


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (
            {"name": "pair", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]},
            "input 'pair' has shape [1, 3]; it takes [rows, values per row] ([-1, 2])",
        ),
        (
            {"name": "pair", "shape": [1, 2], "datatype": "FP64", "data": [1, None]},
            "input 'pair' element 1 is null; FP64 takes numbers",
        ),
        (
            {"name": "pair", "shape": [1, 2], "datatype": "FP99", "data": [1, 2]},
            "input 'pair' has datatype FP99 (not a datatype of the protocol); it takes FP64",
        ),
        (
            {"name": "pair", "shape": [1, -2], "datatype": "FP64", "data": [1, 2]},
            "input 'pair' has shape [1, -2]; it takes [rows, values per row] ([-1, 2])",
        ),
        (
            {"name": "pair", "shape": [1, 2], "datatype": "INT32", "data": [1, 1.5]},
            "input 'pair' element 1 is float; INT32 takes integers",
        ),
        (
            {"name": "pair", "shape": [1, 2], "datatype": "INT8", "data": [127, 1000000]},
            "input 'pair' element 1 is out of INT8's range (-128 to 127)",
        ),
        (
            {"name": "pair", "shape": [1, 2], "datatype": "UINT16", "data": [-1, 2]},
            "input 'pair' element 0 is out of UINT16's range (0 to 65535)",
        ),
        (
            {"name": "pair", "shape": [1, 2], "datatype": "FP64", "data": [[1], [2]]},
            "input 'pair' has shape [1, 2], but its data is nested otherwise; "
            "send it flat (row-major) or nested exactly as its shape",
        ),
        (
            {"name": "pair", "shape": [1, 2], "datatype": "FP64", "data": [[[1, 2]]]},
            "input 'pair' has shape [1, 2], but its data is nested otherwise; "
            "send it flat (row-major) or nested exactly as its shape",
        ),
    ],
)
def test_each_wrong_tensor_is_named(tensor: dict[str, Any], message: str) -> None:
    name = {"name": "name", "shape": [1], "datatype": "BYTES", "data": ["a"]}
    x = {"name": "part.x", "shape": [1], "datatype": "FP64", "data": [1.0]}
    with pytest.raises(MalformedRequestError) as caught:
        decode_request(request(name, x, tensor), SPECS, max_rows=10)
    assert caught.value.message == message
    assert caught.value.status == 400


def test_a_json_document_nested_past_the_parser_s_depth_is_400() -> None:
    class Composite(StrictModel):
        inner: dict[str, Any]

    specs = input_specs(Composite.model_json_schema())
    deep = "[" * 3000 + "]" * 3000
    tensor = {"name": "inner", "shape": [1], "datatype": "BYTES", "data": [deep]}
    with pytest.raises(MalformedRequestError) as caught:
        decode_request(request(tensor), specs, max_rows=10)
    assert caught.value.message == (
        "input 'inner' holds JSON documents, one per row; one does not parse"
    )


@pytest.mark.parametrize("body", [{"inputs": 5}, {"inputs": "x"}, [], {"inputs": [], "id": 3}])
def test_a_body_that_is_no_inference_request_is_400(body: Any) -> None:
    with pytest.raises(MalformedRequestError, match=r"^not an inference request: "):
        InferenceRequest.model_validate(body)


def test_a_body_in_the_binary_tensor_extension_is_refused_with_the_binary_message() -> None:
    """Only the first Inference-Header-Content-Length bytes of such a body are JSON: the
    check reads the header, not the body."""
    with pytest.raises(MalformedRequestError) as caught:
        refuse_binary_body(Headers({"inference-header-content-length": "120"}))
    assert caught.value.status == 400
    assert caught.value.message.startswith(
        "the request's data (Inference-Header-Content-Length) is sent as binary tensor data, "
        "which this server does not take: send every input's data as JSON"
    )
    refuse_binary_body(Headers({"Content-Type": "application/json"}))  # JSON: parsed as ever


def test_too_many_rows_and_none_are_refused() -> None:
    names = {"name": "name", "shape": [3], "datatype": "BYTES", "data": ["a", "b", "c"]}
    with pytest.raises(MalformedRequestError, match="3 rows in one request; at most 2"):
        decode_request(request(names), [spec("name")], max_rows=2)
    with pytest.raises(MalformedRequestError, match="the inputs hold no rows"):
        decode_request(request({**names, "shape": [0], "data": []}), [spec("name")], max_rows=2)


def test_outputs_flatten_each_field_of_the_predictions() -> None:
    predictions = [
        {"v": 1.5, "n": 2, "label": "a", "ok": True, "p": {"lo": 1, "hi": None}, "xs": [1, 2]},
        {"v": 2.0, "n": 3, "label": None, "ok": False, "p": None, "xs": [3.5]},
    ]
    tensors = {t["name"]: t for t in output_tensors(predictions)}
    assert tensors["v"] == {"name": "v", "datatype": "FP64", "shape": [2], "data": [1.5, 2.0]}
    assert (tensors["n"]["datatype"], tensors["ok"]["datatype"]) == ("INT64", "BOOL")
    assert tensors["label"]["parameters"] == {"content_type": "str"}
    assert tensors["p.lo"] == {"name": "p.lo", "datatype": "FP64", "shape": [2], "data": [1, None]}
    assert tensors["xs"] == {
        "name": "xs",
        "datatype": "FP64",
        "shape": [2, 2],
        "data": [1, 2, 3.5, None],
    }
    objects = output_tensors([{"peers": [{"name": "a"}]}])
    assert objects == [
        {
            "name": "peers",
            "datatype": "BYTES",
            "shape": [1],
            "parameters": {"content_type": "json"},
            "data": ['[{"name":"a"}]'],
        }
    ]


def test_declared_outputs_keep_their_datatype_and_order() -> None:
    declared = output_specs([{"mc": {"p5": 1.0}, "v": 2.0}])
    tensors = output_tensors([{"v": 3, "mc": None}], declared, wanted=["v", "mc.p5"])
    assert [(t["name"], t["datatype"], t["data"]) for t in tensors] == [
        ("v", "FP64", [3]),
        ("mc.p5", "FP64", [None]),
    ]
    with pytest.raises(MalformedRequestError, match="unknown output"):
        output_tensors([{"v": 3}], declared, wanted=["w"])


def test_a_null_object_answers_its_declared_fields_null_and_is_no_output_itself() -> None:
    declared = output_specs([{"v": 1.0, "mc": {"p5": 1.0, "deep": {"x": 2.0}}}])
    names = ["v", "mc.p5", "mc.deep.x"]
    for prediction in ({"v": 3.0, "mc": None}, {"v": 3.0, "mc": {"p5": 1.0, "deep": None}}):
        tensors = output_tensors([prediction], declared)
        assert [t["name"] for t in tensors] == names, prediction
        assert all(t["datatype"] == "FP64" for t in tensors)
    undeclared = output_tensors([{"a": {"b": {"c": 1}}}, {"a": None}])
    assert [(t["name"], t["data"]) for t in undeclared] == [("a.b.c", [1, None])]


def test_errors_take_the_protocol_shape_and_name_input_and_row() -> None:
    refused = InvalidValuesError(
        "request has 1 invalid value(s)",
        details=[{"field": "instances[1].part.x", "rule": "greater_than", "message": "too small"}],
    )
    body = error_body(refused, "rid-1")
    assert (body["error"], body["code"], body["request_id"]) == (
        "request has 1 invalid value(s)",
        "invalid_values",
        "rid-1",
    )
    (detail,) = body["details"]
    assert (detail["input"], detail["row"]) == ("part.x", 1)
