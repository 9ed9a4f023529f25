"""The charts of the HTML reports (``common/monitoring/reports.py``), drawn with matplotlib as PNGs.

Figures are built with the object API (``Figure`` + ``FigureCanvasAgg``): no pyplot, no
global state, safe in threads. matplotlib is imported inside each function because it
costs start-up time that serving never needs.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BASELINE_COLOUR = "#7f8c8d"
LIVE_COLOUR = "#2874a6"
PASS, FAIL, NOT_APPLICABLE, NOT_RUN = 1.0, 0.0, 0.5, float("nan")


def plain(text: str) -> str:
    """Text that matplotlib draws as written: ``$`` would otherwise start mathtext."""
    return text.replace("$", r"\$")


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=90, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_data_uri(figure: Figure) -> str:
    """The figure as a ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def shares_chart(
    feature: str, labels: Sequence[str], baseline: Sequence[float], live: Sequence[float]
) -> str:
    """Baseline against live shares per bin, side by side, as a PNG data URI."""
    import numpy as np

    if not len(labels) == len(baseline) == len(live):
        raise ValueError(f"{feature}: labels, baseline and live shares differ in length")
    figure = _figure(max(5.0, 0.45 * len(labels) + 2.0), 3.0)
    axes = figure.subplots()
    x = np.arange(len(labels))
    axes.bar(x - 0.2, [float(v) for v in baseline], 0.4, label="baseline", color=BASELINE_COLOUR)
    axes.bar(x + 0.2, [float(v) for v in live], 0.4, label="live", color=LIVE_COLOUR)
    axes.set_xticks(x, [plain(label) for label in labels], rotation=45, ha="right", fontsize=7)
    axes.set_ylabel("share of rows")
    axes.set_title(plain(feature), fontsize=10)
    axes.legend(fontsize=8)
    return png_data_uri(figure)


def _scan_label(scan: Mapping[str, Any]) -> str:
    created = str(scan.get("created_at", ""))
    return created[5:16].replace("T", " ") or str(scan.get("scan_id", ""))[:15]


def _status(result: Mapping[str, Any]) -> float:
    passed = result.get("passed")
    return PASS if passed is True else FAIL if passed is False else NOT_APPLICABLE


def history_chart(history: Sequence[Mapping[str, Any]], rule_ids: Sequence[str]) -> str:
    """Score over time above a rule x scan grid (green pass, red fail, grey not applicable,
    blank not run), oldest scan first, as a PNG data URI."""
    import numpy as np
    from matplotlib.colors import ListedColormap

    scans = list(reversed(history))
    rules = list(dict.fromkeys([*rule_ids, *(_rules_of(scans))]))
    grid = np.full((len(rules), len(scans)), NOT_RUN)
    for column, scan in enumerate(scans):
        for result in scan.get("results", []):
            if isinstance(result, Mapping) and result.get("rule_id") in rules:
                grid[rules.index(result["rule_id"]), column] = _status(result)
    labels = [plain(_scan_label(scan)) for scan in scans]
    figure = _figure(max(6.0, 0.3 * len(scans) + 3.0), 2.4 + 0.22 * len(rules))
    score_axes, grid_axes = figure.subplots(
        2, 1, sharex=True, height_ratios=[2.0, max(1.0, 0.2 * len(rules))]
    )
    x = np.arange(len(scans))
    scores = [np.nan if s.get("score") is None else float(s["score"]) for s in scans]
    score_axes.plot(x, scores, marker="o", color=LIVE_COLOUR)
    score_axes.set_ylim(0, 105)
    score_axes.set_ylabel("score")
    score_axes.set_title("Compliance over time", fontsize=10)
    colours = ListedColormap(["#c0392b", "#bdc3c7", "#27ae60"]).with_extremes(bad="#ffffff")
    grid_axes.imshow(np.ma.masked_invalid(grid), cmap=colours, vmin=0.0, vmax=1.0, aspect="auto")
    grid_axes.set_yticks(np.arange(len(rules)), [plain(r) for r in rules], fontsize=7)
    grid_axes.set_xticks(x, labels, rotation=90, fontsize=7)
    return png_data_uri(figure)


def _rules_of(scans: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        str(result["rule_id"])
        for scan in scans
        for result in scan.get("results", [])
        if isinstance(result, Mapping) and "rule_id" in result
    ]


def interval_bars(
    names: Sequence[str],
    values: Sequence[float],
    intervals: Sequence[Sequence[float] | None],
    ylabel: str,
) -> str:
    """One bar per name with its interval as an error bar, as a PNG data URI."""
    figure = _figure(max(5.0, 0.5 * len(names) + 2.0), 3.0)
    axes = figure.subplots()
    low = [v - (i[0] if i else v) for v, i in zip(values, intervals, strict=True)]
    high = [(i[1] if i else v) - v for v, i in zip(values, intervals, strict=True)]
    axes.bar(range(len(names)), values, yerr=[low, high], color=LIVE_COLOUR, capsize=3)
    axes.set_xticks(
        range(len(names)), [plain(n) for n in names], rotation=45, ha="right", fontsize=7
    )
    axes.set_ylabel(ylabel)
    return png_data_uri(figure)
