"""Deployment settings read from the environment, with the embedded defaults.

Connection ids are Airflow connections; everything else is a plain environment variable so that the same
code runs under ``dag.test()``, ``airflow standalone`` and docker-compose.
"""

from __future__ import annotations

import os
from pathlib import Path

# The Airflow connections the pipeline reads. docker-compose and the local stack set exactly these.
COGNITO_CONN_ID = "aws_cognito"
AVNOLOGY_STAGING_CONN_ID = "avnology_staging"
AVNOLOGY_PRODUCTION_CONN_ID = "avnology_production"
SMTP_CONN_ID = "smtp_default"

# Airflow pools that cap parallelism against external quotas (also in deploy/pools.json).
POOL_COGNITO_USERLIST = "cognito_userlist"
POOL_AVNOLOGY_WRITES = "avnology_writes"
POOL_SMTP = "smtp_sends"

ENV_STORAGE = "COGNITO_MIGRATION_STORAGE"
ENV_STORAGE_CONN_ID = "COGNITO_MIGRATION_STORAGE_CONN_ID"
ENV_LEDGER_URL = "COGNITO_MIGRATION_LEDGER_URL"
ENV_HOME = "COGNITO_MIGRATION_HOME"

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def home() -> Path:
    """Folder for the embedded defaults (ledger file, run storage): ``var/`` in the checkout unless overridden."""
    return Path(os.environ.get(ENV_HOME) or PROJECT_ROOT / "var")


def storage_url() -> str:
    return os.environ.get(ENV_STORAGE) or str(home() / "storage")


def storage_conn_id() -> str | None:
    return os.environ.get(ENV_STORAGE_CONN_ID) or None


def ledger_url() -> str:
    return os.environ.get(ENV_LEDGER_URL) or f"sqlite:///{home() / 'ledger.db'}"
