"""Experiment handlers: design, assignment, delayed outcomes, results.

Permissions (declared in openapi.yaml): ``experiment:write`` creates and stops experiments
and records outcomes; ``experiment:read`` reads them and asks for an assignment. Asking for
another user's assignment (``user_id``) needs ``experiment:write``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, TypeAdapter

from common.errors import ForbiddenError
from common.experiments import Experiment, ExperimentDesign
from common.http import Call, Reply
from common.validation import StrictModel


class AssignRequest(StrictModel):
    user_id: str | None = Field(None, min_length=1, max_length=256)


class OutcomeRequest(StrictModel):
    request_id: str = Field(min_length=1, max_length=128)
    values: dict[str, float | bool] = Field(min_length=1, max_length=20)


class StopRequest(StrictModel):
    """Stopping takes no options; an empty object is the body."""


DESIGN = TypeAdapter(ExperimentDesign)
STOP = TypeAdapter(StopRequest)
ASSIGN = TypeAdapter(AssignRequest)
OUTCOME = TypeAdapter(OutcomeRequest)


def view(experiment: Experiment) -> dict[str, Any]:
    body = experiment.model_dump(mode="json", exclude={"salt"})
    return body


def create(call: Call) -> Reply:
    experiment = call.services.experiments.create(call.body, actor=call.principal.subject)
    call.services.snapshots.invalidate(experiment.model_id)
    call.labels.update(experiment_id=experiment.experiment_id, model_id=experiment.model_id)
    return Reply(view(experiment), status=201)


def get(call: Call) -> dict[str, Any]:
    return view(call.services.experiments.get(call.params["experiment_id"]))


def stop(call: Call) -> dict[str, Any]:
    service = call.services.experiments
    experiment = service.get(call.params["experiment_id"])
    if experiment.status == "active":
        experiment = service.finish(experiment, "stopped")
    call.services.snapshots.invalidate(experiment.model_id)
    return view(experiment)


def assign(call: Call) -> dict[str, Any]:
    body: AssignRequest = call.body
    user = call.principal.subject
    if body.user_id is not None and body.user_id != user:
        if not call.principal.allows("experiment:write"):
            raise ForbiddenError(
                "asking for another user's assignment needs experiment:write",
                details=[{"required_permission": "experiment:write"}],
            )
        user = body.user_id
    experiment = call.services.experiments.get(call.params["experiment_id"])
    variant = experiment.assign(user)
    return {
        "experiment_id": experiment.experiment_id,
        "user_id": user,
        "variant": variant,
        "model_id": experiment.model_id,
        "model_version": experiment.variants[variant],
        "active": experiment.status == "active",
    }


def outcome(call: Call) -> dict[str, Any]:
    body: OutcomeRequest = call.body
    service = call.services.experiments
    experiment = service.get(call.params["experiment_id"])
    answer = service.record_outcome(experiment, body.request_id, body.values)
    return {k: v for k, v in answer.items() if k != "written"}


def results(call: Call) -> dict[str, Any]:
    service = call.services.experiments
    experiment = service.get(call.params["experiment_id"])
    return {"experiment": view(experiment), "results": service.results(experiment)}
