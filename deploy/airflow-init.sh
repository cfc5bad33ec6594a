#!/usr/bin/env bash
# docker-compose's airflow-init: runs once, as root, before every other Airflow service starts. Safe to re-run.
#   1. migrate the metadata database and create the admin user (the image's entrypoint does both, driven by
#      _AIRFLOW_DB_MIGRATE and _AIRFLOW_WWW_USER_CREATE);
#   2. import the pools from deploy/pools.json: they cap the tasks that call Cognito, Avnology and SMTP at once,
#      sized to the quota budgets, however many workers run;
#   3. create the ledger's database and tables (deploy/ledger_init.py);
#   4. hand the folders to AIRFLOW_UID, with run storage private (it holds personal data).
set -euo pipefail

APP=${COGNITO_MIGRATION_APP:-/opt/cognito-migration}
DATA=/opt/airflow/migration-data

if [[ -z "${AIRFLOW_UID:-}" ]]; then
    echo "WARNING: AIRFLOW_UID is not set; files in ./logs and ./config will belong to uid 50000." >&2
    echo "         Add AIRFLOW_UID=\$(id -u) to .env (docs/scaling.md)." >&2
    AIRFLOW_UID=50000
fi

# ./logs and ./config are bind mounts; docker creates missing ones as root, where the workers could not write.
mkdir -p /opt/airflow/logs /opt/airflow/config "${DATA}/storage"

/entrypoint airflow version

echo "Importing pools from ${APP}/deploy/pools.json"
airflow pools import "${APP}/deploy/pools.json"
airflow pools list

echo "Preparing the ledger"
python "${APP}/deploy/ledger_init.py"

chown -R "${AIRFLOW_UID}:0" /opt/airflow/logs /opt/airflow/config "${DATA}"
chmod 0700 "${DATA}"
echo "airflow-init done"
