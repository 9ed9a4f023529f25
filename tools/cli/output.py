"""Plain-text rendering for ``ipoctl``: aligned tables, key/value blocks, error lines.

No colour and no dependency: every renderer takes the decoded JSON answer of one call
and returns the text to print. ``--json`` bypasses all of this and prints the answer as
it came.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tools.cli.gate_output import gate_inline

MISSING = "-"
NESTED_WIDTH = 60
REASON_WIDTH = 60


def clip(value: str, width: int) -> str:
    return value if len(value) <= width else value[: width - 3] + "..."


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def text(value: Any) -> str:
    """One value as a single line of text: None and "" are "-", floats at 6 digits."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, int):
        return str(value)
    return compact(value)


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns two spaces apart; columns holding only numbers align right."""
    raw = [list(row) for row in rows]
    cells = [[text(value) for value in row] for row in raw]
    widths = [len(h) for h in headers]
    numbers = [0] * len(headers)
    others = [0] * len(headers)
    for row, values in zip(cells, raw, strict=True):
        for i, (cell, value) in enumerate(zip(row, values, strict=True)):
            widths[i] = max(widths[i], len(cell))
            if _numeric(value):
                numbers[i] += 1
            elif value is not None:
                others[i] += 1
    right = [n > 0 and o == 0 for n, o in zip(numbers, others, strict=True)]

    def line(row: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if align else cell.ljust(width)
            for cell, width, align in zip(row, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), *(line(row) for row in cells)])


def pairs(items: Sequence[tuple[str, Any]]) -> str:
    """``key  value`` lines with the values aligned."""
    width = max((len(key) for key, _ in items), default=0)
    return "\n".join(f"{key.ljust(width)}  {text(value)}".rstrip() for key, value in items)


def when(timestamp: Any) -> str:
    """An RFC 3339 UTC time, to the second: 2024-05-01 12:34:56Z."""
    if not isinstance(timestamp, str) or not timestamp:
        return MISSING
    stamp = timestamp.replace("T", " ")
    head, dot, tail = stamp.partition(".")
    if dot:
        zone = "Z" if tail.endswith("Z") else ""
        return head + zone
    return stamp


def percent(value: Any) -> str:
    return f"{text(value)}%" if _numeric(value) else MISSING


def serving(state: Mapping[str, Any] | None) -> str:
    """A serving state: "1.1.0", "1.1.0 + canary 1.2.0 at 10%", or "none"."""
    if not state:
        return MISSING
    production = state.get("production_version")
    canary = state.get("canary_version")
    base = str(production) if production else "none"
    if canary:
        return f"{base} + canary {canary} at {percent(state.get('canary_percentage'))}"
    return base


def metrics_inline(metrics: Any) -> str:
    if not isinstance(metrics, Mapping) or not metrics:
        return MISSING
    return " ".join(f"{key}={text(metrics[key])}" for key in sorted(metrics))


def nested(value: Any) -> str:
    return clip(text(value), NESTED_WIDTH)


# --- errors ----------------------------------------------------------------------------


def detail_line(detail: Any) -> str:
    """One entry of ``error.details``: a gate criterion, a field problem, or anything else."""
    if not isinstance(detail, Mapping):
        return text(detail)
    words: list[str] = []
    if "passed" in detail:
        words.append("PASS" if detail["passed"] is True else "FAIL")
    name = next((detail[k] for k in ("criterion", "check", "field", "name") if k in detail), None)
    if name is not None:
        words.append(str(name))
    shown = {"passed", "criterion", "check", "field", "name", "message", "path", "rule"}
    if "value" in detail and ("threshold" in detail or "op" in detail):
        words.append(text(detail["value"]))
        if "threshold" in detail:
            words.append(f"(required {detail.get('op', '')} {text(detail['threshold'])})".strip())
        shown |= {"value", "threshold", "op"}
    line = " ".join(words)
    message = detail.get("message")
    if message:
        line = f"{line}: {text(message)}" if line else text(message)
    extra = [f"[{detail['rule']}]"] if "rule" in detail else []
    extra += [f"{key}={nested(value)}" for key, value in detail.items() if key not in shown]
    line = " ".join([line, *extra]).strip()
    return line or compact(detail)


def verification_lines(report: Mapping[str, Any]) -> list[str]:
    """A verification report: one summary line, then each golden-set mismatch."""
    passed = report.get("passed")
    head = "verification"
    if isinstance(passed, bool):
        head = ("PASS " if passed else "FAIL ") + head
    facts = [text(p) for p in report.get("problems") or []]
    if isinstance(report.get("golden_cases"), int):
        facts.append(f"{report['golden_cases']} golden cases")
    if report.get("latency_p95_ms") is not None:
        facts.append(f"latency p95 {text(report['latency_p95_ms'])} ms")
    mismatches = report.get("golden_mismatches") or []
    return [f"{head}: {'; '.join(facts)}" if facts else head, *(f"  {m}" for m in mismatches)]


def detail_lines(detail: Any) -> list[str]:
    if isinstance(detail, Mapping) and isinstance(detail.get("verification"), Mapping):
        return verification_lines(detail["verification"])
    return [detail_line(detail)]


def error_lines(
    code: str, message: str, details: Sequence[Any], request_id: str | None
) -> list[str]:
    lines = [f"error: {code}: {message}"]
    lines.extend(f"  {line}" for detail in details for line in detail_lines(detail))
    if request_id:
        lines.append(f"request id: {request_id}")
    return lines


# --- one renderer per answer -----------------------------------------------------------


def models(data: Mapping[str, Any]) -> str:
    rows = [
        (
            m.get("model_id"),
            m.get("kind"),
            m.get("production_version"),
            m.get("canary_version"),
            percent(m.get("canary_percentage")) if m.get("canary_version") else None,
            m.get("generation"),
            when(m.get("updated_at")),
        )
        for m in data.get("models", [])
    ]
    if not rows:
        return "no models registered"
    headers = ("MODEL", "KIND", "PRODUCTION", "CANARY", "TRAFFIC", "GENERATION", "UPDATED")
    return table(headers, rows)


def _serving_role(model: Mapping[str, Any], version: Any) -> str | None:
    if version == model.get("production_version"):
        return "production"
    if version == model.get("canary_version"):
        return f"canary {percent(model.get('canary_percentage'))}"
    return None


def model(data: Mapping[str, Any]) -> str:
    canary = data.get("canary_version")
    head = pairs(
        [
            ("model", data.get("model_id")),
            ("kind", data.get("kind")),
            ("description", data.get("description")),
            ("production", data.get("production_version")),
            ("canary", f"{canary} at {percent(data.get('canary_percentage'))}" if canary else None),
            ("generation", data.get("generation")),
            ("gate", gate_inline(data.get("gate"))),
            ("updated", when(data.get("updated_at"))),
        ]
    )
    versions = data.get("versions") or []
    if not versions:
        return head + "\n\nno versions registered"
    rows = [
        (
            v.get("version"),
            v.get("stage"),
            _serving_role(data, v.get("version")),
            when(v.get("created_at")),
            v.get("created_by"),
            metrics_inline(v.get("metrics")),
        )
        for v in versions
    ]
    headers = ("VERSION", "STAGE", "SERVING", "CREATED", "BY", "METRICS")
    return head + "\n\n" + table(headers, rows)


def version(data: Mapping[str, Any]) -> str:
    tags = data.get("tags") or {}
    schema = data.get("input_schema") or {}
    fields = sorted(schema.get("properties", {})) if isinstance(schema, Mapping) else []
    blocks = [
        pairs(
            [
                ("model", data.get("model_id")),
                ("version", data.get("version")),
                ("kind", data.get("kind")),
                ("stage", data.get("stage")),
                ("stage reason", data.get("stage_reason") or None),
                ("created", f"{when(data.get('created_at'))} by {text(data.get('created_by'))}"),
                ("description", data.get("description")),
                ("sha256", data.get("artifact_sha256")),
                ("size", data.get("artifact_size")),
                ("tags", " ".join(f"{k}={tags[k]}" for k in sorted(tags)) or None),
                ("input fields", ", ".join(fields) or None),
                ("example", nested(data.get("example") or None)),
            ]
        )
    ]
    metrics = data.get("metrics") or {}
    if metrics:
        blocks.append(table(("METRIC", "VALUE"), [(k, metrics[k]) for k in sorted(metrics)]))
    card = data.get("model_card") or {}
    if card:
        blocks.append("model card\n" + pairs([(f"  {k}", nested(card[k])) for k in sorted(card)]))
    return "\n\n".join(blocks)


def registered(data: Mapping[str, Any]) -> str:
    return (
        f"registered {text(data.get('model_id'))} {text(data.get('version'))} "
        f"(kind {text(data.get('kind'))}, stage {text(data.get('stage'))}, "
        f"sha256 {text(data.get('artifact_sha256'))})"
    )


def staged(data: Mapping[str, Any]) -> str:
    return (
        f"{text(data.get('model_id'))} {text(data.get('version'))} is now {text(data.get('stage'))}"
    )


def deployment(data: Mapping[str, Any], model_id: str) -> str:
    d = data.get("deployment") or {}
    after = d.get("to") or data.get("model")
    if d.get("kind") == "rollback":
        title = f"rolled back {model_id}: now serving {serving(after)}"
    elif after and after.get("canary_version") == d.get("version"):
        share = percent(after.get("canary_percentage"))
        title = f"{model_id} {text(d.get('version'))} is a canary at {share}"
    else:
        title = f"{model_id} {text(d.get('version'))} is in production"
    items: list[tuple[str, Any]] = [
        ("deployment", d.get("deployment_id")),
        ("status", d.get("status")),
        ("by", f"{text(d.get('actor'))} at {when(d.get('created_at'))}"),
        ("before", serving(d.get("from"))),
        ("after", serving(after)),
        ("generation", (after or {}).get("generation")),
    ]
    if d.get("restores"):
        items.append(("restores", d["restores"]))
    if d.get("reason"):
        items.append(("reason", d["reason"]))
    gate = d.get("gate")
    if isinstance(gate, list):
        items.extend(("gate" if i == 0 else "", detail_line(r)) for i, r in enumerate(gate))
    verification = d.get("verification")
    if isinstance(verification, Mapping) and verification:
        lines = verification_lines(verification)
        items.extend(("verification" if i == 0 else "", line) for i, line in enumerate(lines))
    return title + "\n" + pairs(items)


def _reason(d: Mapping[str, Any]) -> Any:
    if d.get("reason"):
        return d["reason"]
    return f"restores {d['restores']}" if d.get("restores") else None


def history(data: Mapping[str, Any]) -> str:
    rows = [
        (
            when(d.get("created_at")),
            d.get("deployment_id"),
            d.get("kind"),
            d.get("status"),
            d.get("actor"),
            d.get("version"),
            percent(d.get("traffic_percentage")),
            serving(d.get("from")),
            serving(d.get("to")),
            clip(text(_reason(d)), REASON_WIDTH),
        )
        for d in data.get("deployments", [])
    ]
    if not rows:
        return "no deployments"
    headers = (
        "CREATED",
        "DEPLOYMENT",
        "KIND",
        "STATUS",
        "ACTOR",
        "VERSION",
        "TRAFFIC",
        "FROM",
        "TO",
        "REASON",
    )
    return table(headers, rows)


def prediction(data: Mapping[str, Any]) -> str:
    head = pairs(
        [
            ("model", data.get("model_id")),
            ("version", data.get("model_version")),
            ("variant", data.get("variant")),
            ("experiment", data.get("experiment_id")),
            *([("exposure id", data["exposure_id"])] if data.get("exposure_id") else []),
            ("request id", data.get("request_id")),
        ]
    )
    predictions = [p for p in data.get("predictions", []) if isinstance(p, Mapping)]
    if not predictions:
        return head
    columns: list[str] = []
    for p in predictions:
        columns.extend(k for k in p if k not in columns)
    rows = [
        (i, *(nested(p[c]) if isinstance(p.get(c), dict | list) else p.get(c) for c in columns))
        for i, p in enumerate(predictions)
    ]
    return head + "\n\n" + table(("#", *(c.upper() for c in columns)), rows)


def canary(summary: Mapping[str, Any]) -> str:
    users = int(summary["users"])
    rows = [
        (r["model_version"], r["variant"], r["users"], f"{100.0 * r['users'] / users:.1f}%")
        for r in summary["results"]
    ]
    configured = serving(summary)
    canary_users = sum(r["users"] for r in summary["results"] if r["variant"] == "canary")
    lines = [
        f"{summary['model_id']}: serving {configured}; {users} simulated users, one call each",
        "",
        table(("VERSION", "VARIANT", "USERS", "SHARE"), rows),
        "",
        f"canary share: {100.0 * canary_users / users:.1f}% observed, "
        f"{percent(summary.get('canary_percentage')) if summary.get('canary_version') else '0%'}"
        " configured",
    ]
    return "\n".join(lines)
