"""The sentiment artifacts' schemas: the lexicon, and the classifier's fitted numbers.

``ipo-sentiment-lexicon/1`` is the lexicon version's whole artifact and the lexicon
inside a classifier. ``ipo-sentiment-classifier/2`` is the trained classifier as data:
the TF-IDF settings, vocabulary (a term's position is its column) and idf, and the
logistic regression's coefficients, intercepts and classes. Both are closed, every number
finite, and the classifier's shapes must agree with each other, so a malformed artifact
is refused when it is loaded, never while it serves.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from common.core.validation import StrictModel
from common.models.base import check_linear_shapes

LEXICON_FORMAT = "ipo-sentiment-lexicon/1"
CLASSIFIER_FORMAT = "ipo-sentiment-classifier/2"
"""The trained classifier as data (JSON): what the builder writes."""
PIPELINE_FORMAT = "ipo-sentiment-classifier/1"
"""A joblib file holding ``{"format", "pipeline", "lexicon"}``: a user's fitted pipeline."""
TOKENIZER = "common.models.sentiment.tokenize"
LABELS = ("negative", "neutral", "positive")
TONES = ("negative", "positive", "uncertainty", "litigious")
MAX_NGRAM = 5

Word = Annotated[str, StringConstraints(pattern=r"^[a-z]+$")]
Term = Annotated[str, StringConstraints(min_length=1, max_length=400)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


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


class ClassifierArtifact(StrictModel):
    """TF-IDF (``tokenizer``, n-grams, sublinear tf, l2 norm) + multinomial logit."""

    format: Literal["ipo-sentiment-classifier/2"]
    tokenizer: Literal["common.models.sentiment.tokenize"]
    ngram_range: list[Annotated[int, Field(ge=1, le=MAX_NGRAM)]] = Field(min_length=2, max_length=2)
    sublinear_tf: bool
    norm: Literal["l2"]
    vocabulary: list[Term] = Field(min_length=1)
    """Terms (n tokens joined by one space); a term's position is its column."""
    idf: list[Annotated[float, Field(gt=0, allow_inf_nan=False)]]
    classes: list[str]
    """Row order of ``coef`` and ``intercept``: the three LABELS in any order."""
    coef: list[list[Finite]]
    intercept: list[Finite]
    lexicon: LexiconArtifact

    @model_validator(mode="after")
    def _shapes_agree(self) -> ClassifierArtifact:
        low, high = self.ngram_range
        if low > high:
            raise ValueError(f"ngram_range {self.ngram_range} is empty")
        if sorted(self.classes) != sorted(LABELS):
            raise ValueError(f"classes are {self.classes}, not the labels {list(LABELS)}")
        width = len(self.vocabulary)
        if len(set(self.vocabulary)) != width:
            raise ValueError("vocabulary lists a term twice")
        for term in self.vocabulary:
            parts = term.split(" ")
            if not low <= len(parts) <= high or not all(parts):
                raise ValueError(f"vocabulary term {term[:40]!r} is not a {low}- to {high}-gram")
        sizes = {"idf": len(self.idf), **{f"coef[{i}]": len(r) for i, r in enumerate(self.coef)}}
        check_linear_shapes(
            sizes,
            width,
            "one per term",
            classes=len(self.classes),
            coef_rows=len(self.coef),
            intercepts=len(self.intercept),
        )
        return self
