"""Explain a batch of a model's instances against a baseline: the method, the outputs and
the features each kind of model is explained over (docs/EXPLANATIONS.md).

| kind | method | output (scale) | features |
|---|---|---|---|
| risk | exact: log-odds terms | per class, centred log-odds | input fields |
| dcf | sampled Shapley | value_per_share (USD) | input fields (families as one, see features) |
| cca | sampled Shapley | value_per_share (USD) | input fields |
| sentiment | sampled Shapley | score ([-1, 1]) | the text's sentences, against their absence |
| ensemble | sampled Shapley | value_per_share (USD) | each component's input fields |

``explain`` takes the loaded runtime (and a composite's components), the raw instances,
the baseline, the path count and the seed, and knows nothing of HTTP, so any route (v1
or an inference protocol's) answers from the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, ValidationError

from common.core.errors import InvalidValuesError
from common.core.validation import StrictModel, problems_from, raise_invalid
from common.explain.features import (
    dcf_groups,
    field_coalitions,
    flatten,
    present,
    sentence_coalitions,
    unflatten,
)
from common.explain.shapley import Attribution, Coalitions, linear_attributions, sampled_shapley
from common.models.base import Component, ModelRuntime
from common.models.dcf import DcfParameters, DcfRuntime
from common.models.ensemble import ROLES
from common.models.risk import CLASSES, FEATURES, RiskRuntime, to_matrix
from common.models.sentiment import SentimentInstance

DEFAULT_PATHS = 25
MIN_PATHS = 2
MAX_PATHS = 200
LEAN_DCF = {"monte_carlo": False, "sensitivity": False}
"""The DCF's value per share is its point estimate; the explanation's evaluations skip the
Monte Carlo and the grid, which do not change it."""
LEAN_DCF_IN_ENSEMBLE = DcfParameters(draws=100, sensitivity=False)
"""The ensemble reads the DCF's Monte Carlo range for its interval, not its value: its
evaluations run the DCF with the fewest draws allowed."""


class ExplanationParameters(StrictModel):
    """``parameters.explanation`` of an explain request; the rest of ``parameters`` are the
    model's own."""

    baseline: dict[str, Any] | None = Field(
        None,
        description="An instance of the model to explain against; default: the version's "
        "registered baseline.",
    )
    paths: int = Field(
        DEFAULT_PATHS,
        ge=MIN_PATHS,
        le=MAX_PATHS,
        description="Sampled Shapley: random feature orders per instance.",
    )
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seed of the feature orders.")


@dataclass(frozen=True)
class Explanation:
    method: str
    scale: str
    attributions: list[list[Attribution]]
    baseline: str
    """What the outputs were measured against: ``given`` (a baseline instance) or
    ``absence`` (a text's sentences against no text)."""
    feature_values: list[dict[str, str]] | None = None
    """Per instance, each feature's text, where a feature is not a field (sentences)."""


@dataclass(frozen=True)
class _Plan:
    """How one kind is explained."""

    outputs: tuple[str, ...]
    scale: str
    read: Callable[[list[dict[str, Any]]], list[list[Any]]] | None
    """The outputs of the model's answers; None where the runtime gives them unrounded."""


VALUE = _Plan(
    ("value_per_share",),
    "USD per share",
    lambda rows: [[row["value_per_share"]] for row in rows],
)
PLANS: Mapping[str, _Plan] = {
    "dcf": VALUE,
    "cca": VALUE,
    "ensemble": VALUE,
    "sentiment": _Plan(
        ("score",), "sentiment score in [-1, 1]", lambda r: [[x["score"]] for x in r]
    ),
    "risk": _Plan(
        CLASSES,
        "centred log-odds: log P(class) minus the mean log probability of the three classes",
        None,
    ),
}
NEEDS_BASELINE = ("dcf", "cca", "risk", "ensemble")
"""Kinds explained against a baseline instance; a text's baseline is its absence."""


