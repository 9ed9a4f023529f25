"""The pieces every HTML report is made of: one stylesheet, escaping, a page, a summary
list, a table and a figure. Pages are self-contained (inline CSS, PNG data URIs, no
JavaScript), so they are served under ``default-src 'none'; img-src data:;
style-src 'unsafe-inline'``; every value from stored data goes through :func:`esc`.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any, Literal

ReportKind = Literal["drift", "compliance", "shadow"]
KINDS: tuple[ReportKind, ...] = ("drift", "compliance", "shadow")


def report_key(kind: ReportKind, name: str) -> str:
    """Where a report page is stored: ``reports/<kind>/<name>.html``."""
    return f"reports/{kind}/{name}.html"


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
h1,td,th,dd,li{overflow-wrap:anywhere;word-break:break-word}
table{border-collapse:collapse;font-size:.9em;max-width:100%}
table.rules{table-layout:fixed;width:100%}
.rules th:nth-child(1),.rules th:nth-child(4){width:9%}.rules th:nth-child(2){width:11%}
.rules th:nth-child(3){width:7%}.rules th:nth-child(5){width:40%}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.drift td,tr.fail td{background:#fdecea}tr.pass td{background:#eafaf1}
tr.na td{background:#f6f6f6;color:#555}.bad{color:#c0392b;font-weight:bold}.good{color:#1e8449}
dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.2em 1em}dt{font-weight:bold}
figure{display:inline-block;margin:.5em 1em .5em 0}figcaption{font-size:.85em;color:#555}
img{max-width:100%}
ul.entries{list-style:none;margin:0;padding:0}
li.entry{margin:0 0 .4em;padding:.2em .4em;border-left:4px solid #ccc;background:#fff}
li.entry.pass{border-color:#1e8449}li.entry.fail{border-color:#c0392b}
li.entry.na{border-left-style:dashed;border-color:#999;color:#555}li.entry.more{font-style:italic}
.status{display:inline-block;padding:0 .4em;border-radius:3px;font-weight:bold;font-size:.85em}
.status.pass{background:#d5f5e3;color:#145a32}.status.fail{background:#f5b7b1;color:#78281f}
.status.na{background:#e5e5e5;color:#444;border:1px dashed #888}
.counts{display:block;font-size:.85em;color:#555;margin-top:.3em}
.field{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def number(value: Any, spec: str = ".4f") -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "&mdash;" if value is None else esc(value)
    return esc(format(value, spec))


def page(title: str, body: Iterable[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n"
        f"<body><h1>{esc(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def summary_list(items: Sequence[tuple[str, str]]) -> str:
    """A definition list; the values are HTML already."""
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def table(headers: Sequence[str], rows: Iterable[tuple[str, Sequence[str]]], cls: str = "") -> str:
    """A table of (row class, cells); the cells are HTML already."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(f'<tr class="{esc(c)}">' + "".join(cells) + "</tr>\n" for c, cells in rows)
    opening = f'<table class="{esc(cls)}">' if cls else "<table>"
    return f"{opening}<thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"


def figure(uri: str, caption: str) -> str:
    return (
        f'<figure><img src="{esc(uri)}" alt="{esc(caption)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )
