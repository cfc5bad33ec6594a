"""The trigger form of ``cognito_reconciliation``: the migration's form, plus the window and its policies.

It extends :class:`~cognito_migration.params.MigrationParams` because a reconciled user must be carried over
exactly as the migration carried the others (same convert policies, staging mode, email campaign). Scheduled
runs have no trigger form, so a deployment sets the defaults once, at parse time:

- ``COGNITO_RECONCILIATION_CRON``: when the daily sweep runs (cron, UTC; default ``0 3 * * *``);
- ``COGNITO_RECONCILIATION_DEFAULTS``: a JSON object of form values, e.g. ``{"email_mode": "send"}`` when the
  migration sent its emails (the form's own default stays ``preview``, the safe choice).
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from cognito_migration.params import EXTRACT, GATE, SOURCE, MigrationParams, ParamsError
from cognito_migration.reconcile import DISABLED_POLICY_DOC

ENV_CRON = "COGNITO_RECONCILIATION_CRON"
ENV_DEFAULTS = "COGNITO_RECONCILIATION_DEFAULTS"
DEFAULT_CRON = "0 3 * * *"
RECONCILE = "Reconciliation window"


def _field(default: Any, section: str, description: str, **kwargs: Any) -> Any:
    return Field(default, description=description, json_schema_extra={"section": section}, **kwargs)


class ReconcileParams(MigrationParams):
    user_pool_id: str = _field(
        "",
        SOURCE,
        "The Cognito user pool to reconcile. Empty: the pool of the latest `cognito_migration_cutover` event.",
        pattern=r"^$|^[\w-]+_[0-9a-zA-Z]+$",
    )
    userlist_budget_rps: float = _field(
        10.0,
        EXTRACT,
        "Requests/s the daily re-extract may spend of the **UserList** quota (30 RPS, shared with the live app). "
        "Lower than the migration's: the sweep has all day, the app does not.",
        gt=0,
        le=30,
    )
    max_reject_ratio: float = _field(
        1.0,
        GATE,
        "Stop before production when (invalid + conflict) / users in the day's dry run exceeds this ratio. Daily "
        "batches are small (one refused user of three is 33%), so by default only errors stop the import; every "
        "refused user is recorded with its reason either way.",
        ge=0,
        le=1,
    )
    window_days: int | None = _field(  # type: ignore[assignment]  # empty: as recorded at cutover
        None,
        RECONCILE,
        "Length of the window in days. Empty: as the migration recorded it at cutover (its own form, 30 by default).",
        ge=1,
        le=365,
    )
    disabled_since_import: Literal["soft_delete", "report"] = _field("soft_delete", RECONCILE, DISABLED_POLICY_DOC)
    final_report: bool = _field(
        False,
        RECONCILE,
        "Write the final 'safe to decommission' report (and purge) now, even before or after the window's last day.",
    )
    retention_days: int = _field(
        0,
        RECONCILE,
        "At the final report, purge the per-user files (raw pages, batches, rejects, email previews) of this "
        "pool's runs older than this many days; reports are kept. 0 purges every run.",
        ge=0,
        le=3650,
    )

    @model_validator(mode="after")
    def _no_approval(self) -> ReconcileParams:
        if self.require_approval:
            raise ValueError(
                "require_approval: the daily sweep does not wait for a person; its gate applies max_reject_ratio only"
            )
        return self


_RECONCILE_ONLY = frozenset(ReconcileParams.model_fields) - frozenset(MigrationParams.model_fields)


def parse_reconcile_params(raw: dict[str, Any]) -> ReconcileParams:
    """Validate a run's params; unlike the migration, the pool may be empty (the cutover event names it)."""
    known = {k: v for k, v in raw.items() if k in ReconcileParams.model_fields}
    try:
        return ReconcileParams.model_validate(known)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ParamsError(f"invalid reconciliation parameters: {problems}") from None


def for_pool(params: ReconcileParams, *, user_pool_id: str, region: str, window_days: int) -> MigrationParams:
    """The migration's params for the reused stages (extract, convert, dry run, import, emails) of one pool."""
    values = params.model_dump(exclude=set(_RECONCILE_ONLY) | {"window_days"})
    values.update(user_pool_id=user_pool_id, region=region, window_days=window_days)
    return MigrationParams.model_validate(values)


def deployment_defaults() -> dict[str, Any]:
    """The form defaults a deployment set in ``COGNITO_RECONCILIATION_DEFAULTS`` (validated: a typo fails the
    DAG's import with the field named, instead of every scheduled run)."""
    text = os.environ.get(ENV_DEFAULTS, "").strip()
    if not text:
        return {}
    try:
        values = json.loads(text)
    except ValueError as exc:
        raise ParamsError(f"{ENV_DEFAULTS} is not valid JSON: {exc}") from None
    if not isinstance(values, dict):
        raise ParamsError(f"{ENV_DEFAULTS} must be a JSON object of form fields")
    unknown = sorted(set(values) - set(ReconcileParams.model_fields))
    if unknown:
        raise ParamsError(f"{ENV_DEFAULTS} names fields the form does not have: {', '.join(unknown)}")
    parse_reconcile_params(values)
    return values


def schedule_cron() -> str:
    """The daily sweep's cron expression (UTC), from ``COGNITO_RECONCILIATION_CRON``."""
    return os.environ.get(ENV_CRON, "").strip() or DEFAULT_CRON
