"""Build the two sentiment versions that an A/B test compares, on one held-out set.

Version A, the finance lexicon, is the production baseline (``promote=True``); version B,
a TF-IDF + logistic regression classifier trained on labelled texts, is registered as
the candidate (``promote=False``). Both are scored on the same held-out texts with the
same metrics, so the test starts from comparable offline evidence.

The classifier is packaged as its fitted numbers (``ipo-sentiment-classifier/2``, JSON),
which serving evaluates with numpy alone; the build stops unless that artifact, loaded as
serving loads it, gives the pipeline's probabilities (tools/training/artifact_check.py).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from common.models.artifacts import canonical_json
from common.models.sentiment import (
    CLASSIFIER_FORMAT,
    LABEL_THRESHOLD,
    LABELS,
    MAX_TEXT_CHARS,
    PROBES,
    Classifier,
    LexiconArtifact,
    SentimentInstance,
    SentimentRuntime,
    tokenize,
)
from tools.training import sentiment_corpus
from tools.training.artifact_check import same_probabilities
from tools.training.base import BuiltModel, finish, fresh_sample_record, fresh_seed, model_card
from tools.training.sentiment_corpus import SentimentCorpus

MODEL_ID = "sentiment"
LEXICON_RESOURCE = "finance_lexicon.json"


GATE = {
    "criteria": [
        {"metric": "accuracy", "op": ">=", "threshold": 0.5},
        {"metric": "latency_p95_ms", "op": "<=", "threshold": 500.0},
    ]
}
"""Sentiment's bar: clearly better than the 1/3 of guessing among three labels; a
candidate must also win an experiment against the baseline before it replaces it."""


def shipped_lexicon() -> LexiconArtifact:
    """The project's own finance lexicon (common/models/data/, provenance in its README)."""
    text = resources.files("common.models").joinpath("data", LEXICON_RESOURCE).read_text("utf-8")
    return LexiconArtifact.model_validate(json.loads(text))


def lexicon_artifact(lexicon: LexiconArtifact) -> bytes:
    """Canonical JSON (sorted keys, no whitespace): the same lexicon gives the same bytes."""
    return json.dumps(
        lexicon.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
    ).encode("utf-8")


