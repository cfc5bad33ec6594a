# The pipeline's image: the official Airflow image plus our pinned requirements, and the code that
# docker-compose does not mount.
#
# - requirements.txt pins apache-airflow itself, so pip cannot up- or downgrade Airflow while it resolves the
#   providers; constraints.txt (frozen from a passing test run) pins everything else.
# - dags/ and plugins/ are copied in as well: compose mounts the working tree over them (edit without rebuilding),
#   while Kubernetes (the official Helm chart) runs this image as it is, with no host folder to mount.
# - emulators/ (the Avnology emulator, the Cognito seeder), password_hook/ and deploy/ are not Airflow folders,
#   so they live in /opt/cognito-migration, which is on PYTHONPATH next to the plugins folder.
#
# Targets: `pipeline` (every Airflow service and the password hook) and `local-stack` (adds moto's server, for
# the optional local-stack profile only; the production image never carries it).

FROM apache/airflow:3.3.2-python3.11 AS pipeline

ENV COGNITO_MIGRATION_APP=/opt/cognito-migration \
    PYTHONPATH=/opt/airflow/plugins:/opt/cognito-migration

COPY --chown=airflow:0 requirements.txt constraints.txt /opt/cognito-migration/
RUN pip install --no-cache-dir \
        -r /opt/cognito-migration/requirements.txt \
        -c /opt/cognito-migration/constraints.txt

COPY --chown=airflow:0 emulators/ /opt/cognito-migration/emulators/
COPY --chown=airflow:0 password_hook/ /opt/cognito-migration/password_hook/
COPY --chown=airflow:0 deploy/ /opt/cognito-migration/deploy/
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/


FROM pipeline AS local-stack

RUN pip install --no-cache-dir "moto[cognitoidp,s3,server]" -c /opt/cognito-migration/constraints.txt
