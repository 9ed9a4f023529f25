"""Train the demo models, register them and promote them into the configured backends.

    python scripts/train_models.py              # register the next version and promote it
    python scripts/train_models.py --if-absent  # only if the model has no production version

Backends come from the IPO_ settings, so the same command fills the embedded SQLite store
on a laptop or Firestore and Cloud Storage in a project.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.backends import build_backends
from common.config import Settings
from common.errors import NotFoundError
from common.models.risk import RiskRuntime
from common.registry import Registry, version_key
from common.training import risk_trainer, synthetic


def _next_version(registry: Registry, model_id: str) -> str:
    try:
        versions = registry.list_versions(model_id)
    except NotFoundError:
        versions = []
    if not versions:
        return "1.0.0"
    major, minor, patch = version_key(versions[-1].version)[:3]
    return f"{major}.{minor}.{patch + 1}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--if-absent", action="store_true", help="skip models already in production"
    )
    parser.add_argument("--seed", type=int, default=20261127, help="seed of the synthetic data")
    parser.add_argument("--samples", type=int, default=8000, help="rows of synthetic data")
    parser.add_argument("--version", help="version to register (default: next patch)")
    parser.add_argument("--no-promote", action="store_true", help="register only")
    args = parser.parse_args(argv)

    settings = Settings.from_environ()
    backends = build_backends(settings)
    registry = Registry(backends.documents, backends.artifacts)
    model_id = "risk"
    try:
        current = registry.get_model(model_id).production_version
    except NotFoundError:
        current = None
    if args.if_absent and current is not None:
        print(f"{model_id}: version {current} is in production; nothing to do")
        return 0

    print(f"{model_id}: generating {args.samples} synthetic IPOs (seed {args.seed})", flush=True)
    data = synthetic.generate(args.samples, args.seed)
    print(f"{model_id}: training", flush=True)
    trained = risk_trainer.train(data, seed=args.seed)
    version = args.version or _next_version(registry, model_id)
    record = registry.register(
        model_id=model_id,
        version=version,
        kind=RiskRuntime.kind,
        artifact=trained.artifact,
        created_by=getpass.getuser(),
        metrics=trained.metrics,
        description=trained.description,
        tags={**trained.tags, "dataset": f"synthetic-ipo seed={args.seed} n={args.samples}"},
        input_schema=RiskRuntime.input_schema(),
        example=trained.example,
    )
    shown = ", ".join(f"{k}={v:.3f}" for k, v in trained.metrics.items() if "rows" not in k)
    print(f"{model_id}: registered {record.version} ({shown})")
    if not args.no_promote:
        registry.set_production(model_id, record.version)
        print(f"{model_id}: {record.version} is now in production")
    backends.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
