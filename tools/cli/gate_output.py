"""The promotion gate in one line, for ``ipoctl show MODEL``.

The API answers a model's effective gate (its own criteria, or the defaults that apply);
printing it spares a reader from knowing which defaults the platform has.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def gate_inline(gate: Any) -> str:
    """``accuracy >= 0.85, latency_p95_ms <= 500, experiment required``; "-" if absent."""
    if not isinstance(gate, Mapping):
        return "-"
    parts = [
        f"{c.get('metric')} {c.get('op')} {_number(c.get('threshold'))}"
        for c in gate.get("criteria") or []
        if isinstance(c, Mapping)
    ]
    gaps = gate.get("max_fresh_sample_gap")
    if isinstance(gaps, Mapping):
        parts += [f"fresh-sample gap of {m} <= {_number(t)}" for m, t in sorted(gaps.items())]
    if gate.get("require_experiment"):
        parts.append("experiment required")
    return ", ".join(parts) or "-"
