"""The build-time proof that a data artifact is the pipeline it was written from.

A builder fits a scikit-learn pipeline, writes its numbers as a JSON data artifact and
serves only that. Before the artifact is accepted, the runtime loads it from its bytes,
exactly as serving will, and its probabilities are compared with the fitted pipeline's
``predict_proba`` on the held-out rows and the probes. A difference above ``TOLERANCE``
stops the build: what would be registered is not what was evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

TOLERANCE = 1e-9
"""Largest absolute difference allowed between any two probabilities."""


class ArtifactMismatchError(ValueError):
    """The data artifact does not reproduce its fitted pipeline; nothing is built."""


def same_probabilities(
    model: str,
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    tolerance: float = TOLERANCE,
) -> dict[str, object]:
    """Compare (pipeline, artifact) probabilities per named input set, columns aligned.

    Returns the evidence for the version's reports: the largest absolute difference and
    the row count per set, and the tolerance. Raises ArtifactMismatchError naming the
    worst set when any difference exceeds the tolerance or a shape differs.
    """
    worst: dict[str, float] = {}
    rows: dict[str, int] = {}
    for name, (expected, actual) in pairs.items():
        if expected.shape != actual.shape:
            raise ArtifactMismatchError(
                f"{model} data artifact gives probabilities of shape {actual.shape} on the "
                f"{name}, the fitted pipeline {expected.shape}; refusing to build"
            )
        worst[name] = float(np.max(np.abs(expected - actual))) if expected.size else 0.0
        rows[name] = int(expected.shape[0])
    name, largest = max(worst.items(), key=lambda item: item[1])
    if not largest <= tolerance:  # also catches NaN
        raise ArtifactMismatchError(
            f"{model} data artifact disagrees with its fitted pipeline: max |difference| of "
            f"a probability {largest:.3g} on the {name} ({rows[name]} rows), tolerance "
            f"{tolerance:g}; refusing to build"
        )
    return {"max_abs_diff": worst, "rows": rows, "tolerance": tolerance}
