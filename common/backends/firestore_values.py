"""What Firestore holds where it differs from the JSON documents callers see.

One field differs: a top-level ``expire_at`` (an RFC 3339 string to callers) is held as a
Timestamp, because a Firestore TTL policy acts only on a Timestamp field. It is encoded on
every write, decoded on every read, and filter values on it are encoded too, since
Firestore compares a Timestamp only with a Timestamp. ``_support.parse_expiry`` accepts
only times a Timestamp holds exactly, so a read gives back the text that was written.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from common.backends import _support
from common.backends.base import EXPIRE_AT, Filter


def plain(data: dict[str, Any]) -> dict[str, Any]:
    """A validated deep copy with tuples as lists: exactly what callers will read back."""
    _support.check_document(data)
    copied: dict[str, Any] = json.loads(json.dumps(data, allow_nan=False))
    return copied


def encode(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (checked by ``plain``) as Firestore should hold it."""
    if EXPIRE_AT not in data:
        return data
    return {**data, EXPIRE_AT: _support.parse_expiry(data[EXPIRE_AT])}


def decode(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored document as callers see it; ``stored`` is the client's fresh copy."""
    value = stored.get(EXPIRE_AT)
    if isinstance(value, datetime):
        stored[EXPIRE_AT] = _support.format_expiry(value)
    return stored


def filter_value(flt: Filter) -> Any:
    """The value to send for a (checked) filter: times on ``expire_at`` as Timestamps."""
    if flt.op == "in":
        values = list(flt.value)
        return [_support.parse_expiry(v) for v in values] if flt.field == EXPIRE_AT else values
    if flt.field == EXPIRE_AT and flt.value is not None:
        return _support.parse_expiry(flt.value)
    return flt.value
