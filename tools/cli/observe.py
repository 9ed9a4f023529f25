"""``ipoctl payload-log``, ``ipoctl prediction`` and ``ipoctl shadow``: what a model was
asked and answered, and how a candidate would have answered it (docs/PAYLOAD_LOG.md,
docs/SHADOW.md)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from tools.cli.client import UsageError
from tools.cli.commands import Context
from tools.cli.output import nested, pairs, table, text, when

Handler = Callable[[Context, argparse.Namespace], int]
AddOptions = Callable[[argparse.ArgumentParser], None]


def _model(model_id: str) -> str:
    return f"/v1/models/{quote(model_id, safe='')}"


# --- payload log -------------------------------------------------------------------------
def cmd_payload_log_show(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.emit(ctx.client.call("GET", _model(args.model) + "/payload-log"), payload_log)


def cmd_payload_log_set(ctx: Context, args: argparse.Namespace) -> int:
    """Change only what is given: the settings are read first, and sent back with the
    generation they were read at, so a change made meanwhile is refused (409), not lost."""
    if args.enable and args.disable:
        raise UsageError("say --enable or --disable, not both")
    path = _model(args.model) + "/payload-log"
    current = ctx.client.call("GET", path).data
    enabled = True if args.enable else False if args.disable else bool(current.get("enabled"))
    rate = args.rate if args.rate is not None else float(current.get("sampling_rate") or 0.0)
    if enabled and rate == 0.0:
        raise UsageError("the payload log would keep nothing: give --rate R (0 < R <= 1)")
    redact = list(current.get("redact_fields") or [])
    if args.no_redact:
        redact = []
    if args.redact:
        redact = sorted({*redact, *args.redact})
    body: dict[str, Any] = {
        "enabled": enabled,
        "sampling_rate": rate,
        "redact_fields": redact,
        "expected_generation": current.get("generation", 0),
    }
    if args.reason:
        body["reason"] = args.reason
    answer = ctx.client.call("PUT", path, body)
    return ctx.emit(answer, lambda data: payload_log(data.get("settings") or {}))


def payload_log(data: Mapping[str, Any]) -> str:
    head = pairs(
        [
            ("model", data.get("model_id")),
            ("enabled", "yes" if data.get("enabled") else "no"),
            ("sampling rate", data.get("sampling_rate")),
            ("redacted fields", ", ".join(data.get("redact_fields") or []) or None),
            ("generation", data.get("generation")),
            ("updated", f"{when(data.get('updated_at'))} by {text(data.get('updated_by'))}"),
        ]
    )
    changes = data.get("changes") or []
    if not changes:
        return head
    rows = [
        (
            when(c.get("created_at")),
            c.get("actor"),
            "on" if (c.get("to") or {}).get("enabled") else "off",
            (c.get("to") or {}).get("sampling_rate"),
            c.get("reason") or "-",
        )
        for c in changes
    ]
    return head + "\n\n" + table(("CHANGED", "BY", "LOG", "RATE", "REASON"), rows)


# --- kept predictions ----------------------------------------------------------------------
def cmd_prediction(ctx: Context, args: argparse.Namespace) -> int:
    path = f"/v1/predictions/{quote(args.request_id, safe='')}"
    if not args.explain:
        return ctx.emit(ctx.client.call("GET", path), prediction)
    query = {k: v for k, v in (("paths", args.paths), ("seed", args.seed)) if v is not None}
    path += "/explanation" + (f"?{urlencode(query)}" if query else "")
    return ctx.emit(ctx.client.call("GET", path), explanation)


def explanation(data: Mapping[str, Any]) -> str:
    """Per instance and output: baseline, value, and each input's share of the change."""
    meta = data.get("explanation_metadata") or {}
    blocks = [
        pairs(
            [
                ("request", data.get("request_id")),
                ("model", f"{text(data.get('model_id'))} {text(data.get('model_version'))}"),
                ("method", meta.get("method")),
                ("scale", meta.get("output_scale")),
                ("paths, seed", f"{text(meta.get('paths'))}, {text(meta.get('seed'))}"),
            ]
        )
    ]
    for i, item in enumerate(data.get("explanations") or []):
        for output in item.get("attributions") or []:
            rows = sorted(
                (output.get("feature_attributions") or {}).items(),
                key=lambda kv: -abs(kv[1]) if isinstance(kv[1], int | float) else 0,
            )
            head = (
                f"instance {i}, {text(output.get('output_name'))}: "
                f"{text(output.get('baseline_output_value'))} -> "
                f"{text(output.get('instance_output_value'))} "
                f"(error <= {text(output.get('approximation_error'))})"
            )
            blocks.append(head + "\n" + table(("INPUT", "ATTRIBUTION"), rows))
    return "\n\n".join(blocks)


