"""The builders' risk model and sentiment classifier are served without scikit-learn.

Importing scikit-learn costs seconds of a function's cold start, and this test process
has it imported already (pyproject's warnings filter names one of its classes), so the
proof runs in a fresh interpreter: the models are registered here, then loaded from the
store through the registry's hash check and the pool, and used to predict, in a
subprocess that reports which of sklearn and joblib it ended up importing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.models.test_sentiment_builder import built as built_sentiment
from tests.support.fixtures import embedded_stack, register_risk
from tools.training.base import register_built

ROOT = Path(__file__).resolve().parents[2]

SERVE = """
import json, sys
from common.backends import build_backends
from common.core.config import Settings
from common.models.base import predict_rows
from common.registry.records import Registry
from common.serving.pool import ModelPool

settings = Settings.from_environ()
backends = build_backends(settings)
registry = Registry(backends.documents, backends.artifacts)
pool = ModelPool(registry, size=4)
answers = {}
for model_id, version in (("risk", "1.0.0"), ("sentiment", "1.1.0")):
    record = registry.get_version(model_id, version)
    runtime = pool.get(record).runtime
    rows = [g["instance"] for g in record.golden_set]
    answers[model_id] = {
        "class": type(runtime).__name__,
        "variant": getattr(runtime, "variant", None),
        "golden_set_reproduced": predict_rows(runtime, rows) == [
            g["expected"] for g in record.golden_set
        ],
    }
answers["imported"] = sorted(m for m in ("sklearn", "joblib") if m in sys.modules)
print(json.dumps(answers))
"""


def test_data_artifacts_load_and_predict_without_sklearn_or_joblib(tmp_path: Path) -> None:
    stack = embedded_stack(tmp_path)
    try:
        register_risk(stack.lifecycle, "1.0.0")
        lexicon, classifier = built_sentiment()
        register_built(stack.lifecycle, lexicon, version="1.0.0", created_by="tests")
        register_built(stack.lifecycle, classifier, version="1.1.0", created_by="tests")
    finally:
        stack.services.close()
    result = subprocess.run(
        [sys.executable, "-c", SERVE],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **stack.environ},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers == {
        "risk": {"class": "RiskRuntime", "variant": None, "golden_set_reproduced": True},
        "sentiment": {
            "class": "SentimentRuntime",
            "variant": "classifier",
            "golden_set_reproduced": True,
        },
        "imported": [],
    }
