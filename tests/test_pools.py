"""Every pool a task names exists in deploy/pools.json, the file deployment imports (`airflow pools import`).

``dag.test()`` ignores pools, so a task naming a pool that deployment never creates would pass every other test
and then sit unscheduled in production.
"""

from __future__ import annotations

import json

from emulators.airflow_home import PROJECT_ROOT

POOLS_FILE = PROJECT_ROOT / "deploy" / "pools.json"


def _pools() -> dict[str, dict]:
    return json.loads(POOLS_FILE.read_text())


def test_pools_file_has_the_import_format() -> None:
    """`airflow pools import` skips (and reports as failed) any entry without slots and description."""
    pools = _pools()
    assert pools
    for name, spec in pools.items():
        assert isinstance(spec.get("slots"), int) and spec["slots"] >= 1, name
        assert isinstance(spec.get("description"), str) and spec["description"], name


def test_every_pool_a_task_names_is_provisioned() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert not bag.import_errors
    named = {(dag_id, task.task_id, task.pool) for dag_id, dag in bag.dags.items() for task in dag.tasks}
    missing = sorted((d, t, p) for d, t, p in named if p != "default_pool" and p not in _pools())
    assert not missing, f"tasks name pools missing from {POOLS_FILE}: {missing}"
    assert any(p == "cognito_userlist" for _, _, p in named), "the extract tasks must run in cognito_userlist"


def test_config_pools_exist_and_userlist_slots_match_the_budget_split() -> None:
    """Each UserList task paces itself at budget / USERLIST_SLOTS: more slots than that would overspend."""
    from cognito_migration import config
    from cognito_migration.extract import USERLIST_SLOTS

    pools = _pools()
    for name in (config.POOL_COGNITO_USERLIST, config.POOL_AVNOLOGY_WRITES, config.POOL_SMTP):
        assert name in pools
    assert pools[config.POOL_COGNITO_USERLIST]["slots"] == USERLIST_SLOTS
