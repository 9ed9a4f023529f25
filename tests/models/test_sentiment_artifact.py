"""The sentiment classifier's data artifact: what the builder writes, strict loading, and
the build-time check that it is the fitted pipeline."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from common.core.errors import IntegrityError
from common.models.sentiment import SentimentRuntime
from tests.models.test_sentiment_builder import SAMPLES, built
from tests.support.fixtures import SEED
from tools.training import sentiment_builder, sentiment_corpus
from tools.training.artifact_check import TOLERANCE, ArtifactMismatchError

Document = dict[str, Any]


def document() -> Document:
    payload: Document = json.loads(built()[1].artifact)
    return payload


def test_the_candidate_is_a_json_document_with_its_lexicon() -> None:
    lexicon, classifier = built()
    doc = document()
    assert doc["format"] == "ipo-sentiment-classifier/2"
    assert doc["tokenizer"] == "common.models.sentiment.tokenize"
    assert doc["lexicon"] == json.loads(lexicon.artifact)
    assert len(doc["vocabulary"]) == classifier.metrics["vocabulary"]
    assert classifier.tags["artifact_format"] == "ipo-sentiment-classifier/2"


def test_the_same_seed_gives_the_same_bytes() -> None:
    again = sentiment_builder.build(SEED, samples=SAMPLES)
    assert again[1].artifact == built()[1].artifact


def test_the_build_records_how_close_the_artifact_is() -> None:
    check = built()[1].reports["artifact_check"]
    assert check["rows"] == {"test_split": SAMPLES // 4, "probe_texts": 4}
    assert check["tolerance"] == TOLERANCE
    assert all(0.0 <= d <= TOLERANCE for d in check["max_abs_diff"].values())


def _fitted() -> tuple[Any, list[str]]:
    corpus = sentiment_corpus.generate(600, SEED)
    texts = [r["text"] for r in corpus.rows]
    return sentiment_builder.build_pipeline(SEED).fit(texts, corpus.labels), texts


def test_a_perturbed_coefficient_is_refused_by_the_check() -> None:
    pipeline, texts = _fitted()
    artifact, report = sentiment_builder.classifier_artifact(
        pipeline, sentiment_builder.shipped_lexicon(), texts
    )
    assert sentiment_builder.check_artifact(artifact, pipeline, texts) == report
    doc = json.loads(artifact)
    doc["intercept"][2] += 1e-6
    with pytest.raises(ArtifactMismatchError, match="disagrees with its fitted pipeline"):
        sentiment_builder.check_artifact(json.dumps(doc).encode(), pipeline, texts)


def test_the_builder_refuses_to_build_an_artifact_that_disagrees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = sentiment_builder.canonical_json

    def perturbing(doc: Document) -> bytes:
        doc["coef"][0] = [c * (1.0 + 1e-6) for c in doc["coef"][0]]
        return real(doc)

    monkeypatch.setattr(sentiment_builder, "canonical_json", perturbing)
    with pytest.raises(ArtifactMismatchError, match="sentiment classifier data artifact"):
        sentiment_builder.build(SEED, samples=600)


def _set(key: str, value: object) -> Callable[[Document], object]:
    return lambda doc: doc.__setitem__(key, value)


def _swap_terms(doc: Document) -> None:
    doc["vocabulary"][1] = doc["vocabulary"][0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("extra", 1), "extra: Extra inputs are not permitted"),
        (lambda d: d.pop("idf"), "idf: Field required"),
        (_set("tokenizer", "str.split"), "tokenizer: Input should be"),
        (_set("norm", "l1"), "norm: Input should be 'l2'"),
        (_set("ngram_range", [2, 1]), "ngram_range [2, 1] is empty"),
        (_set("ngram_range", [1, 2, 3]), "ngram_range: List should have at most 2 items"),
        (_set("classes", ["negative", "neutral", "bullish"]), "classes are"),
        (lambda d: d["idf"].pop(), "idf: expected .* values, one per term"),
        (lambda d: d["idf"].__setitem__(0, 0.0), r"idf\[0\]: Input should be greater than 0"),
        (lambda d: d["coef"][1].append(0.1), r"coef\[1\]: expected .* values, one per term"),
        (lambda d: d["coef"][0].__setitem__(5, "1"), r"coef\[0\]\[5\]: Input should be a valid"),
        (lambda d: d["coef"][0].__setitem__(5, float("nan")), "finite number"),
        (lambda d: d["intercept"].append(0.0), "3 classes, 3 coefficient rows and 4 intercepts"),
        (_swap_terms, "vocabulary lists a term twice"),
        (lambda d: d["vocabulary"].__setitem__(0, "a b c"), "is not a 1- to 2-gram"),
        (lambda d: d["vocabulary"].__setitem__(0, "a  b"), "is not a 1- to 2-gram"),
        (lambda d: d["lexicon"].pop("licence"), "lexicon.licence: Field required"),
        (_set("format", "ipo-sentiment-classifier/3"), "is not a sentiment lexicon"),
    ],
)
def test_malformed_documents_are_integrity_errors(
    change: Callable[[Document], object], message: str
) -> None:
    doc = document()
    change(doc)
    with pytest.raises(IntegrityError, match=message.replace("[2, 1]", r"\[2, 1\]")):
        SentimentRuntime.from_artifact(json.dumps(doc).encode())
