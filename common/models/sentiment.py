"""Finance sentiment of a text: a lexicon baseline and a trained classifier, one kind.

Both versions share one tokenizer and one finance lexicon, so the tone proportions
(negative, positive, uncertainty, litigious share of the words) mean the same in both;
they differ in where the score and label come from:

- ``ipo-sentiment-lexicon/1`` (JSON): ``score = (P - N) / (P + N + 1)`` from the counts of
  positive and negative words, labelled positive at ``score >= LABEL_THRESHOLD`` and
  negative at ``score <= -LABEL_THRESHOLD``. Loading it imports neither scikit-learn nor
  joblib.
- ``ipo-sentiment-classifier/1`` (joblib): a TF-IDF + logistic regression pipeline;
  ``score = P(positive) - P(negative)`` and the label is the most probable class.

docs/models/sentiment.md documents the tokenizer, the negation rule and both artifacts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, ClassVar, Literal, get_args

import numpy as np
from pydantic import Field, StringConstraints, ValidationError, model_validator

from common.core.errors import IntegrityError
from common.core.validation import StrictModel
from common.models.base import ModelRuntime, joblib_load

LEXICON_FORMAT = "ipo-sentiment-lexicon/1"
CLASSIFIER_FORMAT = "ipo-sentiment-classifier/1"
LABELS = ("negative", "neutral", "positive")
TONES = ("negative", "positive", "uncertainty", "litigious")

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


Word = Annotated[str, StringConstraints(pattern=r"^[a-z]+$")]


class Categories(StrictModel):
    negative: list[Word] = Field(min_length=1)
    positive: list[Word] = Field(min_length=1)
    uncertainty: list[Word] = Field(min_length=1)
    litigious: list[Word] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Categories:
        for name in TONES:
            words = getattr(self, name)
            if len(set(words)) != len(words):
                raise ValueError(f"category {name} lists a word twice")
        both = sorted(set(self.negative) & set(self.positive))
        if both:
            raise ValueError(f"words both negative and positive: {both[:5]}")
        return self


class LexiconArtifact(StrictModel):
    """The lexicon version's whole artifact, and the lexicon inside the classifier's."""

    format: Literal["ipo-sentiment-lexicon/1"]
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    provenance: str = Field(min_length=1)
    licence: str = Field(min_length=1)
    categories: Categories


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


class Classifier:
    """The fitted TF-IDF + logistic regression of a classifier artifact, applied directly.

    ``Pipeline.predict_proba`` spends ~2 ms per call in input checks and re-tokenizing;
    this computes the same numbers from the fitted arrays (``vocabulary_``, ``idf_``,
    ``coef_``, ``intercept_``) in a fraction of that, reusing the tokens the lexicon
    needed. A text's logits depend on that text alone and the softmax is one array
    operation over the batch, so a batch gives exactly the per-text results.
    ``from_pipeline`` refuses a pipeline this does not reproduce.
    """

    def __init__(self, vectorizer: Any, model: Any) -> None:
        self._vocabulary: dict[str, int] = dict(vectorizer.vocabulary_)
        self._ngrams = tuple(int(n) for n in vectorizer.ngram_range)
        self._sublinear = bool(vectorizer.sublinear_tf)
        self._idf = np.asarray(vectorizer.idf_, dtype=np.float64)
        classes = [str(c) for c in model.classes_]
        order = [classes.index(c) for c in LABELS]
        self._coef = np.ascontiguousarray(np.asarray(model.coef_, dtype=np.float64)[order].T)
        self._intercept = np.asarray(model.intercept_, dtype=np.float64)[order]

    @classmethod
    def from_pipeline(cls, pipeline: Any) -> Classifier:
        try:
            return cls._checked(pipeline)
        except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:
            raise IntegrityError(f"unusable sentiment classifier pipeline: {exc}") from exc

    @classmethod
    def _checked(cls, pipeline: Any) -> Classifier:
        steps = [step for _, step in getattr(pipeline, "steps", ())]
        names = [type(step).__name__ for step in steps]
        if names != ["TfidfVectorizer", "LogisticRegression"]:
            raise IntegrityError(f"sentiment classifier pipeline is {names}")
        vectorizer, model = steps
        classes = sorted(str(c) for c in model.classes_)
        if classes != sorted(LABELS):
            raise IntegrityError(f"sentiment classifier predicts {classes}, not {list(LABELS)}")
        settings = vectorizer.get_params()
        expected = {
            "tokenizer": tokenize,
            "analyzer": "word",
            "preprocessor": None,
            "stop_words": None,
            "strip_accents": None,
            "lowercase": False,
            "binary": False,
            "use_idf": True,
            "norm": "l2",
        }
        wrong = sorted(k for k, v in expected.items() if settings.get(k) != v)
        if wrong:
            raise IntegrityError(f"sentiment classifier vectorizer differs in {wrong}")
        classifier = cls(vectorizer, model)
        reference = pipeline.predict_proba(list(PROBES))[
            :, [model.classes_.tolist().index(c) for c in LABELS]
        ]
        if not np.allclose(classifier.proba([tokenize(t) for t in PROBES]), reference, atol=1e-9):
            raise IntegrityError("sentiment classifier does not reproduce its pipeline")
        return classifier

    def proba(self, token_lists: Sequence[list[str]]) -> np.ndarray:
        """Class probabilities in LABELS order, one row per token list."""
        logits = np.zeros((len(token_lists), len(LABELS)), dtype=np.float64)
        for i, tokens in enumerate(token_lists):
            logits[i] = self._text_logits(tokens)
        logits += self._intercept
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        proba: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
        return proba

    def _text_logits(self, tokens: list[str]) -> np.ndarray:
        """``tfidf_row @ coef`` for one text, from its L2-normalised non-zero TF-IDF terms.

        Row-local arithmetic only (no BLAS call, whose blocking may depend on the batch),
        so a text's logits are bit-identical whatever batch it came in.
        """
        get = self._vocabulary.get
        low, high = self._ngrams
        ids: list[int] = []
        for n in range(low, high + 1):
            grams = (
                tokens
                if n == 1
                else map(" ".join, zip(*(tokens[k:] for k in range(n)), strict=False))
            )
            ids.extend(i for i in map(get, grams) if i is not None)
        if not ids:
            return np.zeros(len(LABELS), dtype=np.float64)
        cols, counts = np.unique(np.array(ids, dtype=np.int64), return_counts=True)
        tf = counts.astype(np.float64)
        if self._sublinear:
            tf = np.log(tf) + 1.0
        values = tf * self._idf[cols]
        values /= np.sqrt((values * values).sum())
        logits: np.ndarray = (values[:, None] * self._coef[cols]).sum(axis=0)
        return logits


PROBES = (
    "Revenue rose 12% and the company returned to profitability.",
    "We have not been profitable and may never achieve profitability; losses widened.",
    "The plaintiffs allege breaches of contract. The court has not ruled.",
    "Net sales were $410 million, in line with the prior year.",
)
"""Texts on which a loaded classifier must agree with its own pipeline."""


class SentimentRuntime(ModelRuntime):
    kind: ClassVar[str] = "sentiment"
    instance_schema: ClassVar[type[StrictModel]] = SentimentInstance

    def __init__(self, lexicon: LexiconArtifact, classifier: Classifier | None = None) -> None:
        self._lexicon = Lexicon(lexicon)
        self._classifier = classifier

    @property
    def variant(self) -> str:
        return "lexicon" if self._classifier is None else "classifier"

    @classmethod
    def from_artifact(cls, data: bytes) -> SentimentRuntime:
        payload = _parse(data)
        fmt = payload.get("format") if isinstance(payload, dict) else None
        if fmt == LEXICON_FORMAT:
            return cls(_lexicon_from(payload))
        if fmt == CLASSIFIER_FORMAT and isinstance(payload, dict):
            if set(payload) != {"format", "pipeline", "lexicon"}:
                raise IntegrityError(f"{CLASSIFIER_FORMAT} artifact has keys {sorted(payload)}")
            lexicon = _lexicon_from(payload["lexicon"])
            return cls(lexicon, Classifier.from_pipeline(payload["pipeline"]))
        raise IntegrityError("artifact is not a sentiment lexicon or classifier")

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


def _parse(data: bytes) -> Any:
    """JSON first (the lexicon needs no unpickling), else joblib."""
    try:
        return json.loads(data)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        pass
    try:
        return joblib_load(data)
    except Warning:
        raise  # a scikit-learn version mismatch keeps its own name and message
    except Exception as exc:
        raise IntegrityError("artifact is neither JSON nor a joblib file") from exc


def _lexicon_from(payload: Any) -> LexiconArtifact:
    try:
        return LexiconArtifact.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise IntegrityError(f"invalid sentiment lexicon: {where}: {first['msg']}") from None