def explain(
    runtime: ModelRuntime,
    instances: Sequence[Mapping[str, Any]],
    baseline: Mapping[str, Any] | None,
    *,
    paths: int = DEFAULT_PATHS,
    seed: int = 0,
    components: Mapping[str, Component] | None = None,
    max_details: int = 100,
) -> Explanation:
    """Attributions of each instance's outputs (``PLANS``), one batch of evaluations."""
    kind = runtime.kind
    plan = PLANS[kind]
    if kind in NEEDS_BASELINE:
        if baseline is None:
            raise InvalidValuesError(
                f"this {kind} version was registered without an explanation baseline; send "
                "one as parameters.explanation.baseline (an instance of the model)",
                details=[{"field": "parameters.explanation.baseline", "rule": "baseline_required"}],
            )
        _check_baseline(runtime, baseline, max_details)
    elif baseline is not None:
        raise InvalidValuesError(
            "a sentiment explanation measures each sentence against its absence and takes "
            "no baseline",
            details=[{"field": "parameters.explanation.baseline", "rule": "no_baseline"}],
        )
    if isinstance(runtime, RiskRuntime) and baseline is not None:
        exact = _risk_exact(runtime, instances, baseline)
        if exact is not None:
            return Explanation("exact_linear", plan.scale, exact, "given")
    feature_values: list[dict[str, str]] | None = None
    if kind == "sentiment":
        pairs = [sentence_coalitions(str(x["text"])) for x in instances]
        coalitions = [_owned(i, c) for i, (c, _) in enumerate(pairs)]
        feature_values = [values for _, values in pairs]
    else:
        assert baseline is not None
        coalitions = [_owned(i, _coalitions(runtime, x, baseline)) for i, x in enumerate(instances)]
    evaluate = _evaluator(runtime, plan, components or {}, max_details)
    found = sampled_shapley(evaluate, coalitions, plan.outputs, paths=paths, seed=seed)
    source = "absence" if kind not in NEEDS_BASELINE else "given"
    return Explanation("sampled_shapley", plan.scale, found, source, feature_values)


def _owned(owner: int, coalitions: Coalitions) -> Coalitions:
    """Each mix tagged with the instance it belongs to, for an error naming that instance."""
    compose = coalitions.compose
    return Coalitions(coalitions.names, coalitions.same, lambda mask: (owner, compose(mask)))


def _coalitions(
    runtime: ModelRuntime, instance: Mapping[str, Any], baseline: Mapping[str, Any]
) -> Coalitions:
    order = list(runtime.instance_schema.model_fields)
    if runtime.kind == "dcf":
        x, b = present(instance), present(baseline)
        return field_coalitions(x, b, order, dcf_groups(x, b))
    if runtime.kind != "ensemble":
        return field_coalitions(instance, baseline, order)
    x, b = flatten(instance), flatten(baseline)
    groups = [
        tuple(f"dcf.{name}" for name in group)
        for group in dcf_groups(present(instance["dcf"]), present(baseline["dcf"]))
    ]
    groups.append(tuple(sorted({k for k in (*x, *b) if k.startswith("sentiment.")})))
    # in role order, then by field name: the features' order, which the seed's orders
    # index, does not depend on the order a client wrote its keys in
    names = sorted(dict.fromkeys([*x, *b]), key=lambda k: (ROLES.index(k.split(".")[0]), k))
    flat = field_coalitions(x, b, names, [tuple(dict.fromkeys(g)) for g in groups if g])
    return Coalitions(flat.names, flat.same, lambda mask: unflatten(flat.compose(mask), ROLES))


def _check_baseline(runtime: ModelRuntime, baseline: Mapping[str, Any], max_details: int) -> None:
    try:
        runtime.instances_adapter().validate_python([dict(baseline)])
    except ValidationError as exc:
        problems = problems_from(exc)
        for problem in problems:
            problem["path"] = ["parameters", "explanation", "baseline", *problem["path"][1:]]
            problem["field"] = ".".join(str(p) for p in problem["path"])
        raise_invalid(problems, max_details, what="explanation baseline")


