"""`make ui`: Airflow standalone (api-server, scheduler, dag-processor, triggerer) against the local stack.

Open http://localhost:8080, log in as ``admin`` with the password in the file printed below, unpause
``cognito_migration`` and trigger it from its form with the seeded pool id printed below.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from emulators.airflow_home import PROJECT_ROOT, airflow_env, migrate_db

UI_HOME = PROJECT_ROOT / "var" / "ui"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)

    home = UI_HOME / "airflow"
    os.environ.update(airflow_env(home))
    os.environ["COGNITO_MIGRATION_HOME"] = str(UI_HOME)
    os.environ["AIRFLOW__API__PORT"] = str(args.port)
    os.environ["AIRFLOW__API__HOST"] = "127.0.0.1"
    # `airflow standalone` starts its components as `airflow …` by name: the venv's bin must be on PATH.
    os.environ["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", "")))
    migrate_db(home)
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "pools", "import", str(PROJECT_ROOT / "deploy" / "pools.json")], check=True, timeout=120)

    from emulators.cognito_seed import seed_pool
    from emulators.stack import LocalStack, write_env_file

    with LocalStack() as stack:
        stack.apply_env()
        seeded = seed_pool(stack.cognito_client(), users=args.users)
        env_file = write_env_file(stack)
        print(f"\nSeeded pool:     {seeded.user_pool_id}  (Region {stack.config.region}) — paste it into the form")
        print(f"Airflow UI:      http://localhost:{args.port}  (user admin)")
        print(f"Admin password:  {home / 'simple_auth_manager_passwords.json.generated'}")
        print(f"Connections:     {env_file}")
        print(f"Emulator state:  {stack.avnology_url}/_emulator/state?tenant=production\n")
        try:
            return subprocess.call([airflow, "standalone"])
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
