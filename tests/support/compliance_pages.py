"""A real compliance scan whose report shows what users meet: full SHA-256 strings, a rule
that passed with a not-applicable entry beside the passing one, and a failed rule; and a
reader that gives back each rule row of the page with its entries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from common.backends.base import rfc3339
from common.monitoring.compliance.checks import DRIFT_REPORTS
from common.monitoring.compliance.scan import ComplianceScanRequest, compliance_scan
from tests.support.fixtures import SEED, Stack, embedded_stack, register_risk
from tools.training import sentiment_builder
from tools.training.base import BuiltModel, register_built


@cache
def sentiment_lexicon() -> BuiltModel:
    """The promoted sentiment version: a classifier of free text, so FAIRNESS_001 does not
    apply to it."""
    return next(b for b in sentiment_builder.build(SEED, samples=900) if b.promote)


def risk_and_sentiment_scan(tmp_path: Path) -> tuple[Stack, dict[str, Any]]:
    """Risk and sentiment in production, a drift report for risk only (MON_001 fails on
    sentiment), one scan."""
    stack = embedded_stack(tmp_path)
    register_risk(stack.lifecycle)
    register_built(stack.lifecycle, sentiment_lexicon(), version="1.0.0", created_by="tests")
    now = datetime.now(UTC)
    report = {"model_id": "risk", "version": "1.0.0", "created_at": rfc3339(now)}
    stack.services.backends.documents.set(DRIFT_REPORTS, "risk@1.0.0@now", report)
    return stack, compliance_scan(stack.services, ComplianceScanRequest(), now=now)


def report_page(stack: Stack, result: dict[str, Any]) -> str:
    return stack.services.backends.artifacts.get(result["report_html"]).decode("utf-8")


@dataclass
class RuleRow:
    rule_id: str
    classes: list[str]
    result: str = ""
    entries: list[tuple[str, str]] = field(default_factory=list)
    """(the entry's status class: pass, fail, na or more; the entry's text)."""


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[RuleRow] = []
        self.summary: dict[str, str] = {}
        self._cell = -1
        self._text: list[str] | None = None
        self._entry: str | None = None
        self._dt = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "tr" and "rule" in classes:
            self.rows.append(RuleRow("", classes))
            self._cell = -1
        elif tag == "td" and self.rows and self._entry is None:
            self._cell += 1
            self._text = []
        elif tag == "li" and "entry" in classes:
            self._entry = next(c for c in classes if c != "entry")
            self._text = []
        elif tag in ("dt", "dd"):
            self._text = []
        elif tag == "br" and self._text is not None:
            self._text.append(" ")

    def handle_endtag(self, tag: str) -> None:
        text = " ".join("".join(self._text or []).split())
        if tag == "li" and self._entry is not None:
            self.rows[-1].entries.append((self._entry, text))
            self._entry, self._text = None, []
        elif tag == "td" and self.rows and self._entry is None:
            if self._cell == 0:
                self.rows[-1].rule_id = text
            elif self._cell == 3:
                self.rows[-1].result = text
            self._text = None
        elif tag == "dt":
            self._dt = text
        elif tag == "dd":
            self.summary[self._dt] = text

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def read_report(page: str) -> tuple[dict[str, str], dict[str, RuleRow]]:
    """The page's summary (term: text) and its rule rows by rule id."""
    reader = _Reader()
    reader.feed(page)
    return reader.summary, {row.rule_id: row for row in reader.rows}
