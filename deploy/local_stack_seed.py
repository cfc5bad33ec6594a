"""The local-stack profile's seeder: a realistic user pool in the compose moto, and the password hook's settings.

moto picks the pool and app-client ids when they are created, so the hook cannot read them from .env. This
writes them, with the confidential client's secret, to a private env file that deploy/password-hook.sh reads
(PASSWORD_HOOK_ENV_FILE). Running it again keeps a pool that still exists; moto forgets everything when its
container restarts, and then a new pool is seeded.

    python deploy/local_stack_seed.py --endpoint-url http://moto:5000 --users 2000 --out /path/password-hook.env
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

# The seeded app client that allows ADMIN_USER_PASSWORD_AUTH: the one the hook verifies passwords through.
HOOK_CLIENT = "backend-confidential"


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, raw = line.partition("=")
            values[key.strip()] = shlex.split(raw)[0] if raw.strip() else ""
    return values


def existing_pool(client: Any, out: Path) -> str | None:
    """The pool id from an earlier run, if moto still has that pool."""
    if not out.exists():
        return None
    pool_id = read_env_file(out).get("PASSWORD_HOOK_USER_POOL_ID")
    if not pool_id:
        return None
    try:
        client.describe_user_pool(UserPoolId=pool_id)
    except client.exceptions.ResourceNotFoundException:
        return None
    return pool_id


def write_hook_env(client: Any, pool_id: str, client_id: str, out: Path) -> None:
    described = client.describe_user_pool_client(UserPoolId=pool_id, ClientId=client_id)["UserPoolClient"]
    values = {
        "PASSWORD_HOOK_USER_POOL_ID": pool_id,
        "PASSWORD_HOOK_CLIENT_ID": client_id,
        "PASSWORD_HOOK_CLIENT_SECRET": described.get("ClientSecret", ""),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.writelines(f"{key}={shlex.quote(value)}\n" for key, value in values.items())
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint-url", default=os.environ.get("LOCAL_STACK_MOTO_URL", "http://moto:5000"))
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--out", type=Path, required=True, help="env file for the password hook (written 0600)")
    args = parser.parse_args(argv)

    import boto3

    from emulators.cognito_seed import seed_pool
    from emulators.moto_cognito import TEST_CREDENTIALS

    client = boto3.client("cognito-idp", region_name=args.region, endpoint_url=args.endpoint_url, **TEST_CREDENTIALS)
    try:
        pool_id = existing_pool(client, args.out)
        if pool_id:
            print(f"user pool {pool_id} is already seeded; trigger cognito_migration with user_pool_id={pool_id}")
            return 0
        pool = seed_pool(client, users=args.users)
        write_hook_env(client, pool.user_pool_id, pool.clients[HOOK_CLIENT], args.out)
    except Exception as exc:
        print(f"error: seeding moto at {args.endpoint_url} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(pool.summary(), indent=1))
    print(f"\nSeeded user pool {pool.user_pool_id}: trigger cognito_migration with user_pool_id={pool.user_pool_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
