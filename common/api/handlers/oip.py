"""The Open Inference Protocol (KServe V2) routes, on the same serving path as ``/v1``.

Server routes (``/v2``, ``/v2/health/*``) run on ``list_models``. Each served model's
routes (``/v2/models/<model>[/versions/{version}][/ready|/infer]``) run on its own
``predict_<model>`` function, as ``/v1/predict/<model>`` does, since API Gateway routes by
path: the model is read from the route's path in openapi.yaml, one list of models for both
protocols. Inference decodes the tensors into the instances ``/v1/predict`` takes and goes
through the same ``Predictor`` (routing, cache, counts, drift sampling, exposures).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter

from common.api.calls import Call, Operation, Reply, Served
from common.api.oip.codec import InferenceRequest, decode_request
from common.api.oip.outputs import output_tensors
from common.api.oip.readiness import server_problems
from common.api.oip.signature import Signatures
from common.api.routes import all_routes, load_spec
from common.core.errors import ConflictError, NotFoundError, ServiceError
from common.core.validation import validate
from common.registry.records import ModelVersion, utcnow
from common.services import Services
from common.serving.pipeline import MAX_INSTANCES, PREDICT_REQUEST, ServingSnapshot

SERVER_NAME = "ipo-valuation"
HANDLER = "oip"
INFERENCE_REQUEST = TypeAdapter(InferenceRequest)
_MODEL_ROUTE = re.compile(
    r"^/v2/models/(?P<model>[^/{}]+)(?:/versions/\{version\})?"
    r"(?:/(?P<action>ready|infer|explain))?$"
)
EXTENSIONS = ["explain"]
"""``POST /v2/models/<model>/explain``: inference with attributions (docs/API.md)."""
EXPLANATION_PARAMETERS = {"explanation_paths": "paths", "explanation_seed": "seed"}
"""Request parameters that set the explanation (a v2 parameter is a scalar): the rest are
the model's, as in inference."""
NOT_READY = 400
"""Triton's status for "not ready": any non-2xx reads as not ready to tritonclient and to a
Kubernetes probe, and not being ready is an answer, not a server error."""

_signatures: tuple[Services, Signatures] | None = None
_signatures_lock = threading.Lock()


def signatures(services: Services) -> Signatures:
    """The instance's signatures, built with its services (a test's new services get new)."""
    global _signatures
    with _signatures_lock:
        if _signatures is None or _signatures[0] is not services:
            _signatures = (services, Signatures(services.snapshots, services.pool))
        return _signatures[1]


# --- server ---------------------------------------------------------------------------------


def server_live(call: Call) -> dict[str, Any]:
    return {"live": True}


def server_ready(call: Call) -> Any:
    problems = server_problems(call.services.registry, call.services.backends.artifacts)
    if problems:
        return Reply({"ready": False, "details": problems}, status=NOT_READY)
    return {"ready": True}


def server_metadata(call: Call) -> dict[str, Any]:
    """The one extension is ``explain``; answers are JSON only, without binary tensors."""
    version = str(load_spec()["info"]["version"])
    return {"name": SERVER_NAME, "version": version, "extensions": EXTENSIONS}


# --- one model ------------------------------------------------------------------------------


def serving_versions(snapshot: ServingSnapshot) -> list[str]:
    """What a client may name without more checks: production, canary, running arms."""
    found = [r.version for r in (snapshot.production, snapshot.canary) if r is not None]
    experiment = snapshot.experiment
    if experiment is not None and experiment.is_running(utcnow()):
        found += [r.version for _, r in sorted(snapshot.experiment_versions.items())]
    return list(dict.fromkeys(found))


def _production(snapshot: ServingSnapshot) -> ModelVersion:
    if snapshot.production is None:
        raise NotFoundError(
            f"model {snapshot.model_id!r} has no production version; promote one first"
        )
    return snapshot.production


