"""Hot-key counts held in memory stay within their row and byte bounds."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from common.core.errors import UnavailableError
from common.serving.cache import cache_key
from common.serving.hot_keys import ROW_OVERHEAD_BYTES, HotKeys
from tests.support.fixtures import Stack


def hot_keys(stack: Stack, **bounds: int) -> HotKeys:
    services = stack.services
    return HotKeys(services.backends.documents, services.cipher, **bounds)


def record(hot: HotKeys, model_id: str, instances: list[Any]) -> None:
    keys = [cache_key(model_id, "1.0.0", instance, None) for instance in instances]
    hot.record(model_id, keys, instances, None)


def test_distinct_rows_stay_within_the_row_bound_and_the_popular_stay(stack: Stack) -> None:
    hot = hot_keys(stack, max_rows=100)
    for _ in range(5):
        record(hot, "risk", [{"popular": 1}])
    for i in range(2000):
        record(hot, "risk", [{"row": i}])
        assert hot.held()[0] <= 100
    hot.flush()
    assert hot.top("risk", 1)[0].instance == {"popular": 1}
    assert hot.top("risk", 1)[0].count == 5


def test_large_rows_stay_within_the_byte_bound_over_models(stack: Stack) -> None:
    bound = 256 * 1024
    hot = hot_keys(stack, max_bytes=bound)
    text = "x" * 4000
    for i in range(300):
        record(hot, f"model-{i % 3}", [{"row": i, "text": text}])
        rows, held = hot.held()
        assert held <= bound
    one = len(orjson.dumps([{"row": 0, "text": text}, None])) + ROW_OVERHEAD_BYTES
    assert rows * one >= held - rows * 8  # the count matches what is held, to a few digits
    assert rows >= bound // one // 4  # halving keeps a useful share


class Refusing:
    """A document store whose transactions fail, as during an outage."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def transaction(self, fn: Any, **kw: Any) -> Any:
        raise UnavailableError("the store is down")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_counts_put_back_after_failed_flushes_stay_bounded(stack: Stack) -> None:
    services = stack.services
    hot = HotKeys(Refusing(services.backends.documents), services.cipher, max_rows=50)
    for flush in range(10):
        record(hot, "risk", [{"row": flush * 40 + i} for i in range(40)])
        with pytest.raises(UnavailableError):
            hot.flush()
        assert hot.held()[0] <= 50
    assert 0 < hot.unsaved() <= 50  # the rows kept wait for the next flush
