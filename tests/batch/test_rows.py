"""A shard's lines through a model with a per-request bound, as the DCF has."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from common.batch import rows as batch_rows
from common.core.errors import InvalidValuesError
from common.core.validation import StrictModel
from common.models.base import ModelRuntime
from common.serving.pipeline import MAX_INSTANCES
from tests.support.fixtures import ScaleInstance


class Bounded(ModelRuntime):
    """Refuses a call of more instances than a request may hold, and counts its calls."""

    kind: ClassVar[str] = "bounded"
    instance_schema: ClassVar[type[StrictModel]] = ScaleInstance

    def __init__(self) -> None:
        self.calls: list[int] = []

    @classmethod
    def from_artifact(cls, data: bytes) -> Bounded:
        raise TypeError("built in tests")

    def predict(self, instances: Sequence[Any], parameters: Any) -> list[dict[str, Any]]:
        self.calls.append(len(instances))
        if len(instances) > MAX_INSTANCES:
            raise InvalidValuesError("too much work for one call")
        return [{"double": 2 * i.x} for i in instances]


def test_a_shard_larger_than_a_request_is_predicted_in_request_sized_calls() -> None:
    data = b"".join(b'{"x": %d}\n' % (i % 1000) for i in range(2500))
    parsed = batch_rows.parse(data, first_line=1, key_field=None)
    model = Bounded()
    predictions = batch_rows.predict(model, parsed, {})
    assert model.calls == [1000, 1000, 500]
    assert [p["double"] for p in predictions[998:1002]] == [1996, 1998, 0, 2]


def test_a_bad_line_is_refused_alone_and_the_rest_of_its_call_predicted() -> None:
    parsed = batch_rows.parse(b'{"x": 1}\n{"x": -4}\n{"x": 3}\n', first_line=7, key_field=None)
    model = Bounded()
    predictions = batch_rows.predict(model, parsed, {})
    assert predictions == [{"double": 2.0}, None, {"double": 6.0}]
    assert parsed[1].line == 8
    assert parsed[1].error is not None
    assert parsed[1].error["details"][0]["field"] == "x"
