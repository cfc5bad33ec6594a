"""An operator runs the migration up to the extract and gets the whole pool, with memberships, in the run folder.

The real DAG under ``dag.test()``: preflight snapshots the seeded pool (through the Cognito API on moto), the
mapped ``extract`` pages all 16 shards, ``memberships`` reads the groups. Nothing is stubbed.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from cognito_migration import storage
from cognito_migration.extract import extract_completeness, iter_extracted_users, read_memberships
from emulators.cognito_seed import seed_pool

pytestmark = pytest.mark.slow


def _xcoms(run: Any, task_id: str) -> list[Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(XComModel)
            .filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, key="return_value")
            .order_by(XComModel.map_index)
            .all()
        )
        return [json.loads(row.value) if isinstance(row.value, str) else row.value for row in rows]


def test_extract_stage_exports_every_user_and_membership(dagbag: Any, clean_stack: Any, ledger_url: str) -> None:
    client = clean_stack.cognito_client()
    pool = seed_pool(client, 150, seed=9, pool_name="extract-stage")
    dag = dagbag.get_dag("cognito_migration")

    run = dag.test(run_conf={"user_pool_id": pool.user_pool_id, "stop_after": "extract", "userlist_budget_rps": 30})

    assert run.state == "success"
    states = Counter((ti.task_id, ti.state) for ti in run.get_task_instances())
    assert states[("extract", "success")] == 16
    assert states[("memberships", "success")] == 1

    run_path = storage.run_dir(run.run_id)
    snapshot_text = (run_path / "snapshot.json").read_text()
    assert "ClientSecret" not in snapshot_text
    snapshot = json.loads(snapshot_text)
    assert {c["ClientName"]: c["HasSecret"] for c in snapshot["clients"]} == {
        "web-spa": False,
        "backend-confidential": True,
        "legacy-implicit": False,
    }
    assert len(snapshot["shards"]) == 16 and snapshot["domain"] == pool.domain
    assert {g["GroupName"] for g in snapshot["groups"]} == set(pool.groups)

    subs = [next(a["Value"] for a in u["Attributes"] if a["Name"] == "sub") for u in iter_extracted_users(run_path)]
    assert len(subs) == len(set(subs)) == pool.total and set(subs) == pool.subs
    memberships = read_memberships(run_path)
    assert sum(len(groups) for groups in memberships.values()) == pool.memberships
    assert extract_completeness(run_path)["status_counts"] == dict(sorted(pool.by_status.items()))

    shard_xcoms = _xcoms(run, "extract")
    assert sorted(x["shard"] for x in shard_xcoms) == snapshot["shards"]
    assert sum(x["users"] for x in shard_xcoms) == pool.total
    members_xcom = _xcoms(run, "memberships")[0]
    assert members_xcom["memberships"] == pool.memberships and members_xcom["path"].endswith("memberships.jsonl")