def _risk_exact(
    runtime: RiskRuntime, instances: Sequence[Mapping[str, Any]], baseline: Mapping[str, Any]
) -> list[list[Attribution]] | None:
    adapter = runtime.instances_adapter()
    rows = to_matrix(adapter.validate_python([dict(x) for x in instances]))
    found = runtime.log_odds_terms(rows)
    reference = runtime.log_odds_terms(to_matrix(adapter.validate_python([dict(baseline)])))
    if found is None or reference is None:
        return None
    terms, constant = found
    return linear_attributions(FEATURES, CLASSES, terms, reference[0][0], constant)


def _evaluator(
    runtime: ModelRuntime,
    plan: _Plan,
    components: Mapping[str, Component],
    max_details: int,
) -> Callable[[list[Any]], np.ndarray]:
    """Validate every mix in one call, predict them in one call, read the outputs."""
    kind = runtime.kind

    def evaluate(tagged: list[tuple[int, Any]]) -> np.ndarray:
        owners = [owner for owner, _ in tagged]
        mixes = [mix for _, mix in tagged]
        if kind == "sentiment":  # the empty text is the baseline; no schema admits it
            instances: list[Any] = [SentimentInstance.model_construct(text=t) for t in mixes]
        else:
            instances = _validated_mixes(runtime, mixes, owners, max_details)
        if kind == "risk":
            assert isinstance(runtime, RiskRuntime)
            logs = np.log(runtime.probabilities(to_matrix(instances)))
            centred: np.ndarray = logs - logs.mean(axis=1, keepdims=True)
            return centred
        if kind == "dcf":
            parameters = runtime.parameters_adapter().validate_python(LEAN_DCF)
            rows = runtime.predict(instances, parameters)
        elif components:
            lean = {role: _lean(c) for role, c in components.items()}
            rows = runtime.predict_composite(instances, None, lean)
        else:
            rows = runtime.predict(instances, runtime.parameters_adapter().validate_python({}))
        assert plan.read is not None
        values = np.array(
            [[math.nan if v is None else v for v in row] for row in plan.read(rows)],
            dtype=np.float64,
        )
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            owner = owners[int(np.argmax(bad))]
            raise InvalidValuesError(
                f"instance {owner} mixed with the baseline gives a value that is not finite; "
                "send a baseline closer to it in parameters.explanation.baseline",
                details=[{"field": f"instances[{owner}]", "rule": "explanation_not_finite"}],
            )
        return values

    return evaluate


def _validated_mixes(
    runtime: ModelRuntime, mixes: list[Any], owners: list[int], max_details: int
) -> list[Any]:
    """The mixes as validated instances; one that breaks a rule across fields is a 422
    naming its instance: that instance and the baseline cannot be mixed."""
    try:
        return list(runtime.instances_adapter().validate_python(mixes))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        owner = owners[int(first["loc"][0])]
        rule = ".".join(str(p) for p in first["loc"][1:])
        raise InvalidValuesError(
            f"instance {owner} cannot be explained against this baseline: mixing their "
            f"fields breaks the rule at {rule or 'the instance'} ({first['msg']}); send a "
            "baseline in the instance's style in parameters.explanation.baseline",
            details=[{"field": f"instances[{owner}]", "rule": "explanation_mix_invalid"}],
        ) from None


def _lean(component: Component) -> Component:
    if not isinstance(component.runtime, DcfRuntime):
        return component
    return Component(component.model_id, component.version, _LeanDcf(component.runtime))


class _LeanDcf(DcfRuntime):
    """A DCF component valued with the fewest Monte Carlo draws and no grid."""

    kind: ClassVar[str] = "dcf"

    def __init__(self, runtime: DcfRuntime) -> None:
        super().__init__(runtime.artifact)

    def predict(self, instances: Sequence[Any], parameters: Any) -> list[dict[str, Any]]:
        return super().predict(instances, LEAN_DCF_IN_ENSEMBLE)
