"""Finance sentiment of a text: a lexicon baseline and a trained classifier, one kind.

Both versions share one tokenizer and one finance lexicon, so the tone proportions
(negative, positive, uncertainty, litigious share of the words) mean the same in both;
they differ in where the score and label come from:

- ``ipo-sentiment-lexicon/1`` (JSON): ``score = (P - N) / (P + N + 1)`` from the counts of
  positive and negative words, labelled positive at ``score >= LABEL_THRESHOLD`` and
  negative at ``score <= -LABEL_THRESHOLD``. Loading it imports neither scikit-learn nor
  joblib.
- a TF-IDF + logistic regression classifier: ``score = P(positive) - P(negative)`` and
  the label is the most probable class. The builder writes it as data,
  ``ipo-sentiment-classifier/2`` (JSON, common/models/sentiment_schema.py), which loads
  without scikit-learn or joblib too; a user's own pickled pipeline,
  ``ipo-sentiment-classifier/1`` (joblib), is still served, and only that path imports
  scikit-learn.

docs/models/sentiment.md documents the tokenizer, the negation rule and the artifacts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Literal, get_args

import numpy as np
from pydantic import Field

from common.core.errors import IntegrityError
from common.core.validation import StrictModel
from common.models.artifacts import json_or_joblib, validated
from common.models.base import ModelRuntime
from common.models.sentiment_classifier import PROBES, Classifier
from common.models.sentiment_schema import (
    CLASSIFIER_FORMAT,
    LABELS,
    LEXICON_FORMAT,
    PIPELINE_FORMAT,
    TONES,
    ClassifierArtifact,
    LexiconArtifact,
)

MAX_TEXT_CHARS = 20_000
"""A prospectus section or a long news story; a whole prospectus is many passages."""
LABEL_THRESHOLD = 0.2
"""Lexicon version: |score| at which a text stops being neutral (2 positive : 1 negative)."""

NEGATION_WINDOW = 3
NEGATED_PREFIX = "not_"
NEGATORS = frozenset(
    {"not", "no", "never", "none", "neither", "nor", "nobody", "nothing", "cannot"}
)
"""Plus every contraction ending in n't (don't, isn't, won't, can't)."""
SCOPE_ENDERS = frozenset({"but", "however", "only"})
"""Words that close a negation early: "not only profitable" is not a negation."""

_WORD = r"[^\W\d_]"
_TOKEN = re.compile(rf"{_WORD}+(?:'{_WORD}+)*|[.;!?]")
"""Words (letters, with inner apostrophes) and the punctuation that ends a clause."""
_BOUNDARIES = frozenset(".;!?")

Source = Literal["prospectus", "news", "filing", "other"]
SOURCES: tuple[str, ...] = get_args(Source)


def tokenize(text: str) -> list[str]:
    """Lowercased words, each word in a negation's scope prefixed with ``not_``.

    A negator (``NEGATORS`` or any ``...n't``) puts the next ``NEGATION_WINDOW`` words in
    its scope; punctuation ``. ; ! ?`` and ``SCOPE_ENDERS`` close the scope early. Digits,
    symbols and markup are not words; "company's" is "company". The classifier artifacts
    refer to this function by name, so its name and behaviour are part of their format.
    """
    lowered = text.lower().replace("\u2019", "'")
    raw: list[str] = _TOKEN.findall(lowered)
    if "'" in lowered:
        raw = [_unquote(t) if "'" in t else t for t in raw]
    if "n't" not in lowered and NEGATORS.isdisjoint(raw):
        return [t for t in raw if t not in _BOUNDARIES]  # the common case: no negation
    out: list[str] = []
    scope = 0
    for token in raw:
        if token in _BOUNDARIES:
            scope = 0
        elif token in NEGATORS or token.endswith("n't"):
            out.append(token)
            scope = NEGATION_WINDOW
        elif token in SCOPE_ENDERS:
            out.append(token)
            scope = 0
        elif scope:
            out.append(NEGATED_PREFIX + token)
            scope -= 1
        else:
            out.append(token)
    return out


def _unquote(token: str) -> str:
    """Keep "didn't" whole; "company's" and "o'brien" keep the part before the apostrophe."""
    return token if token.endswith("n't") else token.split("'", 1)[0]


class SentimentInstance(StrictModel):
    """One text to score: an excerpt of a prospectus or filing, or a news story."""

    text: str = Field(
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        description=(
            f"The text, at most {MAX_TEXT_CHARS:,} characters; split longer documents into "
            "passages. English; scored as plain text (markup is not interpreted)."
        ),
    )
    source: Source | None = Field(
        default=None,
        description="Where the text comes from; recorded for monitoring, not used in scoring.",
    )


