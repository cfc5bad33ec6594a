"""Preflight: prove every connection works before anything reads or writes users, and snapshot the pool.

A missing connection, a pool that does not exist or a key without rights fails here, naming the connection,
so nothing downstream runs half-configured. The pool's snapshot (``snapshot.json`` in the run folder, client
secrets removed) and the shard plan are what the extract, the cutover kit and the report read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from botocore import xform_name

from cognito_migration.extract import (
    USERLIST_SLOTS,
    call_paced,
    describe_client_error,
    error_code,
    shard_prefixes,
    slot_share,
    to_jsonable,
)
from cognito_migration.ratelimit import RateLimiter

log = logging.getLogger(__name__)


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
    """Check the connections, snapshot the pool into the run folder and plan the extract's shards.

    A missing pool, missing permissions or an unreachable endpoint fail here, so nothing downstream runs.
    """
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

    snapshot = snapshot_pool(CognitoHook(region_name=params.region).client, params.user_pool_id, params.region)
    shards = shard_prefixes(params.shard_count)
    snapshot.update(shards=shards, userlist_budget_rps=params.userlist_budget_rps, userlist_slots=USERLIST_SLOTS)
    run_path = storage.run_dir(run_id)
    snapshot_path = storage.write_json(run_path / "snapshot.json", snapshot)
    pool = snapshot["UserPool"]
    share = slot_share(params.userlist_budget_rps)
    log.info(
        "pool %s (%s): about %d users, MFA %s, %d app clients, %d groups, triggers %s; %d shards, each UserList "
        "task paced at %.2f req/s (budget %g req/s over %d slots)",
        params.user_pool_id,
        pool.get("Name", ""),
        int(pool.get("EstimatedNumberOfUsers", 0)),
        pool.get("MfaConfiguration", "OFF"),
        len(snapshot["clients"]),
        len(snapshot["groups"]),
        sorted(pool.get("LambdaConfig") or {}),
        len(shards),
        share,
        params.userlist_budget_rps,
        USERLIST_SLOTS,
    )
    return {
        "run_dir": str(run_path),
        "user_pool_id": params.user_pool_id,
        "pool_name": pool.get("Name", ""),
        "estimated_users": int(pool.get("EstimatedNumberOfUsers", 0)),
        "snapshot": str(snapshot_path),
        "shards": shards,
        "clients": len(snapshot["clients"]),
        "groups": len(snapshot["groups"]),
        "userlist_rps_per_task": round(share, 3),
    }


# DescribeUserPoolClient and ListGroups have 5 RPS per pool (shared with the app); stay well under.
_POOL_READ_RPS = 4.0


@contextmanager
def _botocore_bodies_unlogged() -> Iterator[None]:
    """DescribeUserPoolClient answers with the ClientSecret; botocore logs response bodies at DEBUG."""
    logger = logging.getLogger("botocore")
    previous = logger.level
    if logger.getEffectiveLevel() < logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(previous)


def snapshot_pool(client: Any, user_pool_id: str, region: str) -> dict[str, Any]:
    """The pool's metadata as the later stages and the cutover kit need it, with every client secret removed.

    ``UserPool`` is DescribeUserPool's answer (schema, EstimatedNumberOfUsers, MfaConfiguration, LambdaConfig,
    UsernameAttributes/AliasAttributes, Domain); ``clients`` the DescribeUserPoolClient answers with
    ``ClientSecret`` dropped and ``HasSecret`` added; ``groups`` ListGroups' groups. Datetimes are ISO strings.
    """
    from cognito_migration import config

    pace = RateLimiter(_POOL_READ_RPS)

    def call(operation: str, **request: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        method = getattr(client, xform_name(operation))
        try:
            return dict(call_paced(lambda: method(**request), limiter=pace, what=operation))
        except ClientError as exc:
            code = error_code(exc)
            if code == "ResourceNotFoundException":
                hint = f"User pool {user_pool_id} does not exist in {region}: check the pool id and the Region."
            elif code in ("AccessDeniedException", "NotAuthorizedException", "UnrecognizedClientException"):
                hint = f"The credentials are not allowed to call cognito-idp:{operation} on this pool."
            else:
                hint = "Check the pool id, the Region and the connection's credentials."
            raise PreflightError(
                f"Cognito {operation}({user_pool_id}) via connection {config.COGNITO_CONN_ID!r} failed with "
                f"{describe_client_error(exc)}. {hint}"
            ) from None
        except BotoCoreError as exc:
            raise PreflightError(
                f"Cognito is unreachable through connection {config.COGNITO_CONN_ID!r} ({operation}): "
                f"{type(exc).__name__}: {exc}"
            ) from None

    pool = call("DescribeUserPool", UserPoolId=user_pool_id)["UserPool"]
    clients: list[dict[str, Any]] = []
    for summary in _paged(call, "ListUserPoolClients", "UserPoolClients", UserPoolId=user_pool_id, MaxResults=60):
        with _botocore_bodies_unlogged():
            described = call("DescribeUserPoolClient", UserPoolId=user_pool_id, ClientId=summary["ClientId"])
        app_client = dict(described["UserPoolClient"])
        app_client["HasSecret"] = bool(app_client.pop("ClientSecret", None))
        clients.append(app_client)
    groups = list(_paged(call, "ListGroups", "Groups", UserPoolId=user_pool_id, Limit=60))
    return to_jsonable(
        {
            "UserPool": pool,
            "clients": clients,
            "groups": groups,
            "region": region,
            "domain": pool.get("CustomDomain") or pool.get("Domain"),
            "taken_at": datetime.now(UTC).isoformat(),
        }
    )


def _paged(call: Any, operation: str, key: str, **request: Any) -> Iterator[dict[str, Any]]:
    token = None
    while True:
        answer = call(operation, **request, **({"NextToken": token} if token else {}))
        yield from answer.get(key, [])
        token = answer.get("NextToken")
        if not token:
            return
