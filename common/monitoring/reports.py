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

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from common.monitoring import charts as report_charts
from common.monitoring import drift
from common.monitoring import html as pages
from common.monitoring.html import KINDS, ReportKind, esc, number, report_key

if TYPE_CHECKING:
    from common.backends.base import ArtifactStore

Chart = tuple[list[str], list[float], list[float]]
"""Bin labels, baseline shares, live shares."""
DETAIL_CHARS = 300


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
    summary = pages.summary_list(
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
    table = pages.table(
        ["Feature", "Kind", "Rows", "PSI", "JS", "Test", "p", "Adjusted p", "Status"], rows
    )
    drifting = [str(name) for name in report.get("drifting", [])]
    figures = [
        pages.figure(report_charts.shares_chart(name, *charts[name]), f"{name}: baseline vs live")
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
    return pages.page(title, body)


OUTCOMES: dict[bool | None, tuple[str, str]] = {
    True: ("pass", "pass"),
    False: ("fail", "fail"),
    None: ("na", "not applicable"),
}
"""Class and words of a rule's or an entry's result: not applicable is never shown as pass."""


def _outcome(passed: Any) -> tuple[str, str]:
    return OUTCOMES[passed if isinstance(passed, bool) else None]


def _status(passed: Any) -> str:
    cls, words = _outcome(passed)
    return f'<span class="status {cls}">{esc(words)}</span>'


def _clip(text: str) -> str:
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 3] + "..."


def _value(value: Any) -> str:
    return _clip(value if isinstance(value, str) else json.dumps(value, default=str))


def _entries(details: Any) -> tuple[str, list[dict[str, Any]]]:
    """Every entry of a rule with its own status, reason and fields, and the entries that
    have a status (the count of those left unlisted by the scan is not an entry)."""
    listed = [d for d in details if isinstance(d, Mapping)] if isinstance(details, list) else []
    items, judged = [], []
    for entry in listed:
        reason = f" {esc(_clip(str(entry['reason'])))}" if "reason" in entry else ""
        if "truncated" in entry:
            items.append(f'<li class="entry more">{reason.strip()}</li>')
            continue
        judged.append(dict(entry))
        fields = "; ".join(
            f'<span class="field">{esc(k)}: {esc(_value(v))}</span>'
            for k, v in entry.items()
            if k not in ("passed", "reason")
        )
        cls = _outcome(entry.get("passed"))[0]
        body = _status(entry.get("passed")) + reason + (f"<br>{fields}" if fields else "")
        items.append(f'<li class="entry {cls}">{body}</li>')
    return (f'<ul class="entries">{"".join(items)}</ul>' if items else ""), judged


def _counts(entries: Sequence[Mapping[str, Any]]) -> list[int]:
    """Entries passed, failed and not applicable."""
    states = [e.get("passed") if isinstance(e.get("passed"), bool) else None for e in entries]
    return [states.count(True), states.count(False), states.count(None)]


def _count_text(counts: Sequence[int]) -> str:
    words = ("passed", "failed", "not applicable")
    return ", ".join(f"{n} {w}" for n, w in zip(counts, words, strict=True) if n)


def render_compliance_report(scan: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> str:
    """A stored compliance scan as an HTML page, with its rules over the given history
    (newest first, as :func:`common.monitoring.compliance.scan.history` returns it)."""
    compliant = scan.get("status") == "compliant"
    results = [r for r in scan.get("results", []) if isinstance(r, Mapping)]
    rows, everything = [], []
    for r in results:
        cls, _ = _outcome(r.get("passed"))
        entries, judged = _entries(r.get("details"))
        everything.extend(judged)
        counts = _count_text(_counts(judged))
        rows.append(
            (
                f"rule {cls}",
                [
                    f"<td>{esc(r.get('rule_id'))}</td>",
                    f"<td>{esc(r.get('name'))}</td>",
                    f"<td>{esc(r.get('severity'))}</td>",
                    f"<td>{_status(r.get('passed'))}"
                    + (f' <span class="counts">{esc(counts)}</span>' if counts else "")
                    + "</td>",
                    f"<td>{entries}</td>",
                    f"<td>{esc(r.get('remediation'))}</td>",
                ],
            )
        )
    summary = pages.summary_list(
        [
            ("Scan", esc(scan.get("scan_id"))),
            ("Created", esc(scan.get("created_at"))),
            ("Score", number(scan.get("score"), ".1f")),
            (
                "Status",
                f'<span class="{"good" if compliant else "bad"}">{esc(scan.get("status"))}</span>',
            ),
            (
                "Rules passed / failed / not applicable",
                " / ".join(
                    esc(len(scan.get(k, []))) for k in ("passed", "failed", "not_applicable")
                ),
            ),
            (
                "Entries passed / failed / not applicable",
                " / ".join(esc(n) for n in _counts(everything)),
            ),
        ]
    )
    table = pages.table(
        ["Rule", "Name", "Severity", "Result", "Entries", "Remediation"], rows, "rules"
    )
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
        pages.figure(chart, "score and rule results per scan, oldest first"),
    ]
    return pages.page(f"Compliance report: {scan.get('scan_id')}", body)


def store_report(artifacts: ArtifactStore, kind: ReportKind, name: str, html: str) -> str:
    """Store the page at ``reports/<kind>/<name>.html``, replacing any earlier one."""
    if kind not in KINDS:
        raise ValueError(f"unknown report kind {kind!r}")
    key = report_key(kind, name)
    artifacts.put(key, html.encode("utf-8"), overwrite=True)
    return key
