"""Attributions of a model's outputs to its input features, relative to a baseline.

Two methods, both independent of how a request reached them:

- ``sampled_shapley``: for each instance, ``paths`` random orders of its features; along
  each order the features switch one at a time from the baseline's value to the
  instance's, and each switch's change of the output is that feature's marginal
  contribution. The attribution is the mean over paths. Every path runs from the
  baseline to the instance, so its marginals sum to ``f(instance) - f(baseline)``
  exactly: the attributions are efficient on every path, not only in expectation. All
  instances' path steps are built first (identical coalitions evaluated once) and
  evaluated in one call.
- ``linear_attributions``: for an output additive in its inputs (a linear model's
  log-odds), each input's term at the instance minus its term at the baseline; exact.

The orders come from ``numpy.random.default_rng(seed)``, drawn afresh per instance, so
an instance's attributions depend on it, its baseline, ``paths`` and ``seed`` only, never
on the rest of the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Evaluate = Callable[[list[Any]], np.ndarray]
"""Model inputs -> outputs, one row per input and one column per explained output."""


@dataclass(frozen=True)
class Coalitions:
    """One instance against its baseline: its features, which of them equal the baseline's,
    and how to build the input that takes the features in ``mask`` from the instance and
    the others from the baseline."""

    names: tuple[str, ...]
    same: np.ndarray
    """Per feature, True when instance and baseline hold the same value: such a feature is
    always taken from the instance, so every step it makes is the identical input and its
    attribution is exactly 0."""
    compose: Callable[[np.ndarray], Any]


@dataclass(frozen=True)
class Attribution:
    """One output of one instance explained, in Vertex AI's field names."""

    output_name: str
    baseline_output_value: float
    instance_output_value: float
    feature_attributions: dict[str, float]
    approximation_error: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "output_name": self.output_name,
            "baseline_output_value": self.baseline_output_value,
            "instance_output_value": self.instance_output_value,
            "feature_attributions": self.feature_attributions,
            "approximation_error": self.approximation_error,
        }


def path_masks(features: int, paths: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The orders (paths x features) and each path's coalitions (paths x steps x features,
    steps = features + 1): step k holds the first k features of the order."""
    rng = np.random.default_rng(seed)
    orders = rng.permuted(np.tile(np.arange(features), (paths, 1)), axis=1)
    ranks = np.argsort(orders, axis=1)
    steps = np.arange(features + 1)
    masks = ranks[:, None, :] < steps[None, :, None]
    return orders, masks


def sampled_shapley(
    evaluate: Evaluate,
    instances: Sequence[Coalitions],
    output_names: Sequence[str],
    *,
    paths: int,
    seed: int,
) -> list[list[Attribution]]:
    """Per instance, per output: sampled Shapley attributions over ``paths`` orders.

    ``approximation_error`` is the sampling error of the attributions (the root sum of
    their squared standard errors over the paths) plus whatever the floating-point sum
    misses of ``instance_output_value - baseline_output_value``.
    """
    if paths < 2:
        raise ValueError("sampled Shapley needs at least two paths to state its error")
    inputs: list[Any] = []
    plans: list[tuple[np.ndarray, np.ndarray]] = []
    for instance in instances:
        orders, masks = path_masks(len(instance.names), paths, seed)
        masks |= instance.same  # such features never switch: identical inputs, exact 0
        unique, index = _distinct(masks.reshape(-1, len(instance.names)))
        plans.append((orders, index.reshape(paths, -1) + len(inputs)))
        inputs.extend(instance.compose(mask) for mask in unique)
    values = np.asarray(evaluate(inputs), dtype=np.float64).reshape(len(inputs), -1)
    out = []
    for instance, (orders, index) in zip(instances, plans, strict=True):
        stepped = values[index]  # paths x steps x outputs
        marginal = np.diff(stepped, axis=1)  # the change made by orders[p, k]
        per_feature = np.empty_like(marginal)
        np.put_along_axis(per_feature, orders[:, :, None], marginal, axis=1)
        attributions = per_feature.mean(axis=0)  # features x outputs
        spread = per_feature.std(axis=0, ddof=1) / math.sqrt(paths)
        sampling = np.sqrt((spread**2).sum(axis=0))
        out.append(
            _attributions(
                instance.names,
                output_names,
                baseline=stepped[0, 0],
                full=stepped[0, -1],
                attributions=attributions,
                error=sampling,
            )
        )
    return out


def _distinct(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct coalitions and each row's index among them; up to 62 features a
    coalition is one integer, which numpy compares far faster than rows."""
    if masks.shape[1] > 62:
        unique, index = np.unique(masks, axis=0, return_inverse=True)
        return unique, index.reshape(-1)
    keys = masks.astype(np.int64) @ (np.int64(1) << np.arange(masks.shape[1], dtype=np.int64))
    _, first, index = np.unique(keys, return_index=True, return_inverse=True)
    return masks[first], index.reshape(-1)


def linear_attributions(
    names: Sequence[str],
    output_names: Sequence[str],
    instance_terms: np.ndarray,
    baseline_terms: np.ndarray,
    constant: np.ndarray,
) -> list[list[Attribution]]:
    """Exact attributions of outputs that are ``constant + sum of one term per input``.

    ``instance_terms`` and ``baseline_terms`` are (instances x outputs x inputs), or the
    baseline's (outputs x inputs) once for all; ``constant`` is per output.
    """
    baseline_terms = np.broadcast_to(baseline_terms, instance_terms.shape)
    out = []
    for terms, reference in zip(instance_terms, baseline_terms, strict=True):
        out.append(
            _attributions(
                names,
                output_names,
                baseline=reference.sum(axis=1) + constant,
                full=terms.sum(axis=1) + constant,
                attributions=(terms - reference).T,
                error=np.zeros(len(output_names)),
            )
        )
    return out


def _attributions(
    names: Sequence[str],
    output_names: Sequence[str],
    *,
    baseline: np.ndarray,
    full: np.ndarray,
    attributions: np.ndarray,
    error: np.ndarray,
) -> list[Attribution]:
    """One Attribution per output; the error also covers the floating-point residual."""
    residual = np.abs(full - baseline - attributions.sum(axis=0))
    return [
        Attribution(
            output_name=name,
            baseline_output_value=float(baseline[k]),
            instance_output_value=float(full[k]),
            feature_attributions={
                feature: float(attributions[j, k]) for j, feature in enumerate(names)
            },
            approximation_error=float(error[k] + residual[k]),
        )
        for k, name in enumerate(output_names)
    ]
