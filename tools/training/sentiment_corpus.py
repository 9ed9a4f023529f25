"""A seeded synthetic corpus of labelled finance texts, and the user's CSV alternative.

No labelled finance corpus on PyPI is licence-clean for a commercial product, so the
classifier learns from texts assembled from templates and vocabulary written for this
project (docs/models/sentiment.md, "The synthetic corpus"). Each text has one focal
sentence whose polarity was fixed when the template was written, plus neutral context
sentences; labels never come from the lexicon. Metrics on these texts say how well a
model recovers the templates' polarity, not how it does on real prospectuses or news.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.models.sentiment import LABELS, SOURCES

LABEL_NOISE = 0.03
"""Share of texts whose label is replaced by another at random: annotators disagree too."""
SOURCE_SHARES = (0.35, 0.35, 0.2, 0.1)
CONTEXT_SENTENCES = (0, 1, 2)
"""How many neutral sentences surround the focal one (drawn uniformly)."""

COMPANIES = (
    "Northwind Analytics", "Halvard Biosciences", "Corvel Grid", "Marlow Foods",
    "Quillon Semiconductors", "Tessaly Health", "Brightwater Logistics", "Oakhaven Software",
    "Pellucid Payments", "Ardent Robotics", "Saltmarsh Energy", "Veridane Insurance",
    "Kestrel Mobility", "Juniper Row Apparel", "Orrin Materials", "Calloway Media",
)  # fmt: skip
METRICS = (
    "revenue", "net revenue", "product revenue", "gross margin", "operating income",
    "adjusted EBITDA", "free cash flow", "subscription revenue", "services revenue",
    "like-for-like revenue", "net interest income", "operating cash flow",
    "annual recurring revenue", "the order backlog", "average revenue per user",
)  # fmt: skip
PERIODS = (
    "in the third quarter", "for fiscal 2025", "in the six months ended June 30",
    "year over year", "compared with the prior year", "in the first half",
    "over the last twelve months", "in the quarter", "during the period",
)  # fmt: skip
CITIES = ("Austin", "Boston", "Denver", "Toronto", "Dublin", "Singapore", "Seattle", "Atlanta")

COSTS = (
    "operating expenses", "costs", "the net loss", "customer churn", "net debt",
    "the cost of revenue", "bad debt expense", "cash burn",
)  # fmt: skip
"""Subjects whose rise is bad news: "costs fell" is positive, "the net loss widened" negative."""

METRIC_PHRASES: dict[str, tuple[str, ...]] = {
    "positive": (
        "rose {pct}% {period}", "increased {pct}% {period}", "climbed to ${amt} million {period}",
        "came in ahead of guidance {period}", "beat consensus estimates {period}",
        "widened by {bps} basis points {period}", "reached an all-time high {period}",
        "grew faster than the market {period}", "more than doubled {period}",
        "topped the company's own forecast {period}", "jumped {pct}% {period}",
        "hit a record {period}", "accelerated for a fourth straight quarter",
        "improved sharply {period}", "surged on demand from new customers",
        "recovered strongly {period}", "returned to growth {period}",
    ),
    "negative": (
        "fell {pct}% {period}", "dropped {pct}% {period}", "slid to ${amt} million {period}",
        "came in below guidance {period}", "missed consensus estimates {period}",
        "narrowed by {bps} basis points {period}", "hit a multi-year low {period}",
        "shrank for a third straight quarter", "was cut in half {period}",
        "lagged the market {period}", "turned negative {period}", "slumped {pct}% {period}",
        "deteriorated as customers delayed orders", "declined sharply {period}",
        "was hurt by pricing pressure {period}", "was hit by higher input costs {period}",
        "weakened as orders dried up {period}",
    ),
    "neutral": (
        "was ${amt} million {period}", "is reported in US dollars",
        "is presented on a non-GAAP basis", "was broadly unchanged {period}",
        "was in line with the prior year", "is described in Note {n} to the financial statements",
        "is recognised when control of the goods passes to the customer",
        "is reconciled to net income in the appendix", "will be reported on a new segment basis",
        "includes the results of an acquired business from its closing date",
    ),
}  # fmt: skip

COST_PHRASES: dict[str, tuple[str, ...]] = {
    "positive": (
        "fell {pct}% {period}", "narrowed {period}", "was cut by a third {period}",
        "declined steadily {period}", "dropped to ${amt} million {period}",
        "came down faster than planned", "shrank for a fourth straight quarter",
    ),
    "negative": (
        "rose {pct}% {period}", "widened {period}", "doubled {period}",
        "climbed to ${amt} million {period}", "jumped {pct}% {period}",
        "grew faster than revenue {period}", "reached a record {period}",
    ),
    "neutral": (
        "was ${amt} million {period}", "is allocated to segments by headcount",
        "is defined in the glossary", "was broadly unchanged {period}",
        "is shown before stock-based compensation",
    ),
}  # fmt: skip

COMPANY_PHRASES: dict[str, tuple[str, ...]] = {
    "positive": (
        "{company} priced its IPO above the marketed range",
        "the offering by {company} was oversubscribed several times",
        "{company} raised its full-year outlook", "{company} returned to profit {period}",
        "{company} won a multi-year contract with a large customer",
        "shares of {company} opened {pct}% above the offer price",
        "{company} paid down its term loan ahead of schedule",
        "{company} reported record bookings {period}", "analysts upgraded {company} to buy",
        "{company} generated positive cash flow for the first time",
        "{company} gained market share against larger rivals",
        "demand for the products of {company} remains strong",
        "{company} did not record any impairment charges {period}",
        "{company} has not lost a major customer since its founding",
        "customer churn at {company} fell to a record low",
        "{company} posted net income of ${amt} million, up from a loss a year earlier",
        "{company} refinanced its debt at a lower interest rate",
        "{company} raised its dividend by {pct}%",
        "{company} secured regulatory approval for its lead product",
        "{company} settled the patent dispute on favourable terms",
        "the court dismissed the lawsuit against {company}",
        "{company} signed the largest contract in its history",
        "{company} beat earnings expectations for the fifth quarter in a row",
        "rating agencies upgraded the credit rating of {company}",
        "{company} expects to be profitable next year",
        "shares of {company} rallied after the results",
        "{company} ended the year with no debt and ${amt} million in cash",
    ),
    "negative": (
        "{company} priced its IPO below the marketed range",
        "{company} postponed its listing, citing market conditions",
        "{company} cut its full-year outlook", "{company} swung to a net loss {period}",
        "{company} lost its largest customer",
        "shares of {company} closed {pct}% below the offer price on their first day",
        "{company} breached a covenant on its credit facility",
        "{company} disclosed a material weakness in internal control over financial reporting",
        "the auditor raised substantial doubt about the ability of {company} to continue as a "
        "going concern",
        "{company} announced layoffs affecting {n}00 employees",
        "regulators fined {company} ${amt} million",
        "{company} did not meet its own guidance {period}",
        "{company} has never been profitable and may not become profitable",
        "{company} no longer expects to reach break-even this year",
        "{company} wrote down the value of its inventory",
        "{company} reported a net loss of ${amt} million {period}",
        "{company} incurred heavy losses on its loan book",
        "{company} warned that earnings would fall short of expectations",
        "{company} defaulted on an interest payment",
        "{company} faces a liquidity shortfall",
        "rating agencies downgraded {company} to junk",
        "{company} took an impairment charge of ${amt} million",
        "a class action lawsuit alleges that {company} misled investors",
        "{company} recalled a product after safety complaints",
        "{company} struggled to retain customers {period}",
        "{company} expects to remain unprofitable for the foreseeable future",
        "{company} suspended its dividend",
        "shares of {company} plunged after the results",
    ),
    "neutral": (
        "{company} filed a registration statement on Form S-1",
        "{company} intends to list its shares on the Nasdaq",
        "{company} is headquartered in {city}", "{company} was founded in {year}",
        "{company} will hold its annual meeting in {city}",
        "the offering by {company} consists of {n} million shares of common stock",
        "{company} appointed a new chief financial officer",
        "{company} will use the proceeds for general corporate purposes",
        "the fiscal year of {company} ends on December 31",
        "the underwriters have a 30-day option to purchase additional shares of {company}",
        "{company} is party to legal proceedings arising in the ordinary course of business",
        "estimates and assumptions used by {company} are described in Note {n}",
        "{company} may amend the terms of the offering before it is priced",
        "{company} reports its results in two segments",
        "the board of {company} has {n} members",
        "{company} will report results for the quarter in {city}",
        "the lock-up period for shares of {company} lasts 180 days",
        "{company} has two classes of common stock",
        "{company} leases its headquarters in {city}",
        "{company} competes with several larger companies",
        "{company} had {n},000 employees at the end of the year",
        "the financial statements of {company} are audited by an independent accounting firm",
    ),
}  # fmt: skip

CONTRASTS = ("although {minor}, {main}", "{minor}, but {main}", "while {minor}, {main}")
"""Mixed sentences: the main clause carries the label, as an analyst would read it."""


@dataclass(frozen=True)
class SentimentCorpus:
    rows: list[dict[str, Any]]
    """Instances as the API takes them: ``{"text": ..., "source": ...}``."""
    labels: list[str]


def generate(n: int, seed: int) -> SentimentCorpus:
    """``n`` texts, balanced over LABELS, from one generator seeded by ``seed``."""
    if n < 30:
        raise ValueError("need at least 30 texts")
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    labels: list[str] = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        sentences = [_focal(rng, label)]
        for _ in range(int(rng.choice(CONTEXT_SENTENCES))):
            position = int(rng.integers(0, len(sentences) + 1))
            sentences.insert(position, _clause(rng, "neutral"))
        text = " ".join(_sentence(s) for s in sentences)
        if rng.random() < LABEL_NOISE:
            label = str(rng.choice([other for other in LABELS if other != label]))
        rows.append({"text": text, "source": str(rng.choice(SOURCES, p=SOURCE_SHARES))})
        labels.append(label)
    order = rng.permutation(n)
    return SentimentCorpus(rows=[rows[i] for i in order], labels=[labels[i] for i in order])


def _focal(rng: np.random.Generator, label: str) -> str:
    """The sentence that carries the text's label; a quarter are mixed, for polar labels."""
    if label != "neutral" and rng.random() < 0.25:
        opposite = "negative" if label == "positive" else "positive"
        template = str(rng.choice(CONTRASTS))
        return template.format(minor=_clause(rng, opposite), main=_clause(rng, label))
    return _clause(rng, label)


