"""Model lifecycle: stages, gated and verified promotion, canary rollout, rollback.

Stages run development -> staging -> production -> deprecated -> retired. People move a
version between development and staging and retire what no longer serves; production
and deprecated are reached only through promotion and rollback, which also keep every
version's stage in step with what serves.

Every serving-state change (production version, canary version and share) is one store
transaction that requires the generation seen when the change began, writes the model,
the stages it touches and an append-only deployment record together, and increments the
generation (``deployments.commit``). Of two simultaneous promotions one commits and the
other gets 409. Nothing about serving changes until the candidate has passed its gate and
its verification; a refusal is recorded as a failed deployment with its reason. Rollback,
its precondition and the answer to a retried rollback are in common/promotion/rollback.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from common.backends.base import DocumentStore, Filter, Order, Transaction
from common.core.errors import (
    ConflictError,
    GoneError,
    InvalidValuesError,
    PreconditionFailedError,
    ServiceError,
)
from common.models.base import Component
from common.promotion import arms
from common.promotion import gate as gates
from common.promotion import rollback as rollbacks
from common.promotion.verification import verify
from common.registry.deployments import (
    DEPLOYMENTS,
    Deployment,
    ServingState,
    commit,
    for_the_record,
)
from common.registry.records import (
    MODELS,
    VERSIONS,
    ModelRecord,
    ModelVersion,
    Registry,
    Stage,
    utcnow,
    version_doc_id,
)
from common.serving.pool import ModelPool

HISTORY_LIMIT = 200

MANUAL_TRANSITIONS: dict[str, frozenset[str]] = {
    "development": frozenset({"staging", "retired"}),
    "staging": frozenset({"development", "retired"}),
    "production": frozenset(),
    "deprecated": frozenset({"retired"}),
    "retired": frozenset(),
}
PROMOTABLE: frozenset[str] = frozenset({"staging", "deprecated"})


ComponentResolver = Callable[[Mapping[str, str]], dict[str, Component]]
ShadowEvidence = Callable[[str, str], Mapping[str, Any] | None]
"""(model id, version) -> the summary of that version's newest shadow evaluation, or None."""


