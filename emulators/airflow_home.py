"""The local Airflow home: SQLite metadata DB, our dags/ and plugins/, no examples.

The demo, ``make ui`` and the DAG tests all build their environment here, so they run the same Airflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def airflow_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        # A million-user pool makes ~1,200 batches (500 KB each): above Airflow's default of 1,024 mapped copies.
        "AIRFLOW__CORE__MAX_MAP_LENGTH": "10000",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(PROJECT_ROOT / "plugins"), str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }


def migrate_db(home: Path) -> None:
    """``airflow db migrate`` once per home (about 3 s on SQLite); a marker file skips it afterwards."""
    marker = home / ".migrated"
    if marker.exists():
        return
    env = {**os.environ, **airflow_env(home)}
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run(
        [str(airflow), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"`airflow db migrate` failed in {home}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    marker.touch()