def _clause(rng: np.random.Generator, label: str) -> str:
    kind = rng.random()
    if kind < 0.5:
        clause = str(rng.choice(COMPANY_PHRASES[label]))
    else:
        subjects, phrases = (METRICS, METRIC_PHRASES) if kind < 0.85 else (COSTS, COST_PHRASES)
        subject = str(rng.choice(subjects))
        if rng.random() < 0.5:
            subject = f"{_possessive(str(rng.choice(COMPANIES)))} {subject.removeprefix('the ')}"
        clause = f"{subject} {rng.choice(phrases[label])}"
    return clause.format(
        company=rng.choice(COMPANIES),
        period=rng.choice(PERIODS),
        city=rng.choice(CITIES),
        pct=int(rng.integers(2, 60)),
        bps=int(rng.integers(1, 40)) * 10,
        amt=int(rng.integers(5, 900)),
        n=int(rng.integers(2, 15)),
        year=int(rng.integers(1950, 2022)),
    )


def _possessive(name: str) -> str:
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def _sentence(clause: str) -> str:
    return clause[0].upper() + clause[1:] + "."


def from_csv(path: Path) -> SentimentCorpus:
    """A user's labelled texts: columns ``text`` and ``label``, optionally ``source``.

    Each row is checked against the schema serving uses, so the model never learns from a
    text it would refuse to score; an error names the file, the row's line and the field.
    """
    from pydantic import ValidationError

    from common.models.sentiment import SentimentInstance

    rows: list[dict[str, Any]] = []
    labels: list[str] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        if columns not in ({"text", "label"}, {"text", "label", "source"}):
            raise ValueError(
                f"{path}: columns must be text,label[,source], got {reader.fieldnames}"
            )
        line = reader.line_num + 1
        for raw in reader:
            row: dict[str, Any] = {"text": raw["text"]}
            if raw.get("source"):
                row["source"] = raw["source"]
            try:
                SentimentInstance.model_validate(row)
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                raise ValueError(f"{path}:{line}: {first['loc'][0]}: {first['msg']}") from None
            if raw["label"] not in LABELS:
                raise ValueError(
                    f"{path}:{line}: label: {raw['label']!r} is not one of {list(LABELS)}"
                )
            rows.append(row)
            labels.append(raw["label"])
            line = reader.line_num + 1
    counts = {label: labels.count(label) for label in LABELS}
    if min(counts.values()) < 10:
        raise ValueError(f"{path}: need at least 10 texts of each label, found {counts}")
    return SentimentCorpus(rows=rows, labels=labels)
