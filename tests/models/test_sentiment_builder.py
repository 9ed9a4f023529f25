"""The sentiment builder: two comparable versions, reproducible evidence, checked CSV input."""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

import pytest

from common.models.sentiment import LABELS, MAX_TEXT_CHARS, SentimentInstance, SentimentRuntime
from tests.support.fixtures import SEED, embedded_stack
from tools.training import sentiment_builder, sentiment_corpus
from tools.training.base import MODEL_CARD_FIELDS, BuiltModel, fresh_seed, register_built

SAMPLES = 900


@cache
def built(seed: int = SEED) -> tuple[BuiltModel, ...]:
    return tuple(sentiment_builder.build(seed, samples=SAMPLES))


def test_two_versions_lexicon_promoted_classifier_candidate() -> None:
    lexicon, classifier = built()
    assert [b.model_id for b in (lexicon, classifier)] == ["sentiment", "sentiment"]
    assert [b.kind for b in (lexicon, classifier)] == ["sentiment", "sentiment"]
    assert (lexicon.promote, classifier.promote) == (True, False)
    assert (lexicon.tags["variant"], classifier.tags["variant"]) == ("lexicon", "classifier")
    assert SentimentRuntime.from_artifact(lexicon.artifact).variant == "lexicon"
    assert SentimentRuntime.from_artifact(classifier.artifact).variant == "classifier"
    assert lexicon.artifact.startswith(b"{")  # JSON, no pickle


def test_both_versions_are_scored_on_the_same_held_out_set() -> None:
    lexicon, classifier = built()
    for b in (lexicon, classifier):
        for name in ("accuracy", "precision", "recall", "f1"):
            assert 0.0 <= b.metrics[name] <= 1.0
        assert b.metrics["test_rows"] == SAMPLES // 4
        matrix = b.reports["evaluation"]["confusion_matrix"]
        assert set(matrix) == set(LABELS)
        assert sum(sum(row.values()) for row in matrix.values()) == SAMPLES // 4
    assert (
        lexicon.reports["evaluation"]["held_out_sha256"]
        == classifier.reports["evaluation"]["held_out_sha256"]
    )
    assert lexicon.golden_set[0]["instance"] == classifier.golden_set[0]["instance"]
    # The classifier learns the templates' wording; a word list cannot know all of it.
    assert classifier.metrics["accuracy"] > 0.7
    assert classifier.metrics["accuracy"] > lexicon.metrics["accuracy"]


def test_golden_sets_reproduce_from_the_artifacts() -> None:
    for b in built():
        runtime = SentimentRuntime.from_artifact(b.artifact)
        instances = [SentimentInstance.model_validate(g["instance"]) for g in b.golden_set]
        assert runtime.predict(instances, None) == [g["expected"] for g in b.golden_set]
        assert len(b.golden_set) == 20


def test_same_seed_same_versions() -> None:
    again = sentiment_builder.build(SEED, samples=SAMPLES)
    for first, second in zip(built(), again, strict=True):
        assert first.golden_set == second.golden_set
        assert first.drift_baseline == second.drift_baseline
        assert {k: v for k, v in first.metrics.items() if k != "latency_p95_ms"} == {
            k: v for k, v in second.metrics.items() if k != "latency_p95_ms"
        }
    assert built()[0].artifact == again[0].artifact


def test_both_versions_register_lexicon_in_production(tmp_path: Path) -> None:
    stack = embedded_stack(tmp_path)
    try:
        for minor, b in enumerate(built()):
            register_built(stack.lifecycle, b, version=f"1.{minor}.0", created_by="tests")
        assert stack.registry.get_model("sentiment").production_version == "1.0.0"
        assert [v.version for v in stack.registry.list_versions("sentiment")] == [
            "1.0.0",
            "1.1.0",
        ]
        # the better-scoring classifier says why it is not the one in production
        candidate = stack.registry.get_version("sentiment", "1.1.0")
        assert candidate.stage == "development"
        assert "A/B test" in candidate.stage_reason
        assert "overstates" in candidate.stage_reason
    finally:
        stack.services.close()


def test_cards_baselines_and_examples_are_complete() -> None:
    for b in built():
        assert set(MODEL_CARD_FIELDS) <= set(b.model_card)
        assert "synthetic" in b.model_card["training_data"]
        inputs = {k for k in b.drift_baseline if not k.startswith("prediction.")}
        assert inputs == {"text.length", "source"}
        SentimentInstance.model_validate(b.example)


def test_corpus_is_seeded_balanced_and_valid() -> None:
    first = sentiment_corpus.generate(300, 11)
    assert first == sentiment_corpus.generate(300, 11)
    assert first != sentiment_corpus.generate(300, 12)
    counts = {label: first.labels.count(label) for label in LABELS}
    assert min(counts.values()) >= 80
    for row in first.rows:
        SentimentInstance.model_validate(row)


def _write_csv(path: Path, rows: list[dict[str, str]], columns: tuple[str, ...]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _labelled(n: int) -> list[dict[str, str]]:
    corpus = sentiment_corpus.generate(n, SEED + 9)
    return [
        {"text": row["text"], "label": label}
        for row, label in zip(corpus.rows, corpus.labels, strict=True)
    ]


def test_builds_from_a_users_csv(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "texts.csv", _labelled(240), ("text", "label"))
    lexicon, classifier = sentiment_builder.build(SEED, data=path)
    assert classifier.metrics["test_rows"] == 60
    assert "user's CSV" in classifier.model_card["training_data"]
    assert (lexicon.promote, classifier.promote) == (True, False)
    assert (lexicon.metrics_fresh_sample, classifier.metrics_fresh_sample) == ({}, {})


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"text": "Fine.", "label": "bullish"}, ":4: label"),
        ({"text": "x" * (MAX_TEXT_CHARS + 1), "label": "neutral"}, ":4: text"),
        ({"text": "", "label": "neutral"}, ":4: text"),
        ({"text": "Fine.", "label": "neutral", "source": "blog"}, ":4: source"),
    ],
)
def test_csv_rows_are_checked_with_line_numbers(
    tmp_path: Path, bad: dict[str, str], message: str
) -> None:
    rows = [{**r, "source": "news"} for r in _labelled(60)]
    rows.insert(2, {"source": "", **bad})
    path = _write_csv(tmp_path / "texts.csv", rows, ("text", "label", "source"))
    with pytest.raises(ValueError, match=message):
        sentiment_corpus.from_csv(path)


def test_csv_needs_the_right_columns_and_every_label(tmp_path: Path) -> None:
    wrong = _write_csv(
        tmp_path / "wrong.csv", [{"body": "x", "label": "neutral"}], ("body", "label")
    )
    with pytest.raises(ValueError, match="columns"):
        sentiment_corpus.from_csv(wrong)
    one_sided = [r for r in _labelled(90) if r["label"] != "neutral"]
    path = _write_csv(tmp_path / "one_sided.csv", one_sided, ("text", "label"))
    with pytest.raises(ValueError, match="each label"):
        sentiment_corpus.from_csv(path)


def test_both_versions_record_their_metrics_on_a_fresh_corpus() -> None:
    for b in built():
        fresh = b.metrics_fresh_sample
        assert (fresh["n"], fresh["seed"]) == (SAMPLES, fresh_seed(SEED))
        assert set(fresh) == {"accuracy", "precision", "recall", "f1", "n", "seed"}
        assert abs(fresh["accuracy"] - b.metrics["accuracy"]) <= 0.05