def prediction(data: Mapping[str, Any]) -> str:
    head = pairs(
        [
            ("request", data.get("request_id")),
            ("time", when(data.get("time"))),
            ("model", f"{text(data.get('model_id'))} {text(data.get('model_version'))}"),
            ("variant", data.get("variant")),
            ("experiment", data.get("experiment_id")),
            ("principal", data.get("principal")),
            ("latency", f"{text(data.get('latency_ms'))} ms"),
            ("cache", data.get("cache") or "miss"),
            ("redacted", ", ".join(data.get("redacted_fields") or []) or None),
        ]
    )
    blocks = [head]
    for i, (instance, answer) in enumerate(
        zip(data.get("instances") or [], data.get("predictions") or [], strict=False)
    ):
        full = json.dumps(instance, sort_keys=True), json.dumps(answer, sort_keys=True)
        blocks.append(f"instance {i}\n  in:  {full[0]}\n  out: {full[1]}")
    return "\n\n".join(blocks)


# --- shadow --------------------------------------------------------------------------------
def cmd_shadow_start(ctx: Context, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "version": args.version,
        "until": args.until,
        "sampling_rate": args.rate,
    }
    if args.reason:
        body["reason"] = args.reason
    answer = ctx.client.call("POST", _model(args.model) + "/shadow", body)
    return ctx.emit(answer, shadow)