def build_pipeline(seed: int) -> Any:
    """Word and word-pair TF-IDF over the shared tokenizer, then a multinomial logit."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return Pipeline(
        [
            (
                "tfidf",
                TfidfVectorizer(
                    tokenizer=tokenize,
                    token_pattern=None,
                    lowercase=False,
                    ngram_range=(1, 2),
                    min_df=2,
                    sublinear_tf=True,
                ),
            ),
            ("classifier", LogisticRegression(C=10.0, max_iter=2000, random_state=seed)),
        ]
    )


def classifier_artifact(
    pipeline: Any, lexicon: LexiconArtifact, texts: list[str]
) -> tuple[bytes, dict[str, object]]:
    """The fitted pipeline as an ``ipo-sentiment-classifier/2`` artifact carrying the
    lexicon, and the evidence that it reproduces the pipeline on ``texts`` (the test
    split) and the probes (else ArtifactMismatchError)."""
    document = Classifier.from_pipeline(pipeline, tokenize).document(lexicon)
    artifact = canonical_json(document)
    return artifact, check_artifact(artifact, pipeline, texts)


def check_artifact(artifact: bytes, pipeline: Any, texts: list[str]) -> dict[str, object]:
    """Load the artifact from its bytes as serving does and compare probabilities."""
    runtime = SentimentRuntime.from_artifact(artifact)
    order = [[str(c) for c in pipeline.classes_].index(c) for c in LABELS]
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {
        name: (pipeline.predict_proba(batch)[:, order], runtime.probabilities(batch))
        for name, batch in (("test_split", texts), ("probe_texts", list(PROBES)))
    }
    return same_probabilities("sentiment classifier", pairs)


def evaluate(
    runtime: SentimentRuntime, rows: list[dict[str, Any]], labels: list[str]
) -> tuple[dict[str, float], dict[str, Any]]:
    """Held-out metrics of a built artifact, computed from what serving returns."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    instances = [SentimentInstance.model_validate(r) for r in rows]
    predicted = [out["label"] for out in runtime.predict(instances, None)]
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predicted, labels=list(LABELS), average="macro", zero_division=0
    )
    metrics = {
        "accuracy": float(accuracy_score(labels, predicted)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }
    matrix = confusion_matrix(labels, predicted, labels=list(LABELS)).tolist()
    # true label -> predicted label -> count; nested objects, since a document store
    # (Firestore) cannot hold an array of arrays.
    report = {
        "confusion_matrix": {
            true: dict(zip(LABELS, row, strict=True))
            for true, row in zip(LABELS, matrix, strict=True)
        }
    }
    return metrics, report


def _digest(rows: list[dict[str, Any]], labels: list[str]) -> str:
    """Names the held-out set, so a reader can see both versions were scored on it."""
    blob = json.dumps([[r["text"], lab] for r, lab in zip(rows, labels, strict=True)])
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def train(
    corpus: SentimentCorpus,
    *,
    seed: int,
    synthetic: bool,
    test_share: float = 0.25,
    fresh: tuple[SentimentCorpus, int] | None = None,
) -> list[BuiltModel]:
    """Both versions, scored on one held-out split; with ``fresh`` (a corpus drawn again
    and its seed), also on that corpus (``metrics_fresh_sample``)."""
    from sklearn import __version__ as sklearn_version
    from sklearn.model_selection import train_test_split

    rows_train, rows_test, y_train, y_test = train_test_split(
        corpus.rows, corpus.labels, test_size=test_share, random_state=seed, stratify=corpus.labels
    )
    held_out = {"held_out_rows": len(y_test), "held_out_sha256": _digest(rows_test, y_test)}
    counts = {"train_rows": len(y_train), "test_rows": len(y_test)}
    data_text = (
        f"{len(corpus.rows)} synthetic finance texts from the seeded template generator "
        "(tools/training/sentiment_corpus.py, documented in docs/models/sentiment.md)"
        if synthetic
        else f"{len(corpus.rows)} labelled texts from the user's CSV"
    )
    split_text = f"; {len(y_train)} for training, {len(y_test)} held out, stratified by label."

    lexicon = shipped_lexicon()
    lexicon_bytes = lexicon_artifact(lexicon)
    lex_metrics, lex_report = evaluate(
        SentimentRuntime.from_artifact(lexicon_bytes), rows_test, y_test
    )

    def again(artifact: bytes) -> dict[str, float]:
        if fresh is None:
            return {}
        sample, fresh_seed_value = fresh
        metrics = evaluate(SentimentRuntime.from_artifact(artifact), sample.rows, sample.labels)[0]
        return fresh_sample_record(metrics, n=len(sample.labels), seed=fresh_seed_value)

    lexicon_version = finish(
        model_id=MODEL_ID,
        gate=GATE,
        runtime_class=SentimentRuntime,
        artifact=lexicon_bytes,
        description=(
            f"Finance lexicon baseline ({lexicon.name} {lexicon.version}, written for this "
            "project): score (P - N) / (P + N + 1) from positive and negative word counts "
            f"with negation; neutral within +-{LABEL_THRESHOLD}."
        ),
        metrics={**lex_metrics, **counts},
        card=model_card(
            intended_use=(
                "Baseline tone of prospectus excerpts, filings and financial news, for the "
                "valuation ensemble and analyst screening. Not an investment recommendation."
            ),
            training_data=(
                f"None learned: a hand-written lexicon of {_size(lexicon)} words. Evaluated on "
                f"the held-out part of {data_text}{split_text}"
            ),
            limitations=(
                "Counts single words: no phrases, sarcasm or context beyond a three-word "
                "negation scope. English only. Held-out metrics on synthetic text say little "
                f"about real text. Texts over {MAX_TEXT_CHARS:,} characters are refused."
            ),
        ),
        training_rows=rows_train,
        held_out_rows=rows_test,
        reports={"evaluation": {**held_out, **lex_report}},
        tags={"variant": "lexicon", "framework": "none", "lexicon": lexicon.version},
        promote=True,
        metrics_fresh_sample=again(lexicon_bytes),
    )

    pipeline = build_pipeline(seed).fit([r["text"] for r in rows_train], y_train)
    classifier_bytes, equivalence = classifier_artifact(
        pipeline, lexicon, [r["text"] for r in rows_test]
    )
    clf_metrics, clf_report = evaluate(
        SentimentRuntime.from_artifact(classifier_bytes), rows_test, y_test
    )
    vocabulary = len(pipeline.named_steps["tfidf"].vocabulary_)
    classifier_version = finish(
        model_id=MODEL_ID,
        gate=GATE,
        runtime_class=SentimentRuntime,
        artifact=classifier_bytes,
        description=(
            "TF-IDF (words and word pairs, shared tokenizer with negation marks) + "
            "multinomial logistic regression; score P(positive) - P(negative); tone "
            "proportions from the same lexicon as the baseline."
        ),
        metrics={**clf_metrics, **counts, "vocabulary": vocabulary},
        card=model_card(
            intended_use=(
                "Candidate replacement for the lexicon baseline, to be compared with it in an "
                "A/B test before any promotion. Not an investment recommendation."
            ),
            training_data=data_text + split_text,
            limitations=(
                "Learns only the wording of its training texts; trained on synthetic "
                "templates it will miss much of the language of real filings and news, and "
                "its held-out metrics (same templates) overstate real-world accuracy. "
                f"English only. Texts over {MAX_TEXT_CHARS:,} characters are refused."
            ),
        ),
        training_rows=rows_train,
        held_out_rows=rows_test,
        reports={"evaluation": {**held_out, **clf_report}, "artifact_check": equivalence},
        tags={
            "variant": "classifier",
            "framework": "scikit-learn",
            "sklearn_version": sklearn_version,
            "artifact_format": CLASSIFIER_FORMAT,
            "lexicon": lexicon.version,
        },
        promote=False,
        held_back=(
            "the candidate of the sentiment A/B test: its held-out texts come from the same "
            "templates as its training texts, so its offline accuracy overstates what it "
            "does on real text; it reaches production after an experiment shows no "
            "regression (docs/EXPERIMENTS.md)"
        ),
        metrics_fresh_sample=again(classifier_bytes),
    )
    return [lexicon_version, classifier_version]


def _size(lexicon: LexiconArtifact) -> int:
    cats = lexicon.categories
    return len({*cats.negative, *cats.positive, *cats.uncertainty, *cats.litigious})


def build(seed: int, data: Path | None = None, samples: int = 6000) -> list[BuiltModel]:
    """Lexicon (promoted) then classifier (candidate), from the synthetic corpus or a CSV."""
    if data is not None:
        return train(sentiment_corpus.from_csv(data), seed=seed, synthetic=False)
    again = sentiment_corpus.generate(samples, fresh_seed(seed)), fresh_seed(seed)
    return train(sentiment_corpus.generate(samples, seed), seed=seed, synthetic=True, fresh=again)


__all__ = [
    "build",
    "build_pipeline",
    "check_artifact",
    "classifier_artifact",
    "evaluate",
    "shipped_lexicon",
    "train",
]