class Lexicon:
    """Token -> tone counts, compiled once per artifact so a text costs one dict pass.

    In a negation's scope a positive word counts as negative ("not profitable") and a
    negative word counts as neither ("no impairment"); uncertainty and litigious words
    count whether negated or not.
    """

    def __init__(self, artifact: LexiconArtifact) -> None:
        cats = artifact.categories
        sets = [set(getattr(cats, name)) for name in TONES]
        negative, positive, uncertainty, litigious = sets
        table: dict[str, tuple[int, int, int, int]] = {}
        for word in set().union(*sets):
            neg, pos = int(word in negative), int(word in positive)
            unc, lit = int(word in uncertainty), int(word in litigious)
            table[word] = (neg, pos, unc, lit)
            table[NEGATED_PREFIX + word] = (pos, 0, unc, lit)
        self._table = table

    def counts(self, tokens: Iterable[str]) -> tuple[int, int, int, int]:
        """Negative, positive, uncertainty and litigious word counts, in TONES order."""
        neg = pos = unc = lit = 0
        get = self._table.get
        for token in tokens:
            hit = get(token)
            if hit is not None:
                neg += hit[0]
                pos += hit[1]
                unc += hit[2]
                lit += hit[3]
        return neg, pos, unc, lit


def lexicon_scores(counts: np.ndarray) -> np.ndarray:
    """``(P - N) / (P + N + 1)``: in [-1, 1], and one polar word alone gives only +-0.5."""
    neg, pos = counts[:, 0], counts[:, 1]
    scores: np.ndarray = (pos - neg) / (pos + neg + 1.0)
    return scores


def threshold_labels(scores: np.ndarray) -> list[str]:
    return [
        LABELS[2] if s >= LABEL_THRESHOLD else LABELS[0] if s <= -LABEL_THRESHOLD else LABELS[1]
        for s in scores.tolist()
    ]


class SentimentRuntime(ModelRuntime):
    kind: ClassVar[str] = "sentiment"
    classifier: ClassVar[bool] = True
    instance_schema: ClassVar[type[StrictModel]] = SentimentInstance

    def __init__(self, lexicon: LexiconArtifact, classifier: Classifier | None = None) -> None:
        self._lexicon = Lexicon(lexicon)
        self._classifier = classifier

    @property
    def variant(self) -> str:
        return "lexicon" if self._classifier is None else "classifier"

    @classmethod
    def from_artifact(cls, data: bytes) -> SentimentRuntime:
        payload, is_json = json_or_joblib(data)
        fmt = payload.get("format") if isinstance(payload, dict) else None
        if fmt == LEXICON_FORMAT:
            return cls(_lexicon_from(payload))
        if fmt == CLASSIFIER_FORMAT and is_json:
            document = validated(ClassifierArtifact, payload, f"{CLASSIFIER_FORMAT} classifier")
            return cls(document.lexicon, Classifier.from_document(document))
        if fmt == PIPELINE_FORMAT and not is_json and isinstance(payload, dict):
            if set(payload) != {"format", "pipeline", "lexicon"}:
                raise IntegrityError(f"{PIPELINE_FORMAT} artifact has keys {sorted(payload)}")
            lexicon = _lexicon_from(payload["lexicon"])
            return cls(lexicon, Classifier.from_pipeline(payload["pipeline"], tokenize))
        raise IntegrityError(
            f"artifact is not a sentiment lexicon ({LEXICON_FORMAT}) or classifier "
            f"({CLASSIFIER_FORMAT} as JSON, {PIPELINE_FORMAT} as joblib)"
        )

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """The classifier's class probabilities in LABELS order, one row per text."""
        if self._classifier is None:
            raise TypeError("the lexicon version states no probabilities")
        return self._classifier.proba([tokenize(t) for t in texts])

    def predict(self, instances: Sequence[Any], parameters: Any) -> list[dict[str, Any]]:
        token_lists = [tokenize(x.text) for x in instances]
        counts = np.array(
            [self._lexicon.counts(tokens) for tokens in token_lists], dtype=np.float64
        ).reshape(len(token_lists), 4)
        sizes = np.array([len(tokens) for tokens in token_lists], dtype=np.float64)
        tone = counts / np.maximum(sizes, 1.0)[:, None]
        proba: np.ndarray | None = None
        if self._classifier is None:
            scores = lexicon_scores(counts)
            labels = threshold_labels(scores)
        else:
            proba = self._classifier.proba(token_lists)
            scores = proba[:, 2] - proba[:, 0]
            labels = [LABELS[i] for i in proba.argmax(axis=1).tolist()]
        outputs = []
        for i, (score, label) in enumerate(zip(scores.tolist(), labels, strict=True)):
            out: dict[str, Any] = {
                "score": round(score, 6),
                "label": label,
                "tone": {name: round(float(v), 6) for name, v in zip(TONES, tone[i], strict=True)},
                "tokens": int(sizes[i]),
            }
            if proba is not None:
                out["probabilities"] = {
                    name: round(float(p), 6) for name, p in zip(LABELS, proba[i], strict=True)
                }
            outputs.append(out)
        return outputs


def _lexicon_from(payload: Any) -> LexiconArtifact:
    return validated(LexiconArtifact, payload, "sentiment lexicon")


__all__ = [
    "CLASSIFIER_FORMAT",
    "LABELS",
    "LEXICON_FORMAT",
    "PIPELINE_FORMAT",
    "PROBES",
    "TONES",
    "Classifier",
    "LexiconArtifact",
    "SentimentInstance",
    "SentimentRuntime",
    "tokenize",
]