def cmd_shadow_stop(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.emit(ctx.client.call("POST", _model(args.model) + "/shadow/stop"), shadow)


def cmd_shadow_report(ctx: Context, args: argparse.Namespace) -> int:
    chosen = (
        ("version", args.version),
        ("shadow_id", args.shadow_id),
        ("tolerance", args.tolerance),
    )
    query = {k: v for k, v in chosen if v}
    path = _model(args.model) + "/shadow/report" + (f"?{urlencode(query)}" if query else "")
    return ctx.emit(ctx.client.call("GET", path), shadow_report)


def cmd_shadow_list(ctx: Context, args: argparse.Namespace) -> int:
    return ctx.emit(ctx.client.call("GET", _model(args.model) + "/shadows"), shadow_list)


def shadow_list(data: Mapping[str, Any]) -> str:
    rows = [
        (
            s.get("shadow_id"),
            s.get("version"),
            s.get("production_version"),
            s.get("status"),
            when(s.get("created_at")),
            s.get("replayed"),
        )
        for s in data.get("shadows") or []
    ]
    if not rows:
        return "no shadow evaluations"
    return table(("SHADOW", "CANDIDATE", "AGAINST", "STATUS", "STARTED", "REPLAYED"), rows)


def shadow(data: Mapping[str, Any]) -> str:
    return pairs(
        [
            ("shadow", data.get("shadow_id")),
            ("model", data.get("model_id")),
            ("candidate", data.get("version")),
            ("against", data.get("production_version")),
            ("status", data.get("status")),
            ("sampling rate", data.get("sampling_rate")),
            ("until", when(data.get("until"))),
            ("replayed", data.get("replayed")),
        ]
    )


def _page(key: Any) -> str | None:
    """Where the page is: a key of the artifact store, served by the local gateway."""
    return f"{key} (local gateway: /{key})" if key else None


def shadow_report(data: Mapping[str, Any]) -> str:
    def ci(value: Any) -> str:
        return f"[{value[0]:.4g}, {value[1]:.4g}]" if isinstance(value, list) else "-"

    latency = data.get("latency_ms_per_instance") or {}
    blocks = [
        shadow(data.get("shadow") or {}),
        pairs(
            [
                ("compared", data.get("n")),
                ("tolerance", data.get("tolerance")),
                ("gate reads", nested(data.get("summary"))),
                ("candidate errors", f"{data.get('candidate_errors')} of {data.get('rows')}"),
                ("production ms/instance", latency.get("production")),
                ("candidate ms/instance", latency.get("candidate")),
                ("report page", _page(data.get("report_html"))),
            ]
        ),
    ]
    outputs = data.get("outputs") or {}
    numeric = [
        (
            name,
            o.get("n"),
            f"{o.get('mean_rel_diff')} {ci(o.get('mean_rel_diff_ci95'))}",
            f"{o.get('mean_abs_rel_diff')} {ci(o.get('mean_abs_rel_diff_ci95'))}",
            o.get("rank_correlation"),
            o.get("within_tolerance"),
        )
        for name, o in outputs.items()
        if o.get("type") == "numeric"
    ]
    if numeric:
        blocks.append(
            table(
                ("OUTPUT", "N", "MEAN REL DIFF", "MEAN |REL DIFF|", "RANK CORR", "WITHIN TOL"),
                numeric,
            )
        )
    classes = [
        (
            name,
            o.get("n"),
            f"{o.get('agreement')} {ci(o.get('agreement_ci95'))}",
            "; ".join(
                f"{p} -> " + ", ".join(f"{c} {n}" for c, n in row.items())
                for p, row in (o.get("confusion") or {}).items()
            ),
        )
        for name, o in outputs.items()
        if o.get("type") == "class"
    ]
    if classes:
        blocks.append(table(("OUTPUT", "N", "AGREEMENT", "PRODUCTION -> CANDIDATE"), classes))
    segments = [
        (s.get("field"), s.get("value"), s.get("n"), s.get("mean_difference"))
        for s in data.get("segments") or []
    ]
    if segments:
        blocks.append(table(("SEGMENT", "VALUE", "N", "MEAN DIFFERENCE"), segments))
    return "\n\n".join(blocks)


# --- a model's gate ------------------------------------------------------------------------
def cmd_gate(ctx: Context, args: argparse.Namespace) -> int:
    """Replace a model's promotion gate (admin): the new gate from a JSON file, a reason."""
    from tools.cli.commands import _read_json
    from tools.cli.gate_output import gate_inline

    gate = _read_json(args.gate, ctx.stdin, "gate")
    if not isinstance(gate, dict):
        raise UsageError(f"gate {args.gate} must be a JSON object")
    body = {"gate": gate, "reason": args.reason}
    answer = ctx.client.call("PUT", _model(args.model) + "/gate", body)

    def render(data: Mapping[str, Any]) -> str:
        change = data.get("change") or {}
        return pairs(
            [
                ("model", change.get("model_id")),
                ("gate", gate_inline((data.get("model") or {}).get("gate"))),
                ("changed", f"{when(change.get('created_at'))} by {text(change.get('actor'))}"),
                ("reason", change.get("reason")),
            ]
        )

    return ctx.emit(answer, render)


# --- the parser ----------------------------------------------------------------------------
def add_commands(commands: Any, options: AddOptions, rate: Callable[[str], float]) -> None:
    """Register the three groups on ``commands`` (the top-level subparsers)."""

    def group(name: str, text: str) -> Any:
        parser = commands.add_parser(name, help=text, description=text)
        options(parser)
        return parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(actions: Any, name: str, handler: Handler, text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=text, description=text)
        options(sub)
        sub.set_defaults(handler=handler)
        sub.add_argument("model")
        return sub

    actions = group("payload-log", "What the payload log keeps of a model's predictions.")
    action(actions, "show", cmd_payload_log_show, "Show the settings and their changes.")
    sub = action(
        actions, "set", cmd_payload_log_set, "Change the settings given; the rest stay (recorded)."
    )
    sub.add_argument("--enable", action="store_true", help="keep predictions")
    sub.add_argument("--disable", action="store_true", help="keep none")
    sub.add_argument("--rate", type=rate, metavar="R", help="share kept, 0..1 (default: unchanged)")
    sub.add_argument(
        "--redact",
        action="append",
        metavar="FIELD",
        help="also never keep this input field (repeatable; the fields already redacted stay)",
    )
    sub.add_argument(
        "--no-redact", action="store_true", help="redact nothing (before any --redact given)"
    )
    sub.add_argument("--reason", default="", metavar="TEXT", help="why (kept with the change)")

    sub = commands.add_parser(
        "prediction",
        help="Show a prediction the payload log kept.",
        description="Show a prediction the payload log kept: inputs, outputs, version, variant.",
    )
    options(sub)
    sub.set_defaults(handler=cmd_prediction)
    sub.add_argument("request_id", metavar="REQUEST_ID")
    sub.add_argument("--explain", action="store_true", help="explain it again (same numbers)")
    sub.add_argument("--paths", type=int, help="sampled Shapley's orders per instance")
    sub.add_argument("--seed", type=int, help="seed of the orders (default 0)")

    sub = commands.add_parser(
        "gate",
        help="Replace a model's promotion gate (admin; recorded).",
        description="Replace a model's promotion gate (admin; recorded with the reason).",
    )
    options(sub)
    sub.set_defaults(handler=cmd_gate)
    sub.add_argument("model")
    sub.add_argument("--gate", required=True, metavar="FILE", help="JSON gate; '-' for stdin")
    sub.add_argument("--reason", required=True, metavar="TEXT", help="why (required)")

    actions = group("shadow", "Shadow evaluation: a candidate replayed on production traffic.")
    sub = action(actions, "start", cmd_shadow_start, "Start a shadow evaluation of a candidate.")
    sub.add_argument("version", help="the candidate (staging, passing its gate)")
    sub.add_argument("--until", required=True, help="ISO 8601 with a time zone")
    sub.add_argument("--rate", type=rate, default=1.0, metavar="R", help="share replayed, 0..1")
    sub.add_argument("--reason", default="", metavar="TEXT")
    action(actions, "stop", cmd_shadow_stop, "Stop the model's shadow evaluation.")
    action(actions, "list", cmd_shadow_list, "List the model's shadows, newest first.")
    sub = action(actions, "report", cmd_shadow_report, "Compare the candidate with production.")
    sub.add_argument("--version", help="this candidate's newest shadow")
    sub.add_argument("--shadow-id", help="this shadow (see `shadow list`)")
    sub.add_argument("--tolerance", help="relative difference counted as within (default 0.05)")
