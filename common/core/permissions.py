"""The permission grammar (docs/SECURITY.md, "Permissions"), parsed once.

A permission is one of the shapes in ``SHAPES``, the permissions the routes and handlers
check. A shape's ``{model}`` or ``{job}`` segment holds a name, or ``*`` in a granted
permission (any model, any job); every other segment is literal. So ``*``, ``*:*``,
``model:*:*`` or ``job:*:*`` are not permissions at all, and ``admin`` is only the literal
``admin``. It lives in core so that settings (``IPO_SERVICE_ACCOUNTS``) and tokens are
held to the same grammar.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

ADMIN = "admin"
ANY = "*"
"""Stands for one model id or one job name in a granted permission, and for nothing else."""
SHAPES: tuple[str, ...] = (
    ADMIN,
    "model:read",
    "model:{model}:predict",
    "model:{model}:explain",
    "model:{model}:register",
    "model:{model}:promote",
    "model:{model}:rollback",
    "experiment:read",
    "experiment:write",
    "job:{job}:run",
    "batch:submit",
)
"""Every permission an operation can need: ``x-ipo-permission`` in common/api/openapi.yaml,
and ``admin``, ``experiment:write`` and a batch job's ``model:{model}:predict`` checked by
handlers."""
NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,128}")
"""A model id or job name: the characters a path parameter may hold (common/api/routes.py),
so every permission a route formats from its path parses."""
_PLACEHOLDER = re.compile(r"\{(model|job)\}")
_SPLIT = tuple(tuple(shape.split(":")) for shape in SHAPES)


@dataclass(frozen=True)
class Permission:
    """A parsed permission: its shape and, for a named shape, the model or job (or ``*``)."""

    shape: str
    name: str | None = None

    def grants(self, required: Permission) -> bool:
        if self.shape == ADMIN:
            return True
        return self.shape == required.shape and self.name in (ANY, required.name)

    def __str__(self) -> str:
        if self.name is None:
            return self.shape
        return _PLACEHOLDER.sub(self.name, self.shape)


def parse(text: str, *, wildcard: bool = True) -> Permission:
    """``text`` as a permission, or ValueError naming it. ``wildcard=False`` for a required
    permission, which names one model or job."""
    segments = text.split(":")
    for shape, parts in zip(SHAPES, _SPLIT, strict=True):
        if len(parts) != len(segments):
            continue
        name: str | None = None
        for part, segment in zip(parts, segments, strict=True):
            if _PLACEHOLDER.fullmatch(part):
                if not (NAME.fullmatch(segment) or (wildcard and segment == ANY)):
                    break
                name = segment
            elif part != segment:
                break
        else:
            return Permission(shape, name)
    raise ValueError(
        f"{text!r} is not a permission: one of {', '.join(SHAPES)}, where only a {{model}} "
        "or {job} segment may be '*'"
    )


def parse_all(texts: Iterable[str]) -> frozenset[Permission]:
    """Each of ``texts`` parsed; the first that is not a permission is the ValueError."""
    return frozenset(parse(text) for text in texts)


@lru_cache(maxsize=4096)
def _required(text: str) -> Permission:
    """A route's permission, parsed once: every request of a route formats the same few."""
    return parse(text, wildcard=False)


def allows(granted: Iterable[Permission], required: str) -> bool:
    """Whether any of ``granted`` allows ``required``. A required permission that does not
    parse (no route formats one) is allowed to ``admin`` alone."""
    try:
        wanted = _required(required)
    except ValueError:
        return any(permission.shape == ADMIN for permission in granted)
    return any(permission.grants(wanted) for permission in granted)


def grants(granted: str, required: str) -> bool:
    """Whether the permission ``granted`` allows ``required``; a malformed ``granted``: False."""
    try:
        return allows((parse(granted),), required)
    except ValueError:
        return False
