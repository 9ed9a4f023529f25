"""The sentiment runtime: both versions, the shared tokenizer, schemas and artifacts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.core.errors import IntegrityError, InvalidValuesError
from common.core.validation import validate
from common.models.base import joblib_dump
from common.models.sentiment import (
    CLASSIFIER_FORMAT,
    LABELS,
    MAX_TEXT_CHARS,
    PIPELINE_FORMAT,
    TONES,
    SentimentInstance,
    SentimentRuntime,
    tokenize,
)
from tests.support.fixtures import SEED
from tools.training import sentiment_corpus
from tools.training.sentiment_builder import (
    build_pipeline,
    classifier_artifact,
    lexicon_artifact,
    shipped_lexicon,
)

POSITIVE = (
    "Revenue grew strongly and the company achieved record profitability, exceeding guidance.",
    "The offering was oversubscribed and analysts upgraded the shares after a strong debut.",
)
NEGATIVE = (
    "The company reported heavy losses, breached its loan covenants and warned of a default.",
    "Sales declined sharply and the auditor raised doubt about its ability to continue.",
)


@pytest.fixture(scope="module")
def lexicon() -> SentimentRuntime:
    return SentimentRuntime.from_artifact(lexicon_artifact(shipped_lexicon()))


@pytest.fixture(scope="module")
def pipeline() -> Any:
    corpus = sentiment_corpus.generate(3000, SEED)
    return build_pipeline(SEED).fit([r["text"] for r in corpus.rows], corpus.labels)


@pytest.fixture(scope="module")
def classifier(pipeline: Any) -> SentimentRuntime:
    """The builder's form: the fitted numbers as an ipo-sentiment-classifier/2 document."""
    artifact, _ = classifier_artifact(pipeline, shipped_lexicon(), list(POSITIVE + NEGATIVE))
    return SentimentRuntime.from_artifact(artifact)


@pytest.fixture(scope="module")
def pickled_classifier(pipeline: Any) -> SentimentRuntime:
    """A user's form: the same pipeline pickled (ipo-sentiment-classifier/1, joblib)."""
    payload = {
        "format": PIPELINE_FORMAT,
        "pipeline": pipeline,
        "lexicon": shipped_lexicon().model_dump(mode="json"),
    }
    return SentimentRuntime.from_artifact(joblib_dump(payload))


@pytest.fixture(scope="module", params=["lexicon", "classifier", "pickled_classifier"])
def runtime(request: pytest.FixtureRequest) -> SentimentRuntime:
    runtime: SentimentRuntime = request.getfixturevalue(request.param)
    return runtime


def one(runtime: SentimentRuntime, text: str) -> dict[str, Any]:
    return runtime.predict([SentimentInstance(text=text)], None)[0]


def test_tokenizer_lowercases_and_keeps_only_words() -> None:
    assert tokenize("Net loss of $4.2m (Q3) at Acme's <b>unit</b>") == [
        "net",
        "loss",
        "of",
        "m",
        "q",
        "at",
        "acme",
        "b",
        "unit",
        "b",
    ]


def test_negation_marks_the_next_three_words_until_punctuation() -> None:
    assert tokenize("We didn't achieve profitability; revenue grew") == [
        "we",
        "didn't",
        "not_achieve",
        "not_profitability",
        "revenue",
        "grew",
    ]
    assert tokenize("It is not yet fully profitable") == [
        "it",
        "is",
        "not",
        "not_yet",
        "not_fully",
        "not_profitable",
    ]
    assert tokenize("Not only profitable") == ["not", "only", "profitable"]
    assert tokenize("isn\u2019t growing") == ["isn't", "not_growing"]


def test_tone_proportions_match_a_hand_count(runtime: SentimentRuntime) -> None:
    text = "The company reported a loss and faces litigation, but growth may improve."
    # 12 words; negative: loss; positive: growth, improve; uncertainty: may;
    # litigious: litigation.
    out = one(runtime, text)
    assert out["tokens"] == 12
    assert out["tone"] == {
        "negative": round(1 / 12, 6),
        "positive": round(2 / 12, 6),
        "uncertainty": round(1 / 12, 6),
        "litigious": round(1 / 12, 6),
    }


def test_lexicon_score_is_the_documented_ratio(lexicon: SentimentRuntime) -> None:
    out = one(lexicon, "The company reported a loss and faces litigation, but growth may improve.")
    assert out["score"] == pytest.approx((2 - 1) / (2 + 1 + 1))  # 0.25: just positive
    assert out["label"] == "positive"
    assert set(out) == {"score", "label", "tone", "tokens"}


