"""Fake and small real models, and the helpers that install them: one place for all tests."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from common.backends import (
    Backends,
    build_artifact_store,
    build_document_store,
    build_key_wrapper,
)
from common.backends.env_secrets import EnvSecretSource
from common.core.config import Settings
from common.core.validation import StrictModel
from common.models.base import Component, ModelRuntime
from common.promotion.lifecycle import Lifecycle
from common.registry.records import ModelVersion, Registry
from common.security.auth import issue_token
from common.services import Services, use_services
from tools.training import risk_builder, synthetic
from tools.training.base import BuiltModel, register_built

SIGNING_KEY = "test-signing-key-that-is-long-enough-for-hs256-0123456789"
AUDIT_KEY = "test-audit-hmac-key-that-is-long-enough-0123456789abcdef"
SEED = 7


@cache
def trained_risk() -> BuiltModel:
    """A real risk model on a small synthetic sample; trained once per test session. Its
    750 held-out rows keep the per-sector rates of its fairness report near the population's
    (with fewer, a sector of some sixty rows can put the gap above its threshold)."""
    return risk_builder.train(synthetic.generate(3000, SEED), seed=SEED)


@cache
def risk_pipeline() -> Any:
    """A fitted scikit-learn risk pipeline of the builder's shape, as a user might pickle."""
    data = synthetic.generate(1500, SEED)
    return risk_builder.build_pipeline(SEED).fit(data.X, data.y)


def pickled_risk_artifact(pipeline: Any = None) -> bytes:
    """A user's own risk model: a joblib ``ipo-risk/1`` artifact (by default risk_pipeline)."""
    from common.models.base import joblib_dump
    from common.models.risk import FEATURES, PIPELINE_FORMAT

    fitted = risk_pipeline() if pipeline is None else pipeline
    return joblib_dump({"format": PIPELINE_FORMAT, "features": list(FEATURES), "pipeline": fitted})


def register_risk(
    lifecycle: Lifecycle, version: str = "1.0.0", *, promote: bool = True
) -> ModelVersion:
    """Register the session's risk model; promote it through gate and verification."""
    return register_built(
        lifecycle, trained_risk(), version=version, created_by="tests", promote=promote
    )


class SideEffect:
    """A pickle that creates a file when loaded: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def malicious_artifact(marker: Path) -> bytes:
    return pickle.dumps(SideEffect(marker))


@dataclass
class Stack:
    """An embedded deployment in a temp folder, wired exactly as a function instance."""

    settings: Settings
    services: Services
    environ: dict[str, str]

    @property
    def registry(self) -> Registry:
        return self.services.registry

    @property
    def lifecycle(self) -> Lifecycle:
        return self.services.lifecycle

    def token(
        self, permissions: tuple[str, ...] = ("admin",), subject: str = "tester", **kw: Any
    ) -> str:
        return issue_token(
            self.settings,
            self.services.backends.secrets,
            subject=subject,
            permissions=permissions,
            **kw,
        )

    def headers(self, permissions: tuple[str, ...] = ("admin",), **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(permissions, **kw)}"}


def embedded_stack(tmp_path: Path, **extra_environ: str) -> Stack:
    environ = {
        "IPO_DATA_DIR": str(tmp_path / "data"),
        "IPO_ENV_FILE": str(tmp_path / "absent.env"),
        "IPO_SECRET_JWT_SIGNING_KEY": SIGNING_KEY,
        "IPO_SECRET_AUDIT_HMAC_KEY": AUDIT_KEY,
        **extra_environ,
    }
    settings = Settings.from_environ(environ)
    backends = Backends(
        documents=build_document_store(settings),
        artifacts=build_artifact_store(settings),
        secrets=EnvSecretSource(settings.env_file, environ=environ),  # not os.environ
        keys=build_key_wrapper(settings),
    )
    services = Services.build(settings, backends)
    return Stack(settings=settings, services=services, environ=environ)


@contextmanager
def serving(stack: Stack, environ: Callable[[str, str], None]) -> Iterator[Stack]:
    """``stack`` as the instance's services for one test (``environ`` is monkeypatch's
    setenv); the stack itself outlives the test, as a module-scoped one does."""
    for key, value in stack.environ.items():
        environ(key, value)
    use_services(stack.services)
    try:
        yield stack
    finally:
        use_services(None, close_previous=False)


class ScaleInstance(StrictModel):
    x: float = Field(ge=0, le=1000)


class FakeComponent(ModelRuntime):
    """A stand-in for one ensemble component: its output is a known function of ``x``."""

    kind: ClassVar[str] = "fake"
    instance_schema: ClassVar[type[StrictModel]] = ScaleInstance

    def __init__(self, outputs: Callable[[float], dict[str, Any]]) -> None:
        self._outputs = outputs

    @classmethod
    def from_artifact(cls, data: bytes) -> FakeComponent:
        raise TypeError("fake components are built in tests, not loaded")

    def predict(self, instances: Sequence[Any], parameters: Any) -> list[dict[str, Any]]:
        return [self._outputs(i.x) for i in instances]


def fake_components(
    *, dcf: float = 20.0, cca: float = 30.0, risk_score: float = 50.0, sentiment: float = 0.0
) -> dict[str, Component]:
    """Components whose value scales with ``x`` (x = 1 gives the named values)."""
    runtimes = {
        "dcf": FakeComponent(
            lambda x: {
                "value_per_share": dcf * x,
                "monte_carlo": {"p5": 0.8 * dcf * x, "p50": dcf * x, "p95": 1.2 * dcf * x},
            }
        ),
        "cca": FakeComponent(
            lambda x: {
                "value_per_share": cca * x,
                "blended_value_per_share": {
                    "p25": 0.9 * cca * x,
                    "p50": cca * x,
                    "p75": 1.1 * cca * x,
                },
            }
        ),
        "risk": FakeComponent(lambda x: {"risk_score": risk_score, "risk_class": "medium"}),
        "sentiment": FakeComponent(lambda x: {"score": sentiment, "label": "neutral"}),
    }
    return {role: Component(role, "1.0.0", runtime) for role, runtime in runtimes.items()}


def hand_company(**overrides: Any) -> dict[str, Any]:
    """Every input given, so no default of the assumption set plays a part."""
    row: dict[str, Any] = {
        "revenue_musd": 100.0,
        "growth_rates": [0.20, 0.10, 0.05],
        "operating_margin": 0.20,
        "tax_rate": 0.25,
        "depreciation_to_revenue": 0.05,
        "capex_to_revenue": 0.07,
        "working_capital_to_revenue": 0.10,
        "wacc": 0.10,
        "terminal_method": "gordon",
        "terminal_growth": 0.03,
        "mid_year": False,
        "net_debt_musd": 50.0,
        "shares_outstanding_m": 10.0,
    }
    row.update(overrides)
    return row