class Lifecycle:
    def __init__(
        self,
        registry: Registry,
        documents: DocumentStore,
        resolve_components: ComponentResolver,
        clock: Callable[[], str] = utcnow,
        *,
        shadow_evidence: ShadowEvidence | None = None,
    ) -> None:
        self._registry = registry
        self._documents = documents
        self._resolve = resolve_components
        self._clock = clock
        self._shadow_evidence = shadow_evidence

    @property
    def registry(self) -> Registry:
        return self._registry

    # --- stages ------------------------------------------------------------------------
    def set_stage(
        self, model_id: str, version: str, stage: Stage, *, actor: str = "", reason: str = ""
    ) -> ModelVersion:
        current = self._registry.get_version(model_id, version)
        allowed = MANUAL_TRANSITIONS[current.stage]
        if stage not in allowed:
            via = (
                " (production and deprecated are reached by promotion and rollback)"
                if stage in ("production", "deprecated")
                else ""
            )
            raise ConflictError(
                f"{model_id} {version} is {current.stage}; it can move to "
                f"{', '.join(sorted(allowed)) or 'no other stage'}, not {stage}{via}"
            )
        known = arms.seeds(self._documents, model_id)
        now = self._clock()

        def move(tx: Transaction) -> ModelVersion:
            model_doc = tx.get(MODELS, model_id)
            doc = tx.get(VERSIONS, version_doc_id(model_id, version))
            # in this transaction: an experiment created meanwhile is seen, or sees this move
            arms.refuse_if_arm_in(tx, model_id, version, known=known, now=now)
            record = ModelVersion.model_validate(doc.data if doc else {})
            serving = ServingState.of(
                ModelRecord.model_validate(model_doc.data if model_doc else {})
            )
            if version in serving.versions():
                raise ConflictError(
                    f"{model_id} {version} is serving traffic; promote another version or roll "
                    "back before moving it"
                )
            if record.stage != current.stage:
                raise PreconditionFailedError(f"{model_id} {version} changed stage; retry")
            moved = {
                "stage": stage,
                "stage_reason": reason,
                "stage_changed_at": self._clock(),
                "stage_changed_by": actor,
            }
            tx.update(VERSIONS, version_doc_id(model_id, version), moved)
            return record.model_copy(update=moved)

        return self._documents.transaction(move)

    def serving_problems(
        self, candidate: ModelVersion, *, shadow: bool = True
    ) -> list[dict[str, Any]]:
        """The failed criteria keeping a staging version from an experiment's arm: the
        checks a canary passes (its gate's criteria, then verification), except the gate's
        experiment requirement, which an experiment is how to meet. ``shadow=False`` also
        leaves out the shadow criterion, for the shadow evaluation that is how to meet it."""
        model = self._registry.get_model(candidate.model_id)
        spec, results = self._gate(model, candidate, shadow=shadow)
        failed = [r for r in results if not r["passed"]]
        report = self._verify(candidate, spec)
        if not report["passed"]:
            message = "; ".join(report["problems"])
            failed.append({"criterion": "verification", "passed": False, "message": message})
        return failed

    def _gate(
        self, model: ModelRecord, candidate: ModelVersion, *, shadow: bool = True
    ) -> tuple[gates.GateSpec, list[dict[str, Any]]]:
        """The model's gate (defaults of its kind where it declared none) and the
        candidate's result on each criterion, the fresh-sample gaps and the shadow
        evaluation's bounds included."""
        spec = gates.spec_for(model.kind, model.gate)
        results = gates.evaluate(spec, candidate.metrics, candidate.metrics_fresh_sample)
        if shadow and spec.shadow is not None:
            found = None
            if self._shadow_evidence is not None:
                found = self._shadow_evidence(candidate.model_id, candidate.version)
            results += gates.evaluate_shadow(spec.shadow, found)
        return spec, results

    # --- promotion ---------------------------------------------------------------------
    def promote(
        self,
        model_id: str,
        version: str,
        *,
        actor: str,
        traffic_percentage: int = 100,
        expected_generation: int | None = None,
        reason: str = "",
    ) -> Deployment:
        """Move ``version`` into production (or a canary of ``traffic_percentage``) once
        it passes its gate and verification. The version it replaces becomes deprecated,
        with ``reason`` in its record: so a production version that is an arm of an active
        experiment is not replaced (409) until the experiment is stopped or ends."""
        model = self._registry.get_model(model_id)
        candidate = self._registry.get_version(model_id, version)
        before = ServingState.of(model)
        if expected_generation is not None and before.generation != expected_generation:
            raise PreconditionFailedError(
                f"{model_id} is at generation {before.generation}, not {expected_generation}"
            )
        if not 1 <= traffic_percentage <= 100:
            raise InvalidValuesError("traffic_percentage must be within 1..100")
        if candidate.stage == "retired":
            raise GoneError(f"{model_id} {version} is retired")
        if before.production_version == version:
            raise ConflictError(f"{model_id} {version} is already in production")
        if traffic_percentage < 100 and before.production_version is None:
            raise ConflictError(
                f"{model_id} has no production version; a canary needs one to share traffic with"
            )
        if candidate.stage not in PROMOTABLE:
            raise ConflictError(
                f"{model_id} {version} is {candidate.stage}; move it to staging before promoting"
            )
        check: Callable[[Transaction], None] | None = None
        if traffic_percentage == 100 and before.production_version is not None:
            replaced, now = before.production_version, self._clock()
            known = arms.seeds(self._documents, model_id)
            arms.refuse_if_arm(self._documents, model_id, replaced, now=now, known=known)

            def guard(tx: Transaction) -> None:  # answered early, and again where the
                # deprecation is written
                arms.refuse_if_arm_in(tx, model_id, replaced, known=known, now=now)

            check = guard

        spec, results = self._gate(model, candidate)
        if spec.require_experiment:
            results.append(
                arms.evidence(self._documents, self._registry, model_id, version, self._clock)
            )
        failed = [r for r in results if not r["passed"]]
        if failed:
            raise self._refused(
                model_id,
                version,
                traffic_percentage,
                actor,
                before,
                reason="promotion gate failed",
                message=f"{model_id} {version} does not meet its promotion gate: "
                + ", ".join(r["criterion"] for r in failed),
                details=failed,
                gate=results,
            )

        report = self._verify(candidate, spec)
        if not report["passed"]:
            raise self._refused(
                model_id,
                version,
                traffic_percentage,
                actor,
                before,
                reason="verification failed",
                message=f"{model_id} {version} failed verification: "
                + "; ".join(report["problems"]),
                details=[{"verification": report}],
                gate=results,
                verification=report,
            )

        if traffic_percentage == 100:
            # Any canary ends: it was judged against the production version now replaced.
            after = ServingState(production_version=version, generation=before.generation + 1)
        else:
            after = before.model_copy(
                update={
                    "canary_version": version,
                    "canary_percentage": traffic_percentage,
                    "generation": before.generation + 1,
                }
            )
        deployment = Deployment(
            deployment_id=uuid.uuid4().hex,
            model_id=model_id,
            kind="promote",
            status="succeeded",
            actor=actor,
            created_at=self._clock(),
            version=version,
            traffic_percentage=traffic_percentage,
            from_state=before,
            to_state=after,
            gate=results,
            verification=for_the_record(report),
            reason=reason,
        )
        commit(self._documents, deployment, may_start=PROMOTABLE, check=check)
        return deployment

    def _verify(self, candidate: ModelVersion, spec: gates.GateSpec) -> dict[str, Any]:
        """A report, never an exception: a candidate that cannot even run fails verification."""
        budget = next(
            (c.threshold for c in spec.criteria if c.metric == "latency_p95_ms" and c.op == "<="),
            None,
        )
        try:
            runtime = ModelPool(self._registry, size=1).get(candidate).runtime  # hash checked
            components = self._resolve(runtime.components()) if runtime.components() else None
            return verify(
                runtime, candidate.golden_set, components=components, latency_budget_ms=budget
            )
        except Exception as exc:
            message = exc.message if isinstance(exc, ServiceError) else type(exc).__name__
            return {
                "passed": False,
                "problems": [f"the candidate could not be run: {message}"],
                "golden_cases": len(candidate.golden_set),
                "golden_mismatches": [],
                "latency_p95_ms": None,
            }

    # --- rollback (common/promotion/rollback.py) -------------------------------------------------
    def rollback(
        self,
        model_id: str,
        *,
        actor: str,
        deployment_id: str | None = None,
        expected_generation: int | None = None,
        reason: str = "",
    ) -> Deployment:
        """Restore the state before the deployment that made the current state (or before
        the named successful deployment); a retry answers the rollback already made."""
        outcome = self.rollback_outcome(
            model_id,
            actor=actor,
            deployment_id=deployment_id,
            expected_generation=expected_generation,
            reason=reason,
        )
        return outcome.deployment

    def rollback_outcome(
        self,
        model_id: str,
        *,
        actor: str,
        deployment_id: str | None = None,
        expected_generation: int | None = None,
        reason: str = "",
    ) -> rollbacks.Outcome:
        """As ``rollback``, also saying whether the answer is an earlier rollback replayed."""
        return rollbacks.roll_back(
            self._registry,
            self._documents,
            model_id,
            actor=actor,
            clock=self._clock,
            deployment_id=deployment_id,
            expected_generation=expected_generation,
            reason=reason,
        )

    # --- history -----------------------------------------------------------------------
    def history(self, model_id: str, limit: int = HISTORY_LIMIT) -> list[Deployment]:
        self._registry.get_model(model_id)  # 404 for an unknown model
        docs = self._documents.query(
            DEPLOYMENTS,
            [Filter("model_id", "==", model_id)],
            [Order("created_at", descending=True)],
            limit,
        )
        return [Deployment.model_validate(d.data) for d in docs]

    def _refused(
        self,
        model_id: str,
        version: str,
        traffic_percentage: int,
        actor: str,
        before: ServingState,
        *,
        reason: str,
        message: str,
        details: list[dict[str, Any]],
        gate: list[dict[str, Any]],
        verification: dict[str, Any] | None = None,
    ) -> InvalidValuesError:
        """Record a refused promotion as a failed deployment; the error to raise for it."""
        failed = Deployment(
            deployment_id=uuid.uuid4().hex,
            model_id=model_id,
            kind="promote",
            status="failed",
            actor=actor,
            created_at=self._clock(),
            version=version,
            traffic_percentage=traffic_percentage,
            from_state=before,
            to_state=None,
            reason=reason,
            gate=gate,
            verification=for_the_record(verification or {}),
        )
        self._documents.create(DEPLOYMENTS, failed.deployment_id, failed.as_json())
        return InvalidValuesError(message, details=details)
