"""cognito_migration: move one Cognito user pool to Avnology ID.

preflight → extract (mapped over sub shards) + memberships → convert → staging dry run (mapped over batches)
→ gate → production import (mapped) → reset emails (mapped) → report

Wiring only: every task body is one call into the ``cognito_migration`` package (plugins/). XCom carries paths,
counts and ids; user records travel through run storage and the ledger.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import TriggerRule, dag, get_current_context, task

from cognito_migration.assets import CUTOVER_ASSET, cutover_event_extra
from cognito_migration.config import POOL_AVNOLOGY_WRITES, POOL_COGNITO_USERLIST, POOL_SMTP
from cognito_migration.gate import DryRunGateOperator
from cognito_migration.params import airflow_params, parse_params, skip_unless_stage

DOC = __doc__


def _run() -> tuple[Any, str]:
    ctx = get_current_context()
    return parse_params(dict(ctx["params"])), ctx["run_id"]


@dag(
    dag_id="cognito_migration",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    params=airflow_params(),
    tags=["cognito", "avnology", "migration"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=20), "retry_exponential_backoff": 2.0},
)
def cognito_migration() -> None:
    @task(retries=0)
    def preflight() -> dict[str, Any]:
        from cognito_migration.preflight import run_preflight

        params, run_id = _run()
        return run_preflight(params, run_id)

    # Every UserList caller takes a slot of the pool and paces itself at budget/slots (cognito_migration.extract).
    @task(pool=POOL_COGNITO_USERLIST, multiple_outputs=False, map_index_template="shard {{ task.op_kwargs['shard'] }}")
    def extract(shard: str) -> dict[str, Any]:
        from cognito_migration.extract import run_extract_shard

        params, run_id = _run()
        return run_extract_shard(params, run_id, shard)

    @task(pool=POOL_COGNITO_USERLIST, multiple_outputs=False)
    def memberships() -> dict[str, Any]:
        from cognito_migration.extract import run_memberships

        params, run_id = _run()
        return run_memberships(params, run_id)

    @task
    def shard_plan(plan: dict[str, Any]) -> list[str]:
        """Airflow maps only over a task's whole return value, so the shard list gets its own (trivial) task."""
        return list(plan["shards"])

    @task
    def convert() -> dict[str, Any]:
        from cognito_migration.convert_stage import run_convert

        params, run_id = _run()
        skip_unless_stage(params, "convert")
        return run_convert(params, run_id)

    @task
    def batch_plan(converted: dict[str, Any]) -> list[str]:
        """Airflow maps only over a task's whole return value, so the batch list gets its own (trivial) task."""
        return list(converted["batches"])

    @task(pool=POOL_AVNOLOGY_WRITES, map_index_template="{{ task.op_kwargs['batch_id'] }}")
    def dry_run(batch_id: str) -> dict[str, Any]:
        from cognito_migration.load import run_dry_run

        params, run_id = _run()
        return run_dry_run(params, run_id, batch_id)

    @task(pool=POOL_AVNOLOGY_WRITES, map_index_template="{{ task.op_kwargs['batch_id'] }}")
    def import_batch(batch_id: str) -> dict[str, Any]:
        from cognito_migration.load import run_import_batch

        params, run_id = _run()
        return run_import_batch(params, run_id, batch_id)

    @task
    def cutover_kit() -> dict[str, Any]:
        from cognito_migration.cutover_kit import build_cutover_kit

        params, run_id = _run()
        return build_cutover_kit(params, run_id)

    # One batch at a time everywhere (dag.test() ignores pools): the sending rate holds across batches.
    @task(pool=POOL_SMTP, max_active_tis_per_dagrun=1, map_index_template="{{ task.op_kwargs['batch_id'] }}")
    def send_emails(batch_id: str) -> dict[str, Any]:
        from cognito_migration.notify import send_batch_emails

        params, run_id = _run()
        return send_batch_emails(params, run_id, batch_id)

    # Runs whatever happened upstream, so a failed run still gets its report; fails if anyone is unaccounted for.
    @task(trigger_rule=TriggerRule.ALL_DONE, outlets=[CUTOVER_ASSET], retries=0)
    def report() -> dict[str, Any]:
        from cognito_migration.run_report import collect_stage_outputs, write_report

        params, run_id = _run()
        ctx = get_current_context()
        result = write_report(params, run_id, collect_stage_outputs(ctx["ti"]))
        ctx["outlet_events"][CUTOVER_ASSET].extra = cutover_event_extra(result, run_id=run_id, region=params.region)
        return result

    plan = preflight()
    members = plan >> memberships()
    converted = convert()
    [extract.expand(shard=shard_plan(plan)), members] >> converted
    batches = batch_plan(converted)
    # The gate checks the dry-run figures, then (require_approval) waits for a person in the UI; no retries.
    gate = DryRunGateOperator(task_id="gate", batch_ids=batches, retries=0)
    imported = dry_run.expand(batch_id=batches) >> gate >> import_batch.expand(batch_id=batches)
    emailed = imported >> send_emails.expand(batch_id=batches)
    kit = [plan, members] >> cutover_kit()
    [emailed, kit] >> report()


cognito_migration()
