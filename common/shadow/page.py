"""A shadow report as a self-contained HTML page, with a chart like the drift report's.

Kept apart from the report itself: only the job that stores the page pays for matplotlib.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.monitoring import html as pages
from common.monitoring.html import esc, number


def _chart(outputs: Mapping[str, Any]) -> str | None:
    """Mean absolute relative difference per numeric output, with its interval."""
    numeric = [(k, v) for k, v in outputs.items() if v.get("type") == "numeric"]
    if not numeric:
        return None
    from common.monitoring.charts import interval_bars

    return interval_bars(
        [k for k, _ in numeric],
        [float(v["mean_abs_rel_diff"]) for _, v in numeric],
        [v.get("mean_abs_rel_diff_ci95") for _, v in numeric],
        "mean |relative difference|",
    )


def render(found: Mapping[str, Any]) -> str:
    shadow, latency = found["shadow"], found["latency_ms_per_instance"]
    summary = pages.summary_list(
        [
            ("Model", esc(shadow["model_id"])),
            ("Candidate", esc(shadow["version"])),
            ("Production", esc(shadow["production_version"])),
            ("Status", esc(shadow["status"])),
            ("Until", esc(shadow["until"])),
            ("Instances compared", number(found["n"], "d")),
            ("Candidate errors", number(found["candidate_errors"], "d")),
            ("Candidate error rate", number(found["candidate_error_rate"])),
            ("Production latency per instance (ms)", number(latency["production"], ".3f")),
            ("Candidate latency per instance (ms)", number(latency["candidate"], ".3f")),
            ("Tolerance", number(found["tolerance"], ".3g")),
        ]
    )

    def interval(value: Any) -> str:
        return f"[{number(value[0])}, {number(value[1])}]" if value else "&mdash;"

    def with_interval(output: Mapping[str, Any], name: str) -> str:
        return f"{number(output[name])} {interval(output[name + '_ci95'])}"

    numeric_rows = [
        (
            "",
            [
                f"<td>{esc(name)}</td>",
                f'<td class="num">{number(o["n"], "d")}</td>',
                f'<td class="num">{with_interval(o, "mean_rel_diff")}</td>',
                f'<td class="num">{with_interval(o, "mean_abs_rel_diff")}</td>',
                f'<td class="num">{number(o["rank_correlation"])}</td>',
                f'<td class="num">{number(o["within_tolerance"])}</td>',
            ],
        )
        for name, o in found["outputs"].items()
        if o["type"] == "numeric"
    ]
    class_rows = [
        (
            "",
            [
                f"<td>{esc(name)}</td>",
                f'<td class="num">{number(o["n"], "d")}</td>',
                f'<td class="num">{number(o["agreement"])} {interval(o["agreement_ci95"])}</td>',
                "<td>"
                + "; ".join(
                    f"{esc(p)} &rarr; " + ", ".join(f"{esc(c)}: {n}" for c, n in row.items())
                    for p, row in o["confusion"].items()
                )
                + "</td>",
            ],
        )
        for name, o in found["outputs"].items()
        if o["type"] == "class"
    ]
    segment_rows = [
        (
            "",
            [
                f"<td>{esc(s['field'])}</td>",
                f"<td>{esc(s['value'])}</td>",
                f'<td class="num">{number(s["n"], "d")}</td>',
                f'<td class="num">{number(s["mean_difference"])}</td>',
            ],
        )
        for s in found["segments"]
    ]
    chart = _chart(found["outputs"])
    body = [
        summary,
        "<h2>Numeric outputs</h2>",
        pages.table(
            [
                "Output",
                "n",
                "Mean relative difference (95% CI)",
                "Mean |relative difference| (95% CI)",
                "Rank correlation",
                "Within tolerance",
            ],
            numeric_rows,
        )
        if numeric_rows
        else "<p>None.</p>",
        pages.figure(chart, "mean |relative difference| per output, 95% intervals")
        if chart
        else "",
        "<h2>Class outputs</h2>",
        pages.table(["Output", "n", "Agreement (95% CI)", "Production -> candidate"], class_rows)
        if class_rows
        else "<p>None.</p>",
        "<h2>Segments where the candidate differs most</h2>",
        pages.table(["Field", "Value", "Instances", "Mean difference"], segment_rows)
        if segment_rows
        else "<p>No segment with enough instances.</p>",
    ]
    return pages.page(f"Shadow report: {shadow['model_id']} {shadow['version']}", body)
