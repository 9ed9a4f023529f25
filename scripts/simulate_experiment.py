"""Run an A/B experiment between the two sentiment versions, with outcomes that arrive later.

    python scripts/simulate_experiment.py [--users 2000] [--seed 11]

Everything happens in a temporary embedded deployment: both sentiment versions are built
and registered (the lexicon in production), an experiment splits users 50/50 between the
lexicon (control) and the classifier (candidate), every user asks for the sentiment of one
held-out text through the serving pipeline, and only afterwards, as analysts would days
later, each prediction's outcome is recorded by its exposure id: whether the label was right
(binary) and how far the score was from the text's true polarity (continuous, lower is
better). Then it prints the results the experiment_results function answers.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm

from common.backends import (
    Backends,
    build_artifact_store,
    build_document_store,
    build_key_wrapper,
)
from common.backends.env_secrets import EnvSecretSource
from common.config import Settings
from common.experiments import ExperimentDesign
from common.services import Services
from common.serving import PredictRequest, predict
from common.training import sentiment_builder, sentiment_corpus
from common.training.base import register_built

POLARITY = {"negative": -1.0, "neutral": 0.0, "positive": 1.0}


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{'metric':<18} {'variant':<10} {'n':>5} {'mean':>8} {'95% CI':>19} "
        f"{'lift':>8} {'p (Holm)':>9}  verdict"
    ]
    for variant, per_metric in results["comparisons"].items():
        for metric, cmp in per_metric.items():
            for arm_name, arm in (("control", cmp["control"]), (variant, cmp["variant"])):
                ci = arm.get("ci") or {}
                low, high = ci.get("low"), ci.get("high")
                interval = f"[{low:.4f}, {high:.4f}]" if low is not None else "-"
                extra = ""
                if arm_name == variant:
                    lift = cmp.get("lift") or {}
                    value = lift.get("estimate")
                    p = cmp.get("p_value_adjusted")
                    extra = (f"{value:>+8.2%} " if value is not None else f"{'-':>8} ") + (
                        f"{p:>9.2g}" if p is not None else f"{'-':>9}"
                    )
                    extra += f"  {cmp['verdict']}"
                lines.append(
                    f"{metric:<18} {arm_name:<10} {arm['count']:>5} {arm['mean']:>8.4f} "
                    f"{interval:>19} {extra}"
                )
    srm = results["srm"]
    lines.append(
        f"sample-ratio check: p = {srm['p_value']:.3g} "
        f"({'MISMATCH' if srm['mismatch'] else 'consistent with the design'})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        environ = {"IPO_DATA_DIR": folder, "IPO_ENV_FILE": str(Path(folder) / "none.env")}
        settings = Settings.from_environ(environ)
        key = {
            "IPO_SECRET_JWT_SIGNING_KEY": secrets.token_urlsafe(48),
            "IPO_SECRET_AUDIT_HMAC_KEY": secrets.token_urlsafe(48),
        }
        backends = Backends(
            documents=build_document_store(settings),
            artifacts=build_artifact_store(settings),
            secrets=EnvSecretSource(None, environ=key),
            keys=build_key_wrapper(settings),
        )
        services = Services.build(settings, backends)
        print("building both sentiment versions...", flush=True)
        lexicon, classifier = sentiment_builder.build(seed=args.seed)
        register_built(services.lifecycle, lexicon, version="1.0.0", created_by="simulation")
        register_built(services.lifecycle, classifier, version="1.1.0", created_by="simulation")
        design = ExperimentDesign.model_validate(
            {
                "model_id": "sentiment",
                "variants": {"control": "1.0.0", "candidate": "1.1.0"},
                "split": {"control": 0.5, "candidate": 0.5},
                "metrics": [
                    {"name": "label_correct", "type": "binary", "direction": "increase"},
                    {"name": "polarity_error", "type": "continuous", "direction": "decrease"},
                ],
            }
        )
        experiment = services.experiments.create(design, actor="simulation")
        texts = sentiment_corpus.generate(args.users, args.seed + 1)

        served = []
        for i in tqdm(range(args.users), desc="predictions", unit="user"):
            answer = predict(
                model_id="sentiment",
                request=PredictRequest(instances=[texts.rows[i]]),
                snapshots=services.snapshots,
                pool=services.pool,
                request_id=f"sim-{i}",
                subject=f"user-{i}",
                experiments=services.experiments,
            )
            served.append(answer)
        for i, answer in enumerate(tqdm(served, desc="outcomes, days later", unit="outcome")):
            prediction = answer["predictions"][0]
            truth = texts.labels[i]
            services.experiments.record_outcome(
                experiment,
                answer["exposure_id"],
                {
                    "label_correct": prediction["label"] == truth,
                    "polarity_error": abs(prediction["score"] - POLARITY[truth]),
                },
            )
        print(table(services.experiments.results(experiment)))
        services.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
