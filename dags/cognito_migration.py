"""cognito_migration: move one Cognito user pool to Avnology ID.

preflight → extract (mapped over sub shards) + memberships → convert → staging dry run (mapped over batches)
→ gate → production import (mapped) → reset emails (mapped) → report

Wiring only: every task body is one call into the ``cognito_migration`` package (plugins/). XCom carries paths,
counts and ids; user records travel through run storage and the ledger.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, get_current_context, task

from cognito_migration.config import POOL_COGNITO_USERLIST
from cognito_migration.params import airflow_params, parse_params

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
    default_args={"retries": 2, "retry_exponential_backoff": 2.0},
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

    plan = preflight()
    extract.expand(shard=shard_plan(plan))
    plan >> memberships()


cognito_migration()
