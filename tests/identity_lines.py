"""Convert's output for synthetic users, for the load tests and the load benchmark.

Each line is validated against convert's own models (``IDENTITY_LINE``, ``AUTH0_USER``), so the load stages are
tested on exactly the contract convert writes, without depending on how convert gets there.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from cognito_migration import storage
from cognito_migration.models import AUTH0_USER, IDENTITY_LINE

CREATED = "2024-03-01T10:00:00Z"
MODIFIED = "2025-06-01T12:30:00Z"


def make_line(
    user_pool_id: str,
    n: int,
    *,
    groups: Sequence[str] = (),
    timezone: str | None = None,
    email: str | None = None,
    seed: str = "",
) -> dict[str, Any]:
    """User number ``n`` of a pool: a stable sub, email and username, optional groups and time zone."""
    sub = str(uuid.uuid5(uuid.NAMESPACE_OID, f"{seed}{user_pool_id}/{n}"))
    username = f"user_{n:06d}"
    address = email or f"user{n:06d}@example.com"
    identity: dict[str, Any] = {
        "email": address,
        "username": username,
        "first_name": f"First{n}",
        "last_name": "Tester",
        "display_name": f"First{n} Tester",
        "traits": {},
        "admin_metadata": {
            "cognito": {
                "user_pool_id": user_pool_id,
                "sub": sub,
                "username": username,
                "status": "CONFIRMED",
                "enabled": True,
                "federated": False,
                "created_at": CREATED,
                "last_modified_at": MODIFIED,
                "email_verified": True,
            }
        },
    }
    if timezone is not None:
        identity["timezone"] = timezone
    line = {
        "sub": sub,
        "username": username,
        "email": address,
        "status": "CONFIRMED",
        "enabled": True,
        "federated": False,
        "email_verified": True,
        "reset_email": True,
        "groups": list(groups),
        "first_name": f"First{n}",
        "display_name": f"First{n} Tester",
        "identity": identity,
    }
    IDENTITY_LINE.validate_json(json.dumps(line))  # as convert writes it: JSON
    return line


def auth0_record(line: dict[str, Any]) -> dict[str, Any]:
    """The Auth0 bulk-import record of the same user (what the CLI backend hands to ``avnology migrate``)."""
    cognito = line["identity"]["admin_metadata"]["cognito"]
    record = {
        "email": line["email"],
        "email_verified": line["email_verified"],
        "user_id": line["sub"],
        "given_name": line["identity"]["first_name"],
        "family_name": line["identity"]["last_name"],
        "blocked": not line["enabled"],
        "app_metadata": {
            "cognito": {
                **{k: cognito[k] for k in ("user_pool_id", "sub", "username", "status", "enabled", "federated")},
                "user_create_date": CREATED,
                "user_last_modified_date": MODIFIED,
                "groups": line["groups"],
            }
        },
    }
    AUTH0_USER.validate_json(json.dumps(record))
    return record


def write_batches(run_path: Any, batches: Sequence[Sequence[dict[str, Any]]], *, organization_name: str) -> list[str]:
    """Write ``identities/`` and ``auth0/`` batch files and a ``convert_summary.json``; return the batch ids."""
    ids = []
    for number, lines in enumerate(batches, 1):
        batch_id = f"batch-{number:04d}"
        path = run_path / "identities" / f"{batch_id}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as fh:
            fh.write("".join(json.dumps(line) + "\n" for line in lines))
        storage.write_json(run_path / "auth0" / f"{batch_id}.json", [auth0_record(line) for line in lines])
        ids.append(batch_id)
    storage.write_json(run_path / "convert_summary.json", {"organization_name": organization_name})
    return ids
