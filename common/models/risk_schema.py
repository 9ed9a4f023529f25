"""The risk model's data artifact: a fitted linear pipeline's numbers as one JSON document.

``ipo-risk-linear/1`` holds what ``engineer_features -> StandardScaler ->
LogisticRegression`` computes with: the feature transform's settings, the scaler's mean
and scale, and the coefficients, intercepts and classes of the multinomial logit. The
schema is closed and every number finite; the shapes must agree with each other, and
the runtime checks the names against the code that evaluates them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from common.core.validation import StrictModel
from common.models.base import check_linear_shapes

LINEAR_FORMAT = "ipo-risk-linear/1"
TRANSFORM = "engineer_features"

Finite = Annotated[float, Field(allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=64)]


class FeatureTransform(StrictModel):
    """``engineer_features``: ``one_hot`` over ``categories`` (in order), then the other
    inputs in ``features`` order, with ``log1p`` applied to the ones named there."""

    name: Literal["engineer_features"]
    one_hot: Name
    categories: list[Name] = Field(min_length=1)
    log1p: list[Name]


class Scaler(StrictModel):
    """StandardScaler: ``(x - mean) / scale`` per engineered feature."""

    mean: list[Finite] = Field(min_length=1)
    scale: list[Annotated[float, Field(gt=0, allow_inf_nan=False)]] = Field(min_length=1)


class RiskLinearArtifact(StrictModel):
    format: Literal["ipo-risk-linear/1"]
    features: list[Name] = Field(min_length=1)
    """The inputs, in the order of a row of ``to_matrix``."""
    transform: FeatureTransform
    scaler: Scaler
    classes: list[Name] = Field(min_length=2)
    """Row order of ``coef`` and ``intercept``."""
    coef: list[list[Finite]]
    intercept: list[Finite]

    @model_validator(mode="after")
    def _shapes_agree(self) -> RiskLinearArtifact:
        transform = self.transform
        if transform.one_hot not in self.features:
            raise ValueError(f"one_hot input {transform.one_hot!r} is not a feature")
        unknown = sorted(set(transform.log1p) - set(self.features))
        if unknown:
            raise ValueError(f"log1p names inputs that are not features: {unknown}")
        for name, values in (
            ("features", self.features),
            ("categories", transform.categories),
            ("classes", self.classes),
        ):
            if len(set(values)) != len(values):
                raise ValueError(f"{name} lists a name twice")
        width = len(transform.categories) + len(self.features) - 1
        sizes = {
            "scaler.mean": len(self.scaler.mean),
            "scaler.scale": len(self.scaler.scale),
            **{f"coef[{i}]": len(row) for i, row in enumerate(self.coef)},
        }
        check_linear_shapes(
            sizes,
            width,
            "one per engineered feature",
            classes=len(self.classes),
            coef_rows=len(self.coef),
            intercepts=len(self.intercept),
        )
        return self