def test_negation_turns_praise_into_criticism(lexicon: SentimentRuntime) -> None:
    assert one(lexicon, "The company is profitable.")["label"] == "positive"
    negated = one(lexicon, "The company is not profitable.")
    assert negated["label"] == "negative"
    assert negated["tone"]["negative"] == pytest.approx(1 / 5, abs=1e-6)
    assert negated["tone"]["positive"] == 0.0
    # A negated negative word counts as neither: "no impairment" is not bad news.
    cleared = one(lexicon, "No impairment was recorded.")
    assert cleared["tone"]["negative"] == 0.0
    assert cleared["label"] == "neutral"


@pytest.mark.parametrize("text", POSITIVE)
def test_clearly_positive_sentences(runtime: SentimentRuntime, text: str) -> None:
    out = one(runtime, text)
    assert out["label"] == "positive"
    assert out["score"] > 0


@pytest.mark.parametrize("text", NEGATIVE)
def test_clearly_negative_sentences(runtime: SentimentRuntime, text: str) -> None:
    out = one(runtime, text)
    assert out["label"] == "negative"
    assert out["score"] < 0


def test_neutral_text_and_text_without_words(runtime: SentimentRuntime) -> None:
    assert one(runtime, "The company filed a registration statement on Form S-1.")["label"] == (
        "neutral"
    )
    empty = one(runtime, "12345 -- 678")
    assert empty["tokens"] == 0
    assert empty["tone"] == dict.fromkeys(TONES, 0.0)


def test_classifier_reports_probabilities_that_agree(classifier: SentimentRuntime) -> None:
    out = one(classifier, POSITIVE[0])
    p = out["probabilities"]
    assert list(p) == list(LABELS)
    assert sum(p.values()) == pytest.approx(1.0, abs=1e-5)
    assert out["label"] == max(p, key=p.__getitem__)
    assert out["score"] == pytest.approx(p["positive"] - p["negative"], abs=2e-6)


@pytest.mark.parametrize("form", ["classifier", "pickled_classifier"])
def test_classifier_equals_its_scikit_learn_pipeline(
    form: str, pipeline: Any, request: pytest.FixtureRequest
) -> None:
    classifier: SentimentRuntime = request.getfixturevalue(form)
    texts = [r["text"] for r in sentiment_corpus.generate(200, SEED + 5).rows]
    texts.append("Revenue didn't grow, but costs weren't cut. No dividend; NOT profitable!")
    expected = pipeline.predict_proba(texts)
    outputs = classifier.predict([SentimentInstance(text=t) for t in texts], None)
    for row, out in zip(expected.tolist(), outputs, strict=True):
        got = out["probabilities"]
        assert [got[c] for c in pipeline.classes_] == pytest.approx(row, abs=2e-6)
    order = [list(pipeline.classes_).index(c) for c in LABELS]
    assert np.abs(classifier.probabilities(texts) - expected[:, order]).max() <= 1e-9


def test_both_classifier_forms_answer_alike(
    classifier: SentimentRuntime, pickled_classifier: SentimentRuntime
) -> None:
    instances = [
        SentimentInstance(text=r["text"]) for r in sentiment_corpus.generate(300, SEED + 6).rows
    ]
    assert classifier.predict(instances, None) == pickled_classifier.predict(instances, None)


@settings(max_examples=60, deadline=None)
@given(text=st.text(min_size=1, max_size=400))
def test_outputs_stay_in_range_for_any_text(
    lexicon: SentimentRuntime, classifier: SentimentRuntime, text: str
) -> None:
    for runtime in (lexicon, classifier):
        out = one(runtime, text)
        assert -1.0 <= out["score"] <= 1.0
        assert out["label"] in LABELS
        assert all(0.0 <= v <= 1.0 for v in out["tone"].values())
        assert out["tone"]["negative"] + out["tone"]["positive"] <= 1.0 + 1e-6


def test_batch_equals_one_by_one(runtime: SentimentRuntime) -> None:
    texts = [r["text"] for r in sentiment_corpus.generate(300, SEED + 1).rows]
    texts += ["no words 123", " ".join(POSITIVE + NEGATIVE) * 40, NEGATIVE[0], NEGATIVE[0]]
    instances = [SentimentInstance(text=t) for t in texts]
    batch = runtime.predict(instances, None)
    assert batch == [runtime.predict([x], None)[0] for x in instances]


@pytest.mark.parametrize(
    "text",
    [
        "Select Medical reported strong growth; SELECT * FROM filings WHERE 1=1; DROP TABLE x",
        "<script>alert('loss')</script> Revenue improved. {{7*7}} ${jndi:ldap://x} ../../etc",
    ],
)
def test_texts_that_look_like_code_are_just_text(runtime: SentimentRuntime, text: str) -> None:
    [instance] = validate(SentimentRuntime.instances_adapter(), [{"text": text}])
    out = runtime.predict([instance], None)[0]
    assert out["tokens"] == len(tokenize(text))
    assert out["label"] in LABELS


def test_text_words_like_select_are_ordinary_tokens() -> None:
    assert tokenize("Select Medical")[:2] == ["select", "medical"]
    assert tokenize("<script>")[0] == "script"


