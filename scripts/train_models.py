"""Build the models, register them and promote them into the configured backends.

    python scripts/train_models.py                    # every model: next version, promoted
    python scripts/train_models.py --if-absent        # only models with no production version
    python scripts/train_models.py --models risk --data my_ipos.csv
    python scripts/train_models.py --models risk --export build/  # files for ipoctl register

Backends come from the IPO_ settings, so the same command fills the embedded SQLite store
on a laptop, or Firestore and Cloud Storage in a project.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import sys
from pathlib import Path

from tqdm import tqdm

from common.core.errors import NotFoundError, ServiceError
from common.registry.records import Registry, version_key
from common.services import Services
from tools.local import settings_or_exit
from tools.progress import bar
from tools.training.base import BuiltModel, register_built
from tools.training.builders import BUILDERS, build, build_order


def next_version(registry: Registry, model_id: str) -> str:
    versions = registry.list_versions(model_id)
    if not versions:
        return "1.0.0"
    major, minor, _patch = version_key(versions[-1].version)[:3]
    return f"{major}.{minor + 1}.0"


def export(built: BuiltModel, folder: Path) -> tuple[Path, Path]:
    """The artifact and its evidence as files, in the shape `ipoctl register` sends."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{built.model_id}-{hashlib.sha256(built.artifact).hexdigest()[:12]}"
    artifact = folder / f"{stem}.artifact"
    metadata = folder / f"{stem}.json"
    artifact.write_bytes(built.artifact)
    evidence = {
        "description": built.description,
        "metrics": built.metrics,
        "metrics_fresh_sample": built.metrics_fresh_sample,
        "tags": built.tags,
        "model_card": built.model_card,
        "golden_set": built.golden_set,
        "drift_baseline": built.drift_baseline,
        "explanation_baseline": built.explanation_baseline,
        "example": built.example,
        "reports": built.reports,
        "gate": built.gate,
    }
    metadata.write_text(json.dumps({k: v for k, v in evidence.items() if v}, indent=1) + "\n")
    return artifact, metadata


def _in_production(registry: Registry, model_id: str) -> str | None:
    try:
        return registry.get_model(model_id).production_version
    except NotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--models", default=",".join(BUILDERS), help="comma-separated ids")
    parser.add_argument("--if-absent", action="store_true", help="skip models in production")
    parser.add_argument("--seed", type=int, default=20261127, help="seed of the synthetic data")
    parser.add_argument("--data", type=Path, help="the user's CSV (one model at a time)")
    parser.add_argument(
        "--export",
        type=Path,
        metavar="DIR",
        help="write each built version to DIR (artifact + metadata for `ipoctl register`) "
        "instead of registering it",
    )
    args = parser.parse_args(argv)

    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(wanted) - set(BUILDERS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known: {sorted(BUILDERS)}")
    if args.data is not None and len(wanted) != 1:
        parser.error("--data trains one model: name it with --models")

    settings = settings_or_exit("train_models")
    services = Services.build(settings)
    registry = services.registry
    user = getpass.getuser()
    try:
        todo = []
        for model_id in build_order(wanted):
            current = _in_production(registry, model_id)
            if args.if_absent and current is not None:
                print(f"{model_id}: version {current} is in production; nothing to do")
            else:
                todo.append(model_id)
        for model_id in bar(todo, desc="building models", unit="model", disable=not todo):
            for built in build(model_id, seed=args.seed, data=args.data, registry=registry):
                if args.export is not None:
                    artifact, metadata = export(built, args.export)
                    tqdm.write(f"{model_id}: wrote {artifact} and {metadata}")
                    continue
                version = next_version(registry, built.model_id)
                source = args.data or f"the synthetic generator, seed {args.seed}"
                record = register_built(
                    services.lifecycle,
                    built,
                    version=version,
                    created_by=user,
                    reason=f"trained by train_models from {source}",
                )
                shown = ", ".join(
                    f"{k}={v:.3f}" for k, v in built.metrics.items() if not k.endswith("rows")
                )
                if built.promote:
                    tqdm.write(f"{model_id} {version} in production ({shown})")
                    continue
                tqdm.write(f"{model_id} {version} registered, {record.stage} ({shown})")
                if record.stage_reason:
                    tqdm.write(f"  not promoted: {record.stage_reason}")
    except (ServiceError, ValueError) as exc:
        print(f"train_models: {exc}", file=sys.stderr)
        return 1
    finally:
        services.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
