"""Run an A/B experiment between the two sentiment versions, with outcomes that arrive later.

    python scripts/simulate_experiment.py [--users 2000] [--requests-per-user 2] [--seed 11]

Everything happens in a temporary embedded deployment: both sentiment versions are built
and registered (the lexicon in production), an experiment splits users 50/50 between the
lexicon (control) and the classifier (candidate), and every user asks for the sentiment of
held-out texts through the serving pipeline, 1 + Poisson(MEAN - 1) of them, so that users,
not predictions, are the unit the results analyse. Only afterwards, as analysts would days
later, each prediction's outcome is recorded by its exposure id: whether the label was right
(binary) and how far the score was from the text's true polarity (continuous, lower is
better). Then it prints the results the experiment_results function answers, as
``ipoctl experiment results`` shows them: the experiment's status, each arm's users and
outcomes, each comparison's difference with its Holm-level interval (ci_holm), and the
split check on users. A user's texts are drawn independently, so repeat use here adds
outcomes per user without making them alike.
"""

from __future__ import annotations

import argparse
import math
import secrets
import tempfile
from pathlib import Path

import numpy as np

from common.api.handlers.experiments import view
from common.backends import (
    Backends,
    build_artifact_store,
    build_document_store,
    build_key_wrapper,
)
from common.backends.env_secrets import EnvSecretSource
from common.core.config import Settings
from common.experiments.core import ExperimentDesign
from common.services import Services
from common.serving.pipeline import PredictRequest
from tools.cli.experiment_output import render_results
from tools.progress import bar
from tools.training import sentiment_builder, sentiment_corpus
from tools.training.base import register_built

POLARITY = {"negative": -1.0, "neutral": 0.0, "positive": 1.0}


def mean_requests(value: str) -> float:
    try:
        mean = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not (math.isfinite(mean) and 1.0 <= mean <= 100.0):
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and 100")
    return mean


def positive_users(value: str) -> int:
    try:
        users = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if users < 1:
        raise argparse.ArgumentTypeError(f"{users} is not a positive number of users")
    return users


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--users",
        type=positive_users,
        default=2000,
        metavar="N",
        help="simulated users, each assigned to one variant (default: 2000)",
    )
    parser.add_argument(
        "--requests-per-user",
        type=mean_requests,
        default=2.0,
        metavar="MEAN",
        help="mean predictions per user, 1..100: each user makes 1 + Poisson(MEAN - 1), "
        "each with its outcome; 1 gives every user exactly one (default: 2)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=11,
        help="seed of the versions built, the texts and the number of predictions per user, "
        "so the same seed gives the same run (default: 11)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed + 2)
    per_user = [1 + int(k) for k in rng.poisson(args.requests_per_user - 1.0, args.users)]
    total = sum(per_user)

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
        # An arm serves only production or a staging version that passes its gate.
        services.lifecycle.set_stage("sentiment", "1.1.0", "staging")
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
        experiment = services.experiments.create(
            design, actor="simulation", admit=services.lifecycle.serving_problems
        )
        texts = sentiment_corpus.generate(total, args.seed + 1)
        print(
            f"{args.users} users make {total} predictions "
            f"(1 + Poisson({args.requests_per_user - 1.0:g}) each)",
            flush=True,
        )

        served = []
        text = 0
        with bar(total=total, desc="predictions", unit="prediction") as progress:
            for user, requests in enumerate(per_user):
                for _ in range(requests):
                    answer = services.predictor.predict(
                        "sentiment",
                        PredictRequest(instances=[texts.rows[text]]),
                        request_id=f"sim-{text}",
                        subject=f"user-{user}",
                    )
                    served.append((answer, texts.labels[text]))
                    text += 1
                    progress.update()
        for answer, truth in bar(served, desc="outcomes, days later", unit="outcome"):
            prediction = answer["predictions"][0]
            services.experiments.record_outcome(
                experiment,
                answer["exposure_id"],
                {
                    "label_correct": prediction["label"] == truth,
                    "polarity_error": abs(prediction["score"] - POLARITY[truth]),
                },
            )
        current = services.experiments.get(experiment.experiment_id)
        found = {"experiment": view(current), "results": services.experiments.results(current)}
        print(render_results(found))
        services.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
