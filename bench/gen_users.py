"""Synthetic Cognito users, shaped like ListUsers output after the extractor's JSON round trip.

Deterministic for a seed, streamed (a million users never sit in memory). The attribute mix is a typical
email-as-username pool; ``edge_rate`` of the users (1% by default) are drawn from the edge cases the convert
stage has a policy or a reason code for, so a run exercises every path at scale.

    python bench/gen_users.py --users 1000 --out users.jsonl [--memberships memberships.json] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

FIRST = ("Ana", "Ben", "Chloé", "Dmitri", "Emma", "Farah", "Goro", "Hana", "Ivan", "Jane", "Kofi", "Lena", "Mateo")
LAST = ("Smith", "Nguyen", "Okafor", "García", "Müller", "Tanaka", "Kowalski", "Haddad", "Silva", "Dubois")
DOMAINS = ("example.com", "mail.example.org", "corp.example.net", "example.co.uk")
LOCALES = ("en-US", "en-GB", "fr-FR", "de-DE", "ja-JP", "pt_BR")
ZONES = ("America/New_York", "Europe/Paris", "Asia/Tokyo", "Europe/Berlin", "America/Sao_Paulo")
TIERS = ("free", "pro", "enterprise")
GROUPS = ("admins", "support", "beta-testers", "billing", "readonly")
EDGE_CASES = (
    "unconfirmed",
    "disabled",
    "federated",
    "phone_only",
    "invalid_email",
    "case_duplicate_email",
    "bad_phone",
    "long_name",
    "dotted_custom_key",
    "repeated_sub",
    "archived_status",
    "bad_locale_and_zone",
    "garbage_identities",
    "force_change_password",
)
_EPOCH = datetime(2019, 1, 1, tzinfo=UTC)
_SPAN_S = 6 * 365 * 86400


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _when(rng: random.Random) -> tuple[str, str]:
    created = _EPOCH + timedelta(seconds=rng.randrange(_SPAN_S), microseconds=rng.randrange(1000) * 1000)
    modified = created + timedelta(seconds=rng.randrange(86400 * 200))
    return created.isoformat(), modified.isoformat()


def _attrs(pairs: dict[str, str]) -> list[dict[str, str]]:
    return [{"Name": name, "Value": value} for name, value in pairs.items()]


def _typical(rng: random.Random, i: int) -> dict[str, Any]:
    sub = _uuid(rng)
    first, last = rng.choice(FIRST), rng.choice(LAST)
    pairs: dict[str, str] = {
        "sub": sub,
        "email": f"{first.lower()}.{last.lower()}{i}@{rng.choice(DOMAINS)}".encode("ascii", "ignore").decode(),
        "email_verified": "true" if rng.random() < 0.85 else "false",
    }
    if rng.random() < 0.8:
        pairs["given_name"], pairs["family_name"] = first, last
    if rng.random() < 0.5:
        pairs["name"] = f"{first} {last}"
    if rng.random() < 0.4:
        pairs["phone_number"] = f"+1{rng.randrange(2_000_000_000, 9_999_999_999)}"
        pairs["phone_number_verified"] = "true" if rng.random() < 0.6 else "false"
    if rng.random() < 0.3:
        pairs["locale"] = rng.choice(LOCALES)
    if rng.random() < 0.2:
        pairs["zoneinfo"] = rng.choice(ZONES)
    if rng.random() < 0.1:
        pairs["birthdate"] = f"{rng.randrange(1950, 2005)}-0{rng.randrange(1, 10)}-1{rng.randrange(0, 9)}"
    if rng.random() < 0.5:
        pairs["custom:tier"] = rng.choice(TIERS)
    if rng.random() < 0.3:
        pairs["custom:company"] = f"{rng.choice(LAST)} {rng.choice(('Ltd', 'Inc', 'GmbH', 'SA'))}"
    if rng.random() < 0.2:
        pairs["custom:signup_source"] = rng.choice(("web", "ios", "android", "partner"))
    created, modified = _when(rng)
    status = "CONFIRMED" if rng.random() < 0.97 else rng.choice(("RESET_REQUIRED", "FORCE_CHANGE_PASSWORD"))
    return {
        "Username": sub if rng.random() < 0.8 else f"{first.lower()[:4]}{i}".encode("ascii", "ignore").decode(),
        "Attributes": _attrs(pairs),
        "UserCreateDate": created,
        "UserLastModifiedDate": modified,
        "Enabled": rng.random() < 0.995,
        "UserStatus": status,
    }


def _edge(rng: random.Random, i: int, user: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """Turn a typical user into one edge case (``repeated_sub`` returns the previous user unchanged)."""
    case = rng.choice(EDGE_CASES)
    pairs = {a["Name"]: a["Value"] for a in user["Attributes"]}
    if case == "repeated_sub" and previous is not None:
        return previous
    if case == "unconfirmed":
        user["UserStatus"] = "UNCONFIRMED"
    elif case == "disabled":
        user["Enabled"] = False
    elif case == "federated":
        user["Username"] = f"Google_{rng.randrange(10**20, 10**21)}"
        user["UserStatus"] = "EXTERNAL_PROVIDER"
        identity = {
            "userId": user["Username"].split("_", 1)[1],
            "providerName": "Google",
            "providerType": "Google",
            "issuer": None,
            "primary": True,
            "dateCreated": 1_700_000_000_000 + i,
        }
        pairs["identities"] = json.dumps([identity])
    elif case == "phone_only":
        pairs.pop("email", None)
        pairs.pop("email_verified", None)
        pairs["phone_number"] = f"+4479{rng.randrange(10_000_000, 99_999_999)}"
    elif case == "invalid_email":
        pairs["email"] = rng.choice(("not-an-email", "two@@example.com", "spaces in@example.com", "a@b"))
    elif case == "case_duplicate_email" and previous is not None:
        prev_email = next((a["Value"] for a in previous["Attributes"] if a["Name"] == "email"), None)
        if prev_email:
            pairs["email"] = prev_email.upper()
    elif case == "bad_phone":
        pairs["phone_number"] = "(555) 010-" + str(rng.randrange(1000, 9999))
    elif case == "long_name":
        pairs["name"] = "Dr. " + "Bartholomew-" * 20
    elif case == "dotted_custom_key":
        pairs["custom:plan.v2"] = "legacy"
        pairs["custom:$price"] = "9.99"
    elif case == "archived_status":
        user["UserStatus"] = "ARCHIVED"
    elif case == "bad_locale_and_zone":
        pairs["locale"] = "english please"
        pairs["zoneinfo"] = "Mars/Olympus_Mons"
    elif case == "garbage_identities":
        pairs["identities"] = "{not json"
    elif case == "force_change_password":
        user["UserStatus"] = "FORCE_CHANGE_PASSWORD"
    user["Attributes"] = _attrs(pairs)
    return user


def generate(n: int, seed: int = 7, edge_rate: float = 0.01) -> Iterator[tuple[dict[str, Any], list[str]]]:
    """``n`` users with their group names (most users are in no group)."""
    rng = random.Random(seed)
    previous: dict[str, Any] | None = None
    for i in range(n):
        user = _typical(rng, i)
        if rng.random() < edge_rate:
            user = _edge(rng, i, user, previous)
        groups = rng.sample(GROUPS, rng.randrange(1, 3)) if rng.random() < 0.1 else []
        previous = user
        yield user, groups


def write_jsonl(path: Path, n: int, seed: int = 7, edge_rate: float = 0.01) -> dict[str, list[str]]:
    """Write ``n`` users to ``path`` (one JSON object a line) and return the memberships ``sub -> groups``."""
    memberships: dict[str, list[str]] = {}
    with path.open("w", encoding="utf-8") as handle:
        for user, groups in generate(n, seed, edge_rate):
            handle.write(json.dumps(user) + "\n")
            if groups:
                sub = next((a["Value"] for a in user["Attributes"] if a["Name"] == "sub"), None)
                if sub:
                    memberships[sub] = groups
    return memberships


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--memberships", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--edge-rate", type=float, default=0.01)
    args = parser.parse_args()
    memberships = write_jsonl(args.out, args.users, args.seed, args.edge_rate)
    if args.memberships:
        args.memberships.write_text(json.dumps(memberships))
    print(f"wrote {args.users} users to {args.out} ({len(memberships)} with groups)")


if __name__ == "__main__":
    main()
