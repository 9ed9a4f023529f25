"""Self-contained HTML reports of the drift scan and the compliance scan.

Each report is one HTML page with inline CSS and its charts embedded as PNG data URIs: no
external resource, no JavaScript, so it opens from anywhere and can be served under a
Content-Security-Policy of ``default-src 'none'; img-src data:; style-src 'unsafe-inline'``.
Every value from stored data is escaped with :func:`html.escape`.

Reports are artifacts, ``reports/<kind>/<name>.html``: the drift report of
``drift_reports/<id>`` is ``reports/drift/<id>.html``, the compliance report of
``compliance_scans/<id>`` is ``reports/compliance/<id>.html``. A rerun replaces its report.
"""

from __future__ import annotations

import html
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from common.monitoring import charts as report_charts
from common.monitoring import drift

if TYPE_CHECKING:
    from common.backends.base import ArtifactStore

ReportKind = Literal["drift", "compliance"]
KINDS: tuple[ReportKind, ...] = ("drift", "compliance")
Chart = tuple[list[str], list[float], list[float]]
"""Bin labels, baseline shares, live shares."""
DETAIL_CHARS = 300

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.drift td,tr.fail td{background:#fdecea}tr.pass td{background:#eafaf1}
tr.na td{color:#777}.bad{color:#c0392b;font-weight:bold}.good{color:#1e8449}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:bold}
figure{display:inline-block;margin:.5em 1em .5em 0}figcaption{font-size:.85em;color:#555}
img{max-width:100%}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def number(value: Any, spec: str = ".4f") -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "&mdash;" if value is None else esc(value)
    return esc(format(value, spec))


def _page(title: str, body: Iterable[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n"
        f"<body><h1>{esc(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _summary(items: Sequence[tuple[str, str]]) -> str:
    """A definition list; the values are HTML already."""
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _table(headers: Sequence[str], rows: Iterable[tuple[str, Sequence[str]]]) -> str:
    """A table of (row class, cells); the cells are HTML already."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(f'<tr class="{esc(cls)}">' + "".join(cells) + "</tr>\n" for cls, cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"


def _figure(uri: str, caption: str) -> str:
    return (
        f'<figure><img src="{esc(uri)}" alt="{esc(caption)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def bin_labels(baseline: Mapping[str, Any], live: drift.LiveFeature) -> list[str]:
    """Names of the bins of :func:`drift.expected_shares`, in its order."""
    if baseline.get("type") == "numeric":
        edges = [float(e) for e in baseline.get("edges", ())]
        inner = [f"{a:.4g} to {b:.4g}" for a, b in itertools.pairwise(edges)]
        return [f"< {edges[0]:.4g}", *inner, f"> {edges[-1]:.4g}"] if edges else []
    known = sorted(baseline.get("frequencies", {}))
    return [*known, *sorted(set(live.categories) - set(known))]


def drift_charts(
    features: Mapping[str, tuple[Mapping[str, Any], drift.LiveFeature]],
    results: Sequence[drift.FeatureDrift],
    prediction_prefix: str,
) -> dict[str, Chart]:
    """The bars to draw: every drifting feature and every prediction feature with rows."""
    charts: dict[str, Chart] = {}
    for result in results:
        wanted = result.status == "drift" or (
            result.feature.startswith(prediction_prefix) and result.n > 0
        )
        if wanted and result.feature in features:
            baseline, live = features[result.feature]
            expected, actual = drift.expected_shares(baseline, live)
            labels = bin_labels(baseline, live)
            charts[result.feature] = (labels, expected.tolist(), actual.tolist())
    return charts


def render_drift_report(report: Mapping[str, Any], charts: Mapping[str, Chart]) -> str:
    """The drift report document of one model version as an HTML page."""
    title = f"Drift report: {report.get('model_id')}@{report.get('version')}"
    flagged = bool(report.get("flagged"))
    summary = _summary(
        [
            ("Model", esc(report.get("model_id"))),
            ("Version", esc(report.get("version"))),
            (
                "Window (UTC hours)",
                f"{esc(report.get('window_start'))} to {esc(report.get('window_end'))}",
            ),
            ("Rows", number(report.get("rows"), "d")),
            ("Served", number(report.get("served"), "d")),
            ("Prediction drift score", number(report.get("prediction_drift_score"))),
            (
                "Flagged",
                f'<span class="bad">yes (PSI above {drift.PSI_FLAG})</span>'
                if flagged
                else '<span class="good">no</span>',
            ),
            ("Created", esc(report.get("created_at"))),
        ]
    )
    features = [f for f in report.get("features", []) if isinstance(f, Mapping)]
    rows = (
        (
            "drift" if f.get("status") == "drift" else "",
            [
                f"<td>{esc(f.get('feature'))}</td>",
                f"<td>{esc(f.get('kind'))}</td>",
                f'<td class="num">{number(f.get("n"), "d")}</td>',
                f'<td class="num">{number(f.get("psi"))}</td>',
                f'<td class="num">{number(f.get("js_distance"))}</td>',
                f"<td>{esc(f.get('test')) or '&mdash;'}</td>",
                f'<td class="num">{number(f.get("p_value"), ".3g")}</td>',
                f'<td class="num">{number(f.get("p_adjusted"), ".3g")}</td>',
                f"<td>{esc(f.get('status'))}</td>",
            ],
        )
        for f in features
    )
    table = _table(
        ["Feature", "Kind", "Rows", "PSI", "JS", "Test", "p", "Adjusted p", "Status"], rows
    )
    drifting = [str(name) for name in report.get("drifting", [])]
    figures = [
        _figure(report_charts.shares_chart(name, *charts[name]), f"{name}: baseline vs live")
        for name in [*drifting, *sorted(set(charts) - set(drifting))]
        if name in charts
    ]
    body = [
        summary,
        "<h2>Features</h2>",
        f"<p>Drifting: {esc(', '.join(drifting)) or 'none'}. A feature drifts when its "
        f"Benjamini-Hochberg adjusted p is below 0.05 and its PSI above {drift.PSI_FLAG}.</p>",
        table,
        "<h2>Baseline and live shares</h2>",
        "\n".join(figures) or "<p>No drifting feature and no prediction with rows.</p>",
    ]
    return _page(title, body)


def _outcome(passed: Any) -> tuple[str, str]:
    if passed is True:
        return "pass", "pass"
    if passed is False:
        return "fail", "fail"
    return "na", "not applicable"


def _first_detail(details: Any) -> str:
    if not isinstance(details, list) or not details:
        return ""
    first = details[0]
    text = (
        str(first["reason"])
        if isinstance(first, Mapping) and "reason" in first
        else json.dumps(first, sort_keys=True, default=str)
    )
    text = text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 3] + "..."
    more = f" (+{len(details) - 1} more)" if len(details) > 1 else ""
    return esc(text + more)


def render_compliance_report(scan: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> str:
    """A stored compliance scan as an HTML page, with its rules over the given history
    (newest first, as :func:`common.monitoring.compliance.scan.history` returns it)."""
    compliant = scan.get("status") == "compliant"
    summary = _summary(
        [
            ("Scan", esc(scan.get("scan_id"))),
            ("Created", esc(scan.get("created_at"))),
            ("Score", number(scan.get("score"), ".1f")),
            (
                "Status",
                f'<span class="{"good" if compliant else "bad"}">{esc(scan.get("status"))}</span>',
            ),
            (
                "Passed / failed / not applicable",
                " / ".join(
                    esc(len(scan.get(k, []))) for k in ("passed", "failed", "not_applicable")
                ),
            ),
        ]
    )
    results = [r for r in scan.get("results", []) if isinstance(r, Mapping)]
    rows = []
    for r in results:
        cls, outcome = _outcome(r.get("passed"))
        rows.append(
            (
                f"rule {cls}",
                [
                    f"<td>{esc(r.get('rule_id'))}</td>",
                    f"<td>{esc(r.get('name'))}</td>",
                    f"<td>{esc(r.get('severity'))}</td>",
                    f"<td>{esc(outcome)}</td>",
                    f"<td>{_first_detail(r.get('details'))}</td>",
                    f"<td>{esc(r.get('remediation'))}</td>",
                ],
            )
        )
    table = _table(["Rule", "Name", "Severity", "Result", "Details", "Remediation"], rows)
    recommendations = [
        f"<li><b>{esc(r.get('rule_id'))}</b> ({esc(r.get('severity'))}): "
        f"{esc(r.get('remediation'))}</li>"
        for r in scan.get("recommendations", [])
        if isinstance(r, Mapping)
    ]
    scans = list(history) or [scan]
    chart = report_charts.history_chart(scans, [str(r.get("rule_id")) for r in results])
    body = [
        summary,
        "<h2>Rules</h2>",
        table,
        "<h2>Recommendations</h2>",
        f"<ol>{''.join(recommendations)}</ol>" if recommendations else "<p>None.</p>",
        f"<h2>History (last {len(scans)} scans)</h2>",
        _figure(chart, "score and rule results per scan, oldest first"),
    ]
    return _page(f"Compliance report: {scan.get('scan_id')}", body)


def report_key(kind: ReportKind, name: str) -> str:
    return f"reports/{kind}/{name}.html"


def store_report(artifacts: ArtifactStore, kind: ReportKind, name: str, html: str) -> str:
    """Store the page at ``reports/<kind>/<name>.html``, replacing any earlier one."""
    if kind not in KINDS:
        raise ValueError(f"unknown report kind {kind!r}")
    key = report_key(kind, name)
    artifacts.put(key, html.encode("utf-8"), overwrite=True)
    return key
