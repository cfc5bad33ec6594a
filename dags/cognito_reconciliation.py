"""cognito_reconciliation: the daily sweep during the window after cutover.

plan (window, or skip and say why) → preflight → extract (mapped over sub shards, its own lower budget)
+ memberships → diff against the ledger → carry-over of new and retried users through the migration's own
convert → staging dry run (mapped) → gate → production import (mapped) → reset emails (mapped)
∥ sync_existing (PATCH modified identities, disabled policy, deletions) → report → decommission (last day only)

Runs daily (``COGNITO_RECONCILIATION_CRON``, UTC) and when ``cognito_migration`` emits the cutover Asset.
Wiring only: every task body is one call into the ``cognito_migration`` package (plugins/).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, TriggerRule, dag, get_current_context, task

from cognito_migration.assets import CUTOVER_ASSET
from cognito_migration.config import POOL_AVNOLOGY_WRITES, POOL_COGNITO_USERLIST, POOL_SMTP
from cognito_migration.params import airflow_params, skip_unless_stage
from cognito_migration.reconcile_params import ReconcileParams, deployment_defaults, schedule_cron

DOC = __doc__


def _run(plan: dict[str, Any] | None = None) -> tuple[Any, Any, str]:
    """The run's form, the migration's params for the planned pool (None before the plan), and the run id."""
    from cognito_migration.reconcile_params import parse_reconcile_params
    from cognito_migration.reconcile_stage import pool_params

    ctx = get_current_context()
    params = parse_reconcile_params(dict(ctx["params"]))
    return params, pool_params(params, plan) if plan else None, ctx["run_id"]


@dag(
    dag_id="cognito_reconciliation",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(schedule_cron(), timezone="UTC"), assets=[CUTOVER_ASSET]
    ),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    params=airflow_params(ReconcileParams, deployment_defaults()),
    tags=["cognito", "avnology", "reconciliation"],
    default_args={"retries": 2, "retry_exponential_backoff": 2.0},
)
def cognito_reconciliation() -> None:
    @task(retries=0, inlets=[CUTOVER_ASSET])
    def plan() -> dict[str, Any]:
        from cognito_migration.reconcile_stage import asset_extras, plan_run

        params, _, run_id = _run()
        triggering, latest = asset_extras(get_current_context(), CUTOVER_ASSET)
        return plan_run(params, run_id, triggering=triggering, latest=latest)

    @task(retries=0)
    def preflight(plan: dict[str, Any]) -> dict[str, Any]:
        from cognito_migration.preflight import run_preflight

        _, mparams, run_id = _run(plan)
        return run_preflight(mparams, run_id)

    @task
    def shard_plan(checked: dict[str, Any]) -> list[str]:
        return list(checked["shards"])

    @task(pool=POOL_COGNITO_USERLIST, map_index_template="shard {{ task.op_kwargs['shard'] }}")
    def extract(plan: dict[str, Any], shard: str) -> dict[str, Any]:
        from cognito_migration.extract import run_extract_shard

        _, mparams, run_id = _run(plan)
        return run_extract_shard(mparams, run_id, shard)

    @task(pool=POOL_COGNITO_USERLIST)
    def memberships(plan: dict[str, Any]) -> dict[str, Any]:
        from cognito_migration.extract import run_memberships

        _, mparams, run_id = _run(plan)
        return run_memberships(mparams, run_id)

    @task
    def diff(plan: dict[str, Any]) -> dict[str, Any]:
        from cognito_migration.reconcile_stage import run_diff

        _, mparams, run_id = _run(plan)
        return run_diff(mparams, run_id)

    @task
    def convert(plan: dict[str, Any]) -> list[str]:
        from cognito_migration.reconcile_stage import run_carry_over_convert

        _, mparams, run_id = _run(plan)
        return run_carry_over_convert(mparams, run_id)

    @task(pool=POOL_AVNOLOGY_WRITES, map_index_template="{{ task.op_kwargs['batch_id'] }}")
    def dry_run(plan: dict[str, Any], batch_id: str) -> dict[str, Any]:
        from cognito_migration.load import run_dry_run

        _, mparams, run_id = _run(plan)
        skip_unless_stage(mparams, "dry_run")
        return run_dry_run(mparams, run_id, batch_id)

    @task(retries=0)
    def gate(plan: dict[str, Any], batch_ids: list[str]) -> dict[str, Any]:
        from cognito_migration.reconcile_stage import run_carry_over_gate

        _, mparams, run_id = _run(plan)
        return run_carry_over_gate(mparams, run_id, batch_ids)

    @task(pool=POOL_AVNOLOGY_WRITES, map_index_template="{{ task.op_kwargs['batch_id'] }}")
    def import_batch(plan: dict[str, Any], batch_id: str) -> dict[str, Any]:
        from cognito_migration.load import run_import_batch

        _, mparams, run_id = _run(plan)
        skip_unless_stage(mparams, "import")
        return run_import_batch(mparams, run_id, batch_id)

    @task(pool=POOL_SMTP, map_index_template="{{ task.op_kwargs['batch_id'] }}")
    def send_emails(plan: dict[str, Any], batch_id: str) -> dict[str, Any]:
        from cognito_migration.notify import send_batch_emails

        _, mparams, run_id = _run(plan)
        return send_batch_emails(mparams, run_id, batch_id)

    @task(pool=POOL_AVNOLOGY_WRITES)
    def sync_existing(plan: dict[str, Any]) -> dict[str, Any]:
        from cognito_migration.reconcile_stage import run_sync_existing

        params, mparams, run_id = _run(plan)
        return run_sync_existing(params, mparams, run_id)

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def report(plan: dict[str, Any] | None, emails: Any) -> dict[str, Any]:
        from cognito_migration.reconcile_stage import task_states, write_daily_report

        _, mparams, run_id = _run(plan)
        return write_daily_report(
            mparams, run_id, plan, email_outputs=emails or (), stages=task_states(get_current_context())
        )

    @task(retries=0)
    def decommission(plan: dict[str, Any]) -> dict[str, Any]:
        from cognito_migration.reconcile_stage import run_decommission

        params, mparams, run_id = _run(plan)
        return run_decommission(params, mparams, run_id, plan)

    planned = plan()
    checked = preflight(planned)
    shards = extract.partial(plan=planned).expand(shard=shard_plan(checked))
    members = memberships(planned)
    checked >> members
    found = diff(planned)
    [shards, members] >> found
    batches = convert(planned)
    found >> batches
    tried = dry_run.partial(plan=planned).expand(batch_id=batches)
    passed = gate(planned, batches)
    tried >> passed
    imported = import_batch.partial(plan=planned).expand(batch_id=batches)
    passed >> imported
    emailed = send_emails.partial(plan=planned).expand(batch_id=batches)
    imported >> emailed
    synced = sync_existing(planned)
    found >> synced
    daily = report(planned, emailed)
    [imported, synced] >> daily
    daily >> decommission(planned)


cognito_reconciliation()
