"""The trained sentiment classifier's arithmetic, from a data artifact or a fitted pipeline.

One class evaluates both artifact forms: the numbers of an ``ipo-sentiment-classifier/2``
document, or those read off a user's pickled scikit-learn pipeline. The tokenizer is
passed in (``common.models.sentiment.tokenize``) so this module needs nothing of the
runtime's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from common.core.errors import IntegrityError
from common.models.sentiment_schema import (
    CLASSIFIER_FORMAT,
    LABELS,
    TOKENIZER,
    ClassifierArtifact,
    LexiconArtifact,
)

Tokenizer = Callable[[str], list[str]]

PROBES = (
    "Revenue rose 12% and the company returned to profitability.",
    "We have not been profitable and may never achieve profitability; losses widened.",
    "The plaintiffs allege breaches of contract. The court has not ruled.",
    "Net sales were $410 million, in line with the prior year.",
)
"""Texts on which a loaded classifier must agree with its own pipeline."""


class Classifier:
    """The fitted TF-IDF + logistic regression of a classifier artifact, applied directly.

    ``Pipeline.predict_proba`` spends ~2 ms per call in input checks and re-tokenizing;
    this computes the same numbers from the fitted arrays (vocabulary, idf, coefficients,
    intercepts) in a fraction of that, reusing the tokens the lexicon needed. A text's
    logits depend on that text alone and the softmax is one array operation over the
    batch, so a batch gives exactly the per-text results.
    """

    def __init__(
        self,
        vocabulary: dict[str, int],
        ngrams: tuple[int, int],
        sublinear: bool,
        idf: np.ndarray,
        coef: np.ndarray,
        intercept: np.ndarray,
    ) -> None:
        """``coef`` is (labels, terms) and ``intercept`` (labels,), rows in LABELS order."""
        self._vocabulary = vocabulary
        self._ngrams = ngrams
        self._sublinear = sublinear
        self._idf = np.asarray(idf, dtype=np.float64)
        self._coef = np.ascontiguousarray(np.asarray(coef, dtype=np.float64).T)
        self._intercept = np.asarray(intercept, dtype=np.float64)

    @classmethod
    def from_document(cls, document: ClassifierArtifact) -> Classifier:
        """The numbers of a validated ``ipo-sentiment-classifier/2`` document."""
        order = [document.classes.index(c) for c in LABELS]
        low, high = document.ngram_range
        return cls(
            vocabulary={term: i for i, term in enumerate(document.vocabulary)},
            ngrams=(low, high),
            sublinear=document.sublinear_tf,
            idf=np.asarray(document.idf, dtype=np.float64),
            coef=np.asarray(document.coef, dtype=np.float64)[order],
            intercept=np.asarray(document.intercept, dtype=np.float64)[order],
        )

    def document(self, lexicon: LexiconArtifact) -> dict[str, Any]:
        """These numbers as an ``ipo-sentiment-classifier/2`` document carrying ``lexicon``.

        Python floats are written by ``repr``, so the document reads back to these exact
        doubles.
        """
        terms = [""] * len(self._vocabulary)
        for term, column in self._vocabulary.items():
            terms[column] = term
        return {
            "format": CLASSIFIER_FORMAT,
            "tokenizer": TOKENIZER,
            "ngram_range": list(self._ngrams),
            "sublinear_tf": self._sublinear,
            "norm": "l2",
            "vocabulary": terms,
            "idf": self._idf.tolist(),
            "classes": list(LABELS),
            "coef": self._coef.T.tolist(),
            "intercept": self._intercept.tolist(),
            "lexicon": lexicon.model_dump(mode="json"),
        }

    @classmethod
    def from_pipeline(cls, pipeline: Any, tokenizer: Tokenizer) -> Classifier:
        """The numbers of a fitted pipeline, refused unless they reproduce it on PROBES."""
        try:
            return cls._checked(pipeline, tokenizer)
        except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:
            raise IntegrityError(f"unusable sentiment classifier pipeline: {exc}") from exc

    @classmethod
    def _checked(cls, pipeline: Any, tokenizer: Tokenizer) -> Classifier:
        steps = [step for _, step in getattr(pipeline, "steps", ())]
        names = [type(step).__name__ for step in steps]
        if names != ["TfidfVectorizer", "LogisticRegression"]:
            raise IntegrityError(f"sentiment classifier pipeline is {names}")
        vectorizer, model = steps
        classes = [str(c) for c in model.classes_]
        if sorted(classes) != sorted(LABELS):
            raise IntegrityError(f"sentiment classifier predicts {classes}, not {list(LABELS)}")
        settings = vectorizer.get_params()
        expected = {
            "tokenizer": tokenizer,
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
        order = [classes.index(c) for c in LABELS]
        low, high = (int(n) for n in vectorizer.ngram_range)
        classifier = cls(
            vocabulary={str(t): int(i) for t, i in vectorizer.vocabulary_.items()},
            ngrams=(low, high),
            sublinear=bool(vectorizer.sublinear_tf),
            idf=np.asarray(vectorizer.idf_, dtype=np.float64),
            coef=np.asarray(model.coef_, dtype=np.float64)[order],
            intercept=np.asarray(model.intercept_, dtype=np.float64)[order],
        )
        reference = pipeline.predict_proba(list(PROBES))[:, order]
        if not np.allclose(classifier.proba([tokenizer(t) for t in PROBES]), reference, atol=1e-9):
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
