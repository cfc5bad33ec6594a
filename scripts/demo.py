"""`make demo`: the whole migration on the local stack, start to finish, in one process.

Starts moto (Cognito), the Avnology emulator and the SMTP sink on free loopback ports, seeds a realistic pool,
runs the real ``cognito_migration`` DAG with ``dag.test()``, prints a summary and where the run's files are,
and stops the stack. Everything lives under ``var/demo/`` (wiped at the start of each demo).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from typing import Any

from emulators.airflow_home import PROJECT_ROOT, airflow_env, migrate_db

DEMO_HOME = PROJECT_ROOT / "var" / "demo"


def _prepare_environment(fresh: bool) -> None:
    if fresh and DEMO_HOME.exists():
        shutil.rmtree(DEMO_HOME)
    DEMO_HOME.mkdir(parents=True, exist_ok=True)
    os.environ.update(airflow_env(DEMO_HOME / "airflow"))
    os.environ["COGNITO_MIGRATION_HOME"] = str(DEMO_HOME)
    os.environ.pop("COGNITO_MIGRATION_STORAGE", None)
    os.environ.pop("COGNITO_MIGRATION_LEDGER_URL", None)
    for plugin_path in (str(PROJECT_ROOT / "plugins"), str(PROJECT_ROOT)):
        if plugin_path not in sys.path:
            sys.path.insert(0, plugin_path)


def run_migration_dag(conf: dict[str, Any]) -> Any:
    """Run ``cognito_migration`` with ``dag.test()``; returns the finished DagRun."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    return bag.get_dag("cognito_migration").test(run_conf=conf)


def print_summary(dag_run: Any, user_pool_id: str, stack: Any) -> None:
    from cognito_migration import storage
    from cognito_migration.ledger import Ledger

    run_path = storage.run_dir(dag_run.run_id)
    print("\n=== cognito_migration demo ===")
    print(f"DAG run:      {dag_run.run_id} -> {dag_run.state}")
    print(f"User pool:    {user_pool_id}")
    report = run_path / "report.json"
    if report.exists():
        data = json.loads(report.read_text())
        conservation = data.get("conservation", {})
        print(f"Conservation: {conservation.get('equation', '')}  ({'OK' if conservation.get('holds') else 'BROKEN'})")
    counts = Ledger().create_schema().counts(user_pool_id)
    print("Ledger:       " + ", ".join(f"{status}={n}" for status, n in sorted(counts.items())))
    state = stack.avnology.state("production") if hasattr(stack.avnology, "state") else {}
    if state:
        print(f"Avnology:     {len(state.get('identities', []))} identities in the production tenant")
    print(f"Emails:       {len(stack.smtp.messages)} received by the SMTP sink")
    print(f"Run folder:   {run_path}")
    for name in ("report.html", "report.json", "cutover/kit.md", "rejects.csv"):
        if (run_path / name).exists():
            print(f"              {run_path / name}")


def reconcile(stack: Any, user_pool_id: str, email_mode: str) -> bool:
    """`make demo-reconcile`: after the migration, change users in Cognito, run the daily sweep, print what it did.

    Two late sign-ups (one in a group), one user renamed, one disabled, one deleted; then ``cognito_reconciliation``
    twice: the sweep, and a second run the same day that does nothing.
    """
    from airflow.dag_processing.dagbag import DagBag

    from cognito_migration import storage
    from cognito_migration.ledger import Ledger
    from emulators import cognito_seed as seed

    client = stack.cognito_client()
    imported = Ledger().create_schema().users(user_pool_id, statuses=["imported"])
    modified, disabled, deleted = [u for u in imported if u["cognito_enabled"] and not u["federated"]][:3]
    added = [
        seed.add_user(client, user_pool_id, f"late_signup_{i}", f"late.signup{i}@example.com", groups=groups)
        for i, groups in enumerate((["viewers"], []))
    ]
    seed.modify_user(client, user_pool_id, modified["username"], given_name="Renamed", family_name="Since-Cutover")
    seed.disable_user(client, user_pool_id, disabled["username"])
    seed.delete_user(client, user_pool_id, deleted["username"])
    print("\n=== cognito_reconciliation demo: changes made in Cognito after the migration ===")
    print(f"Signed up:    {', '.join(added)}")
    print(f"Renamed:      {modified['sub']}   Disabled: {disabled['sub']}   Deleted: {deleted['sub']}")

    dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).get_dag("cognito_reconciliation")
    conf = {"user_pool_id": user_pool_id, "region": stack.config.region, "email_mode": email_mode}
    sent_before = len(stack.smtp.messages)
    first = dag.test(run_conf=conf)
    report_path = storage.run_dir(first.run_id) / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    sync = report.get("sync", {})
    print(
        f"\nDaily sweep:  {first.run_id} -> {first.state} (day {report.get('day')}, complete={report.get('complete')})"
    )
    print("Diff:         " + ", ".join(f"{k}={v}" for k, v in sorted(report.get("counts", {}).items())))
    for user in report.get("carried_over_today", []):
        print(f"Carried over: {user['sub']} -> {user['avnology_id']}")
    for user in sync.get("users", []):
        fields = f" fields {','.join(user['mask'])}" if user["mask"] else ""
        print(f"{user['category'].capitalize() + ':':<14}{user['sub']} -> {user['outcome']}{fields}")
    for sub in report.get("deleted_in_cognito", []):
        print(f"Deleted:      {sub} -> reported only (identity kept in Avnology)")
    print(f"Emails:       {len(stack.smtp.messages) - sent_before} sent by the sweep")
    print(f"Report:       {report_path.with_suffix('.html')}")

    second = dag.test(run_conf=conf)
    skipped = [ti.task_id for ti in second.get_task_instances() if ti.task_id == "plan" and ti.state == "skipped"]
    print(
        f"Second run:   {second.run_id} -> {second.state}; "
        + ("already reconciled today, did nothing" if skipped else "ran again")
    )
    return str(first.state).endswith("success") and str(second.state).endswith("success") and bool(skipped)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=2000, help="users to seed into the demo pool")
    parser.add_argument("--email-mode", default="send", choices=["preview", "send", "off"])
    parser.add_argument("--reconcile", action="store_true", help="then change users and run the daily reconciliation")
    args = parser.parse_args(argv)

    _prepare_environment(fresh=True)
    migrate_db(DEMO_HOME / "airflow")

    from emulators.cognito_seed import seed_pool
    from emulators.stack import LocalStack

    started = time.monotonic()
    with LocalStack() as stack:
        stack.apply_env()
        seeded = seed_pool(stack.cognito_client(), users=args.users)
        print(f"Seeded {args.users} users into {seeded.user_pool_id} in {time.monotonic() - started:.1f} s")
        conf = {"user_pool_id": seeded.user_pool_id, "region": stack.config.region, "email_mode": args.email_mode}
        dag_run = run_migration_dag(conf)
        print_summary(dag_run, seeded.user_pool_id, stack)
        migrated = str(dag_run.state) in ("success", "DagRunState.SUCCESS")
        reconciled = reconcile(stack, seeded.user_pool_id, args.email_mode) if args.reconcile and migrated else True
    print(f"Wall time:    {time.monotonic() - started:.1f} s")
    return 0 if migrated and reconciled else 1


if __name__ == "__main__":
    raise SystemExit(main())
