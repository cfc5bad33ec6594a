"""The Asset that links the two DAGs: ``cognito_migration``'s report marks the cutover, the reconciliation wakes.

Defined once, here, so the producer (the migration DAG's ``report`` task, ``outlets=[CUTOVER_ASSET]``) and the
consumer (``cognito_reconciliation``'s schedule) cannot drift apart. The event's extra says which pool was cut
over and when; the ledger stays the source of truth for the window (``Ledger.first_cutover``), the event only
names the pool and starts the reconciliation at once instead of at the next cron tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Asset

CUTOVER_ASSET = Asset("cognito_migration_cutover")

EXTRA_KEYS = ("user_pool_id", "cutover_at", "window_days", "run_id", "region")


def cutover_event_extra(report: Mapping[str, Any], *, run_id: str, region: str) -> dict[str, Any]:
    """The extra of the cutover Asset event, from the report stage's result (``run_report.write_report``).

    ``cutover_at`` is None when the run stopped before the import (nothing was cut over); Airflow emits an
    outlet's event whenever the task succeeds, so the consumer reads that None as "no cutover in this event".
    """
    cutover_at = report.get("cutover_at")
    return {
        "user_pool_id": str(report["user_pool_id"]),
        "cutover_at": cutover_at.isoformat() if isinstance(cutover_at, datetime) else cutover_at,
        "window_days": int(report["window_days"]),
        "run_id": run_id,
        "region": region,
    }


@dataclass(frozen=True)
class CutoverEvent:
    """What a cutover Asset event said, validated (a malformed extra reads as None, never as a guess)."""

    user_pool_id: str
    cutover_at: datetime | None
    window_days: int | None
    run_id: str | None
    region: str | None


def parse_cutover_extra(extra: Mapping[str, Any] | None) -> CutoverEvent | None:
    """The event's extra as a :class:`CutoverEvent`; None when it names no pool."""
    if not isinstance(extra, Mapping):
        return None
    pool = extra.get("user_pool_id")
    if not isinstance(pool, str) or not pool:
        return None
    cutover_at = None
    raw = extra.get("cutover_at")
    if isinstance(raw, str) and raw:
        try:
            cutover_at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            cutover_at = None
        if cutover_at is not None and cutover_at.tzinfo is None:
            cutover_at = cutover_at.replace(tzinfo=UTC)
    days = extra.get("window_days")
    region = extra.get("region")
    run_id = extra.get("run_id")
    return CutoverEvent(
        user_pool_id=pool,
        cutover_at=cutover_at,
        window_days=days if isinstance(days, int) and not isinstance(days, bool) and days > 0 else None,
        run_id=run_id if isinstance(run_id, str) else None,
        region=region if isinstance(region, str) and region else None,
    )