def model_metadata(model_id: str) -> Callable[[Call], dict[str, Any]]:
    def handle(call: Call) -> dict[str, Any]:
        services = call.services
        snapshot = services.snapshots.get(model_id)
        version = call.params.get("version")
        record = (
            _production(snapshot)
            if version is None
            else services.registry.get_version(model_id, version)
        )
        signature = signatures(services).of(record)
        call.labels["model_version"] = record.version
        return {
            "name": model_id,
            "versions": serving_versions(snapshot),
            "platform": f"ipo_{record.kind}",
            "inputs": [spec.metadata(inputs=True) for spec in signature.inputs],
            "outputs": [spec.metadata(inputs=False) for spec in signature.outputs],
        }

    return handle


def model_ready(model_id: str) -> Callable[[Call], Any]:
    """Ready once the version (production, or the one named) may serve and is loaded with
    its components; a version that may not serve, or fails to load, is not ready, saying
    why (``NOT_READY``)."""

    def handle(call: Call) -> Any:
        services = call.services
        version = call.params.get("version")
        try:
            snapshot = services.snapshots.get(model_id)
            if version is None:
                record = _production(snapshot)
            else:
                record, _, _ = services.predictor.version_for(snapshot, version)
            services.predictor.load(record)
        except (ConflictError, NotFoundError) as exc:
            if version is not None and isinstance(exc, NotFoundError):
                raise  # a version that does not exist is 404, not "not ready"
            return _not_ready(model_id, exc)
        except ServiceError as exc:
            return _not_ready(model_id, exc)
        call.labels["model_version"] = record.version
        return {"name": model_id, "ready": True}

    return handle


def _not_ready(model_id: str, exc: ServiceError) -> Reply:
    message = exc.public_message if exc.status >= 500 else exc.message
    body = {"name": model_id, "ready": False, "details": [{"code": exc.code, "message": message}]}
    return Reply(body, status=NOT_READY)


def infer(model_id: str) -> Callable[[Call], Reply]:
    def handle(call: Call) -> Reply:
        services, request = call.services, call.body
        version = call.params.get("version")
        snapshot = services.snapshots.get(model_id)
        if version is None:
            record = _production(snapshot)
        else:
            record, _, _ = services.predictor.version_for(snapshot, version)
        signature = signatures(services).of(record)
        decoded = decode_request(request, signature.inputs, max_rows=MAX_INSTANCES)
        body = validate(
            PREDICT_REQUEST,
            {"instances": decoded.instances, "parameters": decoded.parameters},
            max_details=services.settings.max_error_details,
        )
        served = services.predictor.serve(
            model_id,
            body,
            subject=call.principal.subject,
            labels=call.labels,
            version=version,
        )
        outputs = output_tensors(served.predictions, signature.outputs, decoded.outputs)
        parameters: dict[str, Any] = {
            "variant": served.variant,
            "cache_hit": served.cache_hit,
            "request_id": call.request_id,
        }
        for name in ("experiment_id", "exposure_id"):
            value = getattr(served, name)
            if value is not None:  # a parameter is a string, number or boolean: never null
                parameters[name] = value
        answer = {
            "model_name": model_id,
            "model_version": served.model_version,
            "id": request.id if request.id is not None else call.request_id,
            "parameters": parameters,
            "outputs": outputs,
        }
        # the payload log keeps it as /v1 would: the same instances, the same predictions
        kept = Served(body.instances, body.parameters, served.body(call.request_id), served.kind)
        return Reply(answer, served=kept)

    return handle


