"""MLServer as the reference server for ``bench.py http --against mlserver``.

The same risk model is served by both: the scikit-learn pipeline the risk builder fits
(engineer_features -> StandardScaler -> LogisticRegression), refitted here from the
training run's seed and checked to give the registered version's probabilities, pickled
with joblib and served by MLServer's scikit-learn runtime with ``predict_proba``. MLServer
runs from its own virtual environment (``make bench-deps``: .venv-bench), with the checkout
on its path so the pickle finds ``common.models.risk.engineer_features``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import bench_http as h
from bench_load import BodyTemplate

BENCH_VENV = h.ROOT / ".venv-bench"
MODEL = "risk"
TRAINING_SEED = 20261127
"""scripts/train_models.py's default seed: the bench trains the gateway's models with it."""
TRAINING_SAMPLES = 8000


def mlserver_command() -> list[str]:
    found = BENCH_VENV / "bin" / "mlserver"
    if not found.exists():
        raise RuntimeError(f"MLServer is not installed in {BENCH_VENV}: run `make bench-deps`")
    return [str(found)]


def mlserver_version() -> str:
    done = subprocess.run(
        [str(BENCH_VENV / "bin" / "python"), "-c", "import mlserver; print(mlserver.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def fitted_risk_pipeline(settings: Any) -> Any:
    """The registered risk version as a scikit-learn pipeline, refitted as the builder
    fits it; refused unless it gives that version's probabilities."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    from common.backends import build_backends
    from common.models.risk import CLASSES, RiskRuntime, probe_rows
    from common.registry.records import Registry
    from tools.training import risk_builder, synthetic

    data = synthetic.generate(TRAINING_SAMPLES, TRAINING_SEED)
    X_train, _, y_train, _ = train_test_split(
        data.X,
        data.y,
        test_size=0.25,
        random_state=TRAINING_SEED,
        stratify=data.y,
    )
    pipeline = risk_builder.build_pipeline(TRAINING_SEED).fit(X_train, y_train)
    backends = build_backends(settings)
    try:
        registry = Registry(backends.documents, backends.artifacts)
        version = registry.get_model(MODEL).production_version
        if version is None:
            raise RuntimeError("no risk version in production")
        record = registry.get_version(MODEL, version)
        runtime = RiskRuntime.from_artifact(registry.read_artifact(record))
    finally:
        backends.close()
    order = [[str(c) for c in pipeline.classes_].index(c) for c in CLASSES]
    rows = probe_rows()
    if not np.allclose(
        pipeline.predict_proba(rows)[:, order], runtime.probabilities(rows), rtol=0, atol=1e-9
    ):
        raise RuntimeError("the refitted risk pipeline differs from the registered version")
    return pipeline


def model_folder(folder: Path, pipeline: Any, ports: tuple[int, int, int]) -> Path:
    """MLServer's settings and the model's folder (model-settings.json, model.joblib)."""
    import joblib

    http_port, grpc_port, metrics_port = ports
    model_dir = folder / MODEL
    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, model_dir / "model.joblib")
    (folder / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": http_port,
                "grpc_port": grpc_port,
                "metrics_port": metrics_port,
            }
        )
    )
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": MODEL,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "1.0.0"},
            }
        )
    )
    return folder


def features(example: dict[str, Any]) -> list[float]:
    """The example instance as one row in FEATURES order (``to_matrix``)."""
    from common.models.risk import RiskInstance, to_matrix

    return [float(v) for v in to_matrix([RiskInstance.model_validate(example)])[0]]


def body_template(example: dict[str, Any], schema: dict[str, Any]) -> BodyTemplate:
    """A V2 inference request of one row asking for ``predict_proba``, the feature the
    gateway's risk-1 bodies move (the example's first float) moved the same way."""
    from common.models.risk import FEATURES

    path = h.first_float_leaf(example)
    if path is None or len(path) != 1:
        raise ValueError("the risk example has no top-level float to perturb")
    name = str(path[0])
    row: list[Any] = features(example)
    index = FEATURES.index(name)
    row[index] = h.SLOT
    body = {
        "inputs": [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": row}],
        "outputs": [{"name": "predict_proba"}],
    }
    parts = tuple(json.dumps(body, separators=(",", ":")).split(json.dumps(h.SLOT)))
    base = float(example[name])
    step = h.perturbation_step(base, h.leaf_schema({MODEL: schema}, MODEL, path))
    return BodyTemplate(parts, ((base, step),))


class MLServer:
    """``mlserver start`` on a folder, in its own process group; the same interface as
    bench_http.Gateway (start, pids, stop, base)."""

    path = f"/v2/models/{MODEL}/infer"

    def __init__(self, folder: Path, port: int, log: Path) -> None:
        self.folder, self.port, self.log = folder, port, log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, body: bytes, timeout_s: float = 180.0) -> float:
        """Start it; ms from process start to the first 200 on the model's infer route."""
        self.stop()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVER")}
        environ["PYTHONPATH"] = str(h.ROOT)
        with self.log.open("a") as sink:
            started = time.perf_counter()
            self.process = subprocess.Popen(
                [*mlserver_command(), "start", str(self.folder)],
                cwd=self.folder,
                env=environ,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            return h.first_200_ms(
                self.process,
                self.port,
                self.path,
                body,
                {"Content-Type": "application/json"},
                started=started,
                timeout_s=timeout_s,
                log=self.log,
                what="MLServer",
                poll_s=0.02,
            )
        except RuntimeError:
            self.stop()
            raise

    def pids(self) -> list[int]:
        return h.process_tree(self.process.pid) if self.process is not None else []

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            h.stop_group(process)
