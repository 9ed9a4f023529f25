"""Checks and retry pacing shared by the document stores, so both enforce one contract.

The embedded store accepts anything JSON can hold, but Firestore cannot store everything
JSON can (nested arrays, integers beyond 64 bits, NaN). Rejecting those values in both
stores means a document that works on a laptop also works in the cloud. The same goes for
``expire_at``, which Firestore holds as a Timestamp: only a time that survives one exactly
is accepted.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from common.backends.base import (
    EXPIRE_AT,
    SET_MANY_MAX,
    Filter,
    check_field_path,
    check_name,
    rfc3339,
)
from common.core.errors import UnavailableError

MAX_IN_VALUES = 30
"""Firestore's limit on the values of one ``in`` filter; applied to every store."""

INEQUALITY_OPS = frozenset(("!=", "<", "<=", ">", ">="))
_INT64 = 2**63
_random = random.SystemRandom()
_EXPIRY = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{6})Z"
)


def check_document(data: Mapping[str, Any]) -> None:
    """ValueError unless ``data`` is a JSON object every store can hold."""
    if not isinstance(data, Mapping):
        raise ValueError("a document must be a dict")
    try:
        _check_value(data, in_array=False)
    except _Refused as refused:
        raise ValueError(str(refused)) from None
    if EXPIRE_AT in data:
        parse_expiry(data[EXPIRE_AT])


def parse_expiry(value: Any) -> datetime:
    """The moment an ``expire_at`` value names; ValueError unless it is a time in the one
    form documents use (``YYYY-MM-DDTHH:MM:SS.ffffffZ``), which a Timestamp holds exactly
    and gives back as the same text."""
    match = _EXPIRY.fullmatch(value) if isinstance(value, str) else None
    if match is not None:
        year, month, day, hour, minute, second, micros = (int(part) for part in match.groups())
        try:
            return datetime(year, month, day, hour, minute, second, micros, tzinfo=UTC)
        except ValueError:
            pass
    raise ValueError(
        f"{EXPIRE_AT} must be an RFC 3339 UTC time such as 2030-01-31T00:00:00.000000Z "
        f"(six fraction digits), got {value!r}"
    )


def format_expiry(moment: datetime) -> str:
    """The text of an ``expire_at`` moment, the inverse of ``parse_expiry``."""
    utc = moment.astimezone(UTC)
    return rfc3339(datetime(*utc.timetuple()[:6], utc.microsecond, tzinfo=UTC))  # drops nanos


class _Refused(ValueError):
    """A value no store can hold; ``path`` is filled in as it propagates outwards, so the
    labels of the fields checked are built only for the one that failed."""

    def __init__(self, problem: str, path: str = "") -> None:
        super().__init__(problem)
        self.problem, self.path = problem, path

    def within(self, step: str) -> _Refused:
        return _Refused(self.problem, step + self.path)

    def __str__(self) -> str:
        return f"{self.path.removeprefix('.') or 'document'}: {self.problem}"


def _check_value(value: Any, *, in_array: bool) -> None:
    kind = type(value)
    if kind is str or kind is bool or value is None:  # the common cases, by identity
        return
    if kind is float or isinstance(value, float):
        if not math.isfinite(value):
            raise _Refused("NaN and infinity are not JSON")
        return
    if isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise _Refused("integer outside the 64-bit range")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if (type(key) is not str and not isinstance(key, str)) or not key:
                raise _Refused(f"keys must be non-empty strings, got {key!r}")
            kind = type(item)  # the common fields are checked here, without a call
            if kind is str or kind is bool or item is None:
                continue
            if kind is float and math.isfinite(item):
                continue
            if kind is int and -_INT64 <= item < _INT64:
                continue
            try:
                _check_value(item, in_array=False)
            except _Refused as refused:
                raise refused.within(f".{key}") from None
        return
    if isinstance(value, list | tuple):
        if in_array:
            raise _Refused("arrays cannot directly contain arrays (Firestore)")
        for index, item in enumerate(value):
            try:
                _check_value(item, in_array=True)
            except _Refused as refused:
                raise refused.within(f"[{index}]") from None
        return
    raise _Refused(f"{type(value).__name__} is not a JSON value")


def check_changes(changes: Mapping[str, Any]) -> None:
    """``update`` replaces top-level fields, so a key must be one plain field name."""
    check_document(changes)
    if not changes:
        raise ValueError("an update needs at least one field (Firestore refuses empty ones)")
    for key in changes:
        if "." in key:
            raise ValueError(f"update keys are top-level field names, got {key!r}")
        check_field_path(key)


def check_filter(flt: Filter) -> None:
    """ValueError for filters whose meaning would differ between stores."""
    _check_filter_values(flt)
    if flt.field == EXPIRE_AT:  # Firestore compares Timestamps: the values must be times
        for item in flt.value if flt.op == "in" else [flt.value]:
            if item is not None:
                parse_expiry(item)


def _check_filter_values(flt: Filter) -> None:
    if flt.op == "in":
        values = flt.value
        if not isinstance(values, list | tuple) or not 1 <= len(values) <= MAX_IN_VALUES:
            raise ValueError(f"'in' takes a list of 1 to {MAX_IN_VALUES} values")
        for item in values:
            if item is None:
                raise ValueError("'in' values cannot be None; use '==' None")
            check_scalar(item)
        return
    if flt.value is None and flt.op not in ("==", "!="):
        raise ValueError(f"None can only be compared with '==' or '!=', not {flt.op!r}")
    if flt.value is not None:
        check_scalar(flt.value)


def check_scalar(value: Any) -> None:
    if not isinstance(value, bool | int | float | str):
        raise ValueError(f"filter values are str, int, float, bool or None, got {value!r}")
    try:
        _check_value(value, in_array=False)
    except _Refused as refused:
        raise ValueError(f"filter value: {refused.problem}") from None


def check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer, got {limit!r}")


def check_set_many(documents: Sequence[tuple[str, str, Any]]) -> None:
    """The limits of ``DocumentStore.set_many``, before anything is written; each store
    checks the documents themselves as it encodes them."""
    if len(documents) > SET_MANY_MAX:
        raise ValueError(
            f"set_many takes at most {SET_MANY_MAX} documents in one write, got {len(documents)}"
        )
    named: set[tuple[str, str]] = set()
    for collection, doc_id, _data in documents:
        check_name("collection", collection)
        check_name("document id", doc_id)
        if (collection, doc_id) in named:
            raise ValueError(f"set_many names {collection}/{doc_id} more than once")
        named.add((collection, doc_id))


def check_attempts(max_attempts: int) -> None:
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")


def backoff_s(attempt: int, *, base_s: float, cap_s: float) -> float:
    """Equal-jitter exponential backoff: half fixed, half random, so rivals drift apart."""
    delay = min(cap_s, base_s * (1 << min(attempt, 16)))
    return delay / 2 + _random.uniform(0, delay / 2)


def contended(max_attempts: int) -> UnavailableError:
    """Exhausted retries are a transient condition: 503 tells the caller to try again."""
    return UnavailableError(
        f"transaction gave up after {max_attempts} attempts under contention", retry_after_s=1
    )
