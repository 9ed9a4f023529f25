"""What every model runtime provides: schemas, loading from bytes, batch prediction."""

from __future__ import annotations

import io
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import TypeAdapter

from common.core.errors import IncompatibleArtifactError, PickledModelsUnavailableError
from common.core.validation import StrictModel


class NoParameters(StrictModel):
    """Models that take no per-request parameters refuse any."""


class ModelRuntime(ABC):
    kind: ClassVar[str]
    classifier: ClassVar[bool] = False
    """Whether the output is a class (compliance asks such a model for a fairness report);
    a value model (dcf, cca, the ensemble) leaves it False."""
    instance_schema: ClassVar[type[StrictModel]]
    parameters_schema: ClassVar[type[StrictModel]] = NoParameters
    input_echoes: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """Input field -> the prediction fields (dotted) that repeat it or are worked out from
    it alone (a DCF answer shows the assumptions it rests on): a payload log that redacts
    the input drops these from what it keeps too."""

    @classmethod
    def instances_adapter(cls) -> TypeAdapter[list[Any]]:
        """Validates a whole batch in one call; built once per runtime class."""
        return _adapter(cls, "instances", list[cls.instance_schema])  # type: ignore[name-defined]

    @classmethod
    def parameters_adapter(cls) -> TypeAdapter[Any]:
        return _adapter(cls, "parameters", cls.parameters_schema)

    @classmethod
    def input_schema(cls) -> dict[str, Any]:
        """JSON Schema of one instance, as published by ``GET /v1/models/{id}``."""
        return cls.instance_schema.model_json_schema()

    @classmethod
    @abstractmethod
    def from_artifact(cls, data: bytes) -> ModelRuntime:
        """Build the runtime from artifact bytes whose hash was already verified."""

    @abstractmethod
    def predict(self, instances: Sequence[Any], parameters: Any) -> list[dict[str, Any]]:
        """One output per instance, in order, computed as one vectorised call."""

    def components(self) -> Mapping[str, str]:
        """Role -> model id of the models this one combines; empty for a plain model.

        Serving resolves each to its production version and passes the loaded models to
        ``predict_composite`` instead of calling ``predict``.
        """
        return {}

    def predict_composite(
        self,
        instances: Sequence[Any],
        parameters: Any,
        components: Mapping[str, Component],
    ) -> list[dict[str, Any]]:
        raise TypeError(f"a {self.kind} model combines no other models")


def predict_rows(
    runtime: ModelRuntime,
    rows: Sequence[dict[str, Any]],
    components: Mapping[str, Component] | None = None,
) -> list[dict[str, Any]]:
    """Validate plain rows and predict as serving does, with default parameters (and the
    components, for a composite): what builders, verification and the bench all run."""
    instances = runtime.instances_adapter().validate_python(list(rows))
    params = runtime.parameters_adapter().validate_python({})
    if components:
        return runtime.predict_composite(instances, params, components)
    return runtime.predict(instances, params)


@dataclass(frozen=True)
class Component:
    """One model a composite combines, as serving resolved it for this request."""

    model_id: str
    version: str
    runtime: ModelRuntime


_ADAPTERS: dict[tuple[type, str], TypeAdapter[Any]] = {}


def _adapter(owner: type, name: str, schema: Any) -> TypeAdapter[Any]:
    """Building a TypeAdapter costs far more than using one: build each once."""
    key = (owner, name)
    adapter = _ADAPTERS.get(key)
    if adapter is None:
        adapter = _ADAPTERS[key] = TypeAdapter(schema)
    return adapter


def joblib_load(data: bytes) -> Any:
    """Unpickle verified bytes; a scikit-learn version mismatch is an error, not a warning.

    joblib executes code while loading, so callers pass only bytes whose SHA-256 matched
    the registry record.
    """
    try:
        import joblib
        from sklearn.exceptions import InconsistentVersionWarning
    except ImportError as exc:  # deployed without them: scripts/package.py decides
        raise PickledModelsUnavailableError(
            f"a pickled artifact needs scikit-learn and joblib; {exc.name} is not installed "
            "in this function (build it with scripts/package.py --with-pickled-models)"
        ) from None

    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        try:
            return joblib.load(io.BytesIO(data))
        except InconsistentVersionWarning as exc:
            raise IncompatibleArtifactError(
                f"artifact pickled by scikit-learn {exc.original_sklearn_version}, "
                f"this instance runs {exc.current_sklearn_version}"
            ) from None


def joblib_dump(obj: Any) -> bytes:
    import joblib

    buffer = io.BytesIO()
    joblib.dump(obj, buffer, compress=3)
    return buffer.getvalue()


def check_linear_shapes(
    sizes: dict[str, int],
    width: int,
    expected: str,
    *,
    classes: int,
    coef_rows: int,
    intercepts: int,
) -> None:
    """Refuse a linear model's arrays whose lengths disagree: every vector in ``sizes`` has
    ``width`` entries (``expected`` says what one entry is), and there is one coefficient
    row and one intercept per class."""
    wrong = sorted(k for k, n in sizes.items() if n != width)
    if wrong:
        raise ValueError(f"{', '.join(wrong)}: expected {width} values, {expected}")
    if not coef_rows == intercepts == classes:
        raise ValueError(
            f"{classes} classes, {coef_rows} coefficient rows and {intercepts} intercepts"
        )
