"""An instance and its baseline as features: which input fields switch together, and the
inputs that mix them.

A feature is an input field, except where the instance and the baseline describe a thing
in different styles that cannot be mixed field by field: a DCF given ``wacc`` against a
baseline given CAPM inputs switches all discount-rate fields at once, and its name joins
them with ``+``. A text is split into its sentences, each a feature, the baseline being
the text's absence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from common.explain.shapley import Coalitions

DCF_STYLES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("revenue_growth", "growth_fade", "growth_rates", "projection_years"), "growth_rates"),
    (
        ("wacc", "risk_free_rate", "beta", "equity_risk_premium", "cost_of_debt", "debt_weight"),
        "wacc",
    ),
    (("terminal_method", "terminal_growth", "exit_ev_ebitda"), "terminal_method"),
)
"""Per family of DCF fields, the field whose use (presence, or value for the terminal
method) decides its style. Explicit growth rates fix the horizon, so a family that uses
``growth_rates`` on either side also switches as one."""

MAX_PASSAGES = 32
"""Most features a text is explained over: a longer text's sentences are grouped into this
many runs, so a text's cost is bounded whatever its length (docs/EXPLANATIONS.md)."""
_SENTENCE = re.compile(r"[^.;!?]*[.;!?]+\s*|[^.;!?]+$", re.DOTALL)
"""A sentence: up to and including its closing punctuation (``. ; ! ?``, the tokenizer's
clause boundaries) and the space after it; the last may lack the punctuation."""


def present(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row without its nulls: a field sent as null is a field left out."""
    return {k: v for k, v in row.items() if v is not None}


def dcf_groups(instance: Mapping[str, Any], baseline: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """The DCF families whose style differs between instance and baseline (or that use
    explicit growth rates), each as one group of the fields either side gives."""
    groups = []
    for family, decider in DCF_STYLES:
        if decider == "terminal_method":
            differs = instance.get(decider, "gordon") != baseline.get(decider, "gordon")
        elif decider == "growth_rates":
            differs = decider in instance or decider in baseline
        else:
            differs = (decider in instance) != (decider in baseline)
        used = tuple(f for f in family if f in instance or f in baseline)
        if differs and len(used) > 1:
            groups.append(used)
    return groups


def field_coalitions(
    instance: Mapping[str, Any],
    baseline: Mapping[str, Any],
    order: Sequence[str],
    groups: Sequence[tuple[str, ...]] = (),
) -> Coalitions:
    """Features over the fields either side gives (in ``order``); a mix takes each
    feature's fields from the instance or from the baseline, absent ones staying absent."""
    instance, baseline = present(instance), present(baseline)
    grouped = {name: group for group in groups for name in group}
    features: list[tuple[str, ...]] = []
    for name in order:
        if name not in instance and name not in baseline:
            continue
        group = grouped.get(name, (name,))
        if group not in features:
            features.append(group)
    same = np.array(
        [all(instance.get(f) == baseline.get(f) for f in group) for group in features],
        dtype=bool,
    )

    def compose(mask: np.ndarray) -> dict[str, Any]:
        mixed: dict[str, Any] = {}
        for group, own in zip(features, mask.tolist(), strict=True):
            source = instance if own else baseline
            mixed.update((f, source[f]) for f in group if f in source)
        return mixed

    return Coalitions(tuple("+".join(group) for group in features), same, compose)


def flatten(row: Mapping[str, Any]) -> dict[str, Any]:
    """``{"dcf": {"wacc": 0.1}}`` -> ``{"dcf.wacc": 0.1}``: one level, as a composite's
    instance nests its components'; a part that is not an object stays whole."""
    out: dict[str, Any] = {}
    for role, part in row.items():
        if isinstance(part, Mapping):
            out.update((f"{role}.{name}", value) for name, value in present(part).items())
        else:
            out[role] = part
    return out


def unflatten(row: Mapping[str, Any], roles: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {role: {} for role in roles}
    for key, value in row.items():
        role, _, name = key.partition(".")
        out[role][name] = value
    return out


def sentences(text: str) -> list[str]:
    """The text's sentences, whose concatenation is the text itself."""
    return _SENTENCE.findall(text) or [text]


def sentence_coalitions(text: str) -> tuple[Coalitions, dict[str, str]]:
    """Each sentence a feature against its absence, or, past ``MAX_PASSAGES`` sentences,
    each of that many runs of consecutive sentences; and each feature's text."""
    found = sentences(text)
    if len(found) <= MAX_PASSAGES:
        parts = found
        names = tuple(f"sentence_{i + 1}" for i in range(len(parts)))
    else:
        runs = np.array_split(np.arange(len(found)), MAX_PASSAGES)
        parts = ["".join(found[i] for i in run) for run in runs]
        names = tuple(f"sentences_{run[0] + 1}-{run[-1] + 1}" for run in runs)

    def compose(mask: np.ndarray) -> str:
        return "".join(part for part, own in zip(parts, mask.tolist(), strict=True) if own)

    same = np.array([not part.strip() for part in parts], dtype=bool)
    return Coalitions(names, same, compose), dict(zip(names, parts, strict=True))