def explain(model_id: str) -> Callable[[Call], dict[str, Any]]:
    """The ``explain`` extension: the tensors decoded as for inference, explained as
    ``/v1/explain`` explains (same routing, versions, baselines, budget and numbers), the
    predictions answered as output tensors beside Vertex AI's attribution fields.
    ``explanation_paths``, ``explanation_seed`` and ``explanation_baseline`` (an instance as
    a JSON string) in the request's parameters set the explanation."""

    def handle(call: Call) -> dict[str, Any]:
        from common.serving.explanations import explain_request

        services, request = call.services, call.body
        record = _production(services.snapshots.get(model_id))
        signature = signatures(services).of(record)
        decoded = decode_request(request, signature.inputs, max_rows=MAX_INSTANCES)
        parameters = dict(decoded.parameters)
        options: dict[str, Any] = {
            field: parameters.pop(name)
            for name, field in EXPLANATION_PARAMETERS.items()
            if name in parameters
        }
        if "explanation_baseline" in parameters:
            options["baseline"] = _baseline(parameters.pop("explanation_baseline"))
        try:
            body = validate(
                PREDICT_REQUEST,
                {
                    "instances": decoded.instances,
                    "parameters": {**parameters, "explanation": options},
                },
                max_details=services.settings.max_error_details,
            )
            found = explain_request(
                services.predictor,
                model_id,
                body,
                budget=services.settings.explain_budget,
                request_id=call.request_id,
                subject=call.principal.subject,
                labels=call.labels,
            )
        except ServiceError as exc:
            raise _named_as_sent(exc) from None
        outputs = output_tensors(found["predictions"], signature.outputs, decoded.outputs)
        answer = {
            "variant": found["variant"],
            "request_id": call.request_id,
            **{k: found[k] for k in ("experiment_id", "exposure_id") if found.get(k) is not None},
        }
        return {
            "model_name": model_id,
            "model_version": found["model_version"],
            "id": request.id if request.id is not None else call.request_id,
            "parameters": answer,
            "outputs": outputs,
            "explanations": found["explanations"],
            "explanation_metadata": found["explanation_metadata"],
        }

    return handle


_SENT_AS = {field: name for name, field in EXPLANATION_PARAMETERS.items()} | {
    "baseline": "explanation_baseline"
}
_OPTION_FIELD = re.compile(r"\bparameters\.explanation\.(" + "|".join(_SENT_AS) + r")\b")


def _named_as_sent(exc: ServiceError) -> ServiceError:
    """The error with each explanation option named as the request parameter the caller
    sent (``parameters.explanation_paths``), not as the ``/v1`` field it became
    (``parameters.explanation.paths``)."""

    def sent(found: re.Match[str]) -> str:
        return f"parameters.{_SENT_AS[found[1]]}"

    details = []
    for detail in exc.details:
        path = detail.get("path")
        if (
            isinstance(path, list)
            and path[:2] == ["parameters", "explanation"]
            and len(path) > 2
            and path[2] in _SENT_AS
        ):
            detail = {**detail, "path": ["parameters", _SENT_AS[path[2]], *path[3:]]}
        if isinstance(detail.get("field"), str):
            detail = {**detail, "field": _OPTION_FIELD.sub(sent, detail["field"])}
        details.append(detail)
    exc.message, exc.details = _OPTION_FIELD.sub(sent, exc.message), details
    return exc


def _baseline(text: Any) -> Any:
    """``explanation_baseline``: an instance written as a JSON string (a parameter of the
    protocol holds a string, a number or a boolean); the explanation checks it as an
    instance of the model."""
    import json

    from common.core.errors import MalformedRequestError

    try:
        value = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
        value = None
    if not isinstance(value, dict):
        raise MalformedRequestError(
            "parameter explanation_baseline must be a JSON object written as a string, "
            "an instance of the model"
        )
    return value


def _operations() -> dict[str, Operation]:
    table = {
        "serverLive": Operation(server_live),
        "serverReady": Operation(server_ready),
        "serverMetadata": Operation(server_metadata),
    }
    for route in all_routes():
        if route.handler != HANDLER or route.operation_id in table:
            continue
        match = _MODEL_ROUTE.fullmatch(route.path)
        if match is None:
            raise LookupError(f"{route.operation_id}: {route.path} is not a v2 model route")
        model_id, action = match["model"], match["action"]
        if action == "infer":
            table[route.operation_id] = Operation(infer(model_id), body=INFERENCE_REQUEST)
        elif action == "explain":
            table[route.operation_id] = Operation(explain(model_id), body=INFERENCE_REQUEST)
        elif action == "ready":
            table[route.operation_id] = Operation(model_ready(model_id))
        else:
            table[route.operation_id] = Operation(model_metadata(model_id))
    return table


OPERATIONS: dict[str, Operation] = _operations()
