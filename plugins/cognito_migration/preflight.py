"""Preflight: prove every connection works before anything reads or writes users.

A missing connection, a pool that does not exist or a key without rights fails here, naming the connection,
so nothing downstream runs half-configured.
"""

from __future__ import annotations

from typing import Any


class PreflightError(RuntimeError):
    """A connection or resource the run needs is missing or unusable; the message says which and what to do."""


def require_connection(conn_id: str) -> Any:
    """Look up an Airflow connection, turning 'not found' into an error that names it and how to define it."""
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:
        raise PreflightError(
            f"Airflow connection {conn_id!r} is not defined ({type(exc).__name__}). Create it in the UI "
            f"(Admin → Connections) or set AIRFLOW_CONN_{conn_id.upper()}; see the README's 'Connections' section."
        ) from None


def _check_avnology(conn_ids: list[str]) -> None:
    """An authenticated call per Avnology tenant: a bad or read-only key fails here, not mid-import."""
    from cognito_migration.avnology import preflight_check

    for conn_id in conn_ids:
        try:
            preflight_check(conn_id)
        except ValueError as exc:
            raise PreflightError(str(exc)) from None


def run_preflight(params: Any, run_id: str) -> dict[str, Any]:
    """Check the connections this run needs, describe the pool, and create the run folder."""
    from botocore.exceptions import BotoCoreError, ClientError

    from cognito_migration import config, storage
    from cognito_migration.cognito import CognitoHook

    require_connection(config.COGNITO_CONN_ID)
    needed = [config.AVNOLOGY_STAGING_CONN_ID] if params.runs("dry_run") else []
    if params.runs("import"):
        needed.append(config.AVNOLOGY_PRODUCTION_CONN_ID)
    if params.runs("emails") and params.email_mode == "send":
        needed.append(config.SMTP_CONN_ID)
    for conn_id in needed:
        require_connection(conn_id)
    _check_avnology([c for c in needed if c in (config.AVNOLOGY_STAGING_CONN_ID, config.AVNOLOGY_PRODUCTION_CONN_ID)])

    hook = CognitoHook(region_name=params.region)
    try:
        pool = hook.client.describe_user_pool(UserPoolId=params.user_pool_id)["UserPool"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise PreflightError(
            f"Cognito DescribeUserPool({params.user_pool_id}) via connection {config.COGNITO_CONN_ID!r} "
            f"failed with {code}: {exc.response.get('Error', {}).get('Message', '')}. Check the pool id, the "
            "Region and that the credentials allow cognito-idp:DescribeUserPool, ListUsers and ListGroups."
        ) from None
    except BotoCoreError as exc:
        raise PreflightError(
            f"Cognito is unreachable through connection {config.COGNITO_CONN_ID!r}: {type(exc).__name__}: {exc}"
        ) from None

    run_path = storage.run_dir(run_id)
    return {
        "run_dir": str(run_path),
        "user_pool_id": params.user_pool_id,
        "pool_name": pool.get("Name", ""),
        "estimated_users": int(pool.get("EstimatedNumberOfUsers", 0)),
    }