@pytest.mark.parametrize(
    ("instance", "field", "rule"),
    [
        ({"text": "x" * (MAX_TEXT_CHARS + 1)}, "instances[0].text", "string_too_long"),
        ({"text": ""}, "instances[0].text", "string_too_short"),
        ({"text": 42}, "instances[0].text", "string_type"),
        ({"text": "ok", "source": "blog"}, "instances[0].source", "literal_error"),
        ({"text": "ok", "language": "en"}, "instances[0].language", "extra_forbidden"),
        ({}, "instances[0].text", "missing"),
    ],
)
def test_invalid_instances_are_422_naming_the_field(
    instance: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(InvalidValuesError) as caught:
        validate(SentimentRuntime.instances_adapter(), [instance], prefix=("instances",))
    assert caught.value.status == 422
    problem = caught.value.details[0]
    assert (problem["field"], problem["rule"]) == (field, rule)
    if rule == "string_too_long":
        assert len(problem["value"]) < 100  # the refused text is not echoed in full


def test_longest_allowed_text_is_scored(runtime: SentimentRuntime) -> None:
    text = ("Revenue grew. " * 2000)[:MAX_TEXT_CHARS]
    [instance] = validate(SentimentRuntime.instances_adapter(), [{"text": text}])
    assert runtime.predict([instance], None)[0]["tokens"] > 2000


def test_published_schema_states_the_limits() -> None:
    schema = SentimentRuntime.input_schema()
    assert schema["properties"]["text"]["maxLength"] == MAX_TEXT_CHARS
    assert schema["properties"]["text"]["minLength"] == 1
    assert schema["required"] == ["text"]
    assert schema["additionalProperties"] is False


def _lexicon_payload() -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(lexicon_artifact(shipped_lexicon()))
    return payload


def _mutated(**changes: Any) -> bytes:
    payload = _lexicon_payload()
    payload.update(changes)
    return json.dumps(payload).encode()


def test_foreign_artifacts_are_refused(pipeline: Any) -> None:
    categories = _lexicon_payload()["categories"]
    foreign = [
        joblib_dump({"format": "ipo-risk/1"}),
        joblib_dump([1, 2, 3]),
        json.dumps({"format": "ipo-risk/1"}).encode(),
        json.dumps([1, 2, 3]).encode(),
        b"\x00\x01 not an artifact",
        _mutated(extra="field"),
        _mutated(categories={**categories, "positive": [*categories["positive"], "loss"]}),
        _mutated(categories={**categories, "negative": ["Loss"]}),
        _mutated(categories={**categories, "litigious": []}),
        joblib_dump({"format": PIPELINE_FORMAT, "pipeline": pipeline}),
        joblib_dump(  # the data format, pickled: only JSON is read as data
            {
                "format": CLASSIFIER_FORMAT,
                "pipeline": pipeline,
                "lexicon": _lexicon_payload(),
            }
        ),
        json.dumps({"format": PIPELINE_FORMAT, "lexicon": _lexicon_payload()}).encode(),
        joblib_dump(
            {
                "format": PIPELINE_FORMAT,
                "pipeline": build_pipeline(SEED),  # never fitted
                "lexicon": _lexicon_payload(),
            }
        ),
        joblib_dump(
            {
                "format": PIPELINE_FORMAT,
                "pipeline": "not a pipeline",
                "lexicon": _lexicon_payload(),
            }
        ),
    ]
    for data in foreign:
        with pytest.raises(IntegrityError):
            SentimentRuntime.from_artifact(data)


def test_classifier_with_another_tokenizer_is_refused(pipeline: Any) -> None:
    other = build_pipeline(SEED).set_params(tfidf__tokenizer=str.split)
    corpus = sentiment_corpus.generate(300, SEED)
    other.fit([r["text"] for r in corpus.rows], corpus.labels)
    payload = {
        "format": PIPELINE_FORMAT,
        "pipeline": other,
        "lexicon": shipped_lexicon().model_dump(mode="json"),
    }
    with pytest.raises(IntegrityError, match="tokenizer"):
        SentimentRuntime.from_artifact(joblib_dump(payload))


def test_lexicon_version_loads_without_scikit_learn(tmp_path: Path) -> None:
    """The baseline is JSON: serving it pays neither scikit-learn's import nor unpickling."""
    code = (
        "import sys\n"
        "from common.models.sentiment import SentimentRuntime, SentimentInstance\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "rt = SentimentRuntime.from_artifact(data)\n"
        "rt.predict([SentimentInstance(text='Profits rose.')], None)\n"
        "print(sorted(m for m in ('sklearn', 'joblib') if m in sys.modules))\n"
    )
    path = tmp_path / "lexicon.json"
    path.write_bytes(lexicon_artifact(shipped_lexicon()))
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.stdout.strip() == "[]"
