"""Contract tests for the Avnology ID emulator, over real HTTP: one test per behaviour in avnology-id-api.md.

The emulator is written against that page, so these tests read like it: auth, identity rules, idempotency,
listing, organizations, permissions, the recovery flow, rate limits, faults and the admin API.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulators.avnology import AvnologyEmulatorServer, EmulatorSettings
from emulators.ports import PortInUseError
from tests.emulators.conftest import PRODUCTION_KEY, READONLY_KEY, STAGING_KEY

USR_ID = re.compile(r"^usr_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ORG_ID = re.compile(r"^org_[0-9a-f-]{36}$")
REPO_ROOT = Path(__file__).resolve().parents[2]


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "request_id", "details"} <= set(body["error"])
    return body["error"]  # type: ignore[no-any-return]


def create(client: httpx.Client, email: str, headers: dict[str, str] | None = None, **fields: Any) -> httpx.Response:
    return client.post("/v1/identities", json={"identity": {"email": email, **fields}}, headers=headers)


def state(client: httpx.Client, tenant: str = "production") -> dict[str, Any]:
    response = client.get("/_emulator/state", params={"tenant": tenant})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def set_faults(client: httpx.Client, **faults: Any) -> dict[str, Any]:
    response = client.post("/_emulator/faults", json=faults)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# --- auth -------------------------------------------------------------------------------------------------


def test_missing_bearer_key_is_401(anonymous: httpx.Client) -> None:
    response = anonymous.get("/v1/identities")
    assert response.status_code == 401
    assert error_of(response)["code"] == "AVNOLOGY_AUTH_005"


def test_unknown_bearer_key_is_401(anonymous: httpx.Client) -> None:
    response = anonymous.get("/v1/identities", headers={"Authorization": "Bearer ak_test_not_a_real_key"})
    assert response.status_code == 401
    error = error_of(response)
    assert error["code"] == "AVNOLOGY_AUTH_005"
    assert "ak_test_not_a_real_key" not in response.text


def test_key_in_url_is_never_accepted(anonymous: httpx.Client, prod: httpx.Client) -> None:
    assert anonymous.get("/v1/identities", params={"api_key": PRODUCTION_KEY}).status_code == 401
    # Even next to a valid header: a key in a URL ends up in logs, so the call is refused.
    response = prod.get("/v1/identities", params={"access_token": PRODUCTION_KEY})
    assert response.status_code == 401
    assert error_of(response)["details"]["reason"] == "credential_in_url"


def test_readonly_key_reads_but_every_write_is_403(prod: httpx.Client, readonly: httpx.Client) -> None:
    created = create(prod, "reader@example.com").json()
    assert readonly.get(f"/v1/identities/{created['id']}").status_code == 200
    writes = [
        readonly.post("/v1/identities", json={"identity": {"email": "x@example.com"}}),
        readonly.post("/v1/identities", json={"identity": {"email": "x@example.com"}, "validate_only": True}),
        readonly.patch(f"/v1/identities/{created['id']}", json={"identity": {}, "update_mask": "first_name"}),
        readonly.delete(f"/v1/identities/{created['id']}", params={"force": "true"}),
        readonly.post("/v1/organizations", json={"name": "acme"}),
        readonly.post(
            "/v1/permissions",
            json={"namespace": "roles", "object": "a", "relation": "member", "subject": f"identities:{created['id']}"},
        ),
    ]
    for response in writes:
        assert response.status_code == 403, response.request.url
        assert error_of(response)["code"] == "AVNOLOGY_AUTH_100"
    assert len(state(prod)["identities"]) == 1


def test_each_key_opens_its_own_tenant(prod: httpx.Client, staging: httpx.Client) -> None:
    created = create(staging, "tenant@example.com").json()
    assert staging.get(f"/v1/identities/{created['id']}").status_code == 200
    assert prod.get(f"/v1/identities/{created['id']}").status_code == 404
    assert create(prod, "tenant@example.com").status_code == 201  # no duplicate across tenants
    assert len(state(prod, "staging")["identities"]) == 1
    assert len(state(prod, "production")["identities"]) == 1


def test_error_body_shape_and_request_id_header(prod: httpx.Client) -> None:
    response = prod.get("/v1/identities/usr_missing")
    error = error_of(response)
    assert error["request_id"].startswith("req_")
    assert response.headers["X-Request-Id"] == error["request_id"]


# --- create: validation -----------------------------------------------------------------------------------


def test_create_returns_201_with_the_identity(prod: httpx.Client) -> None:
    identity = {
        "email": "Ada@Example.com",
        "username": "ada_lovelace-1",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "display_name": "Ada L.",
        "phone": "+447700900123",
        "locale": "en-GB",
        "timezone": "Europe/London",
        "traits": {"custom": {"tier": "gold"}},
        "admin_metadata": {"cognito": {"sub": "1234", "user_pool_id": "eu-west-1_abc"}},
    }
    response = prod.post("/v1/identities", json={"identity": identity, "initial_password": "correct horse"})
    assert response.status_code == 201
    body = response.json()
    assert USR_ID.match(body["id"])
    assert body["state"] == "active"
    assert body["email_verified"] is False
    assert body["create_time"] and body["update_time"]
    for name, value in identity.items():
        assert body[name] == value
    assert response.headers["ETag"] == f'W/"{body["etag"]}"'
    stored = state(prod)["identities"]
    assert [i["id"] for i in stored] == [body["id"]]
    assert stored[0]["has_password"] is True
    assert "correct horse" not in str(state(prod))


def test_create_with_organization_id_stores_it(prod: httpx.Client) -> None:
    org = prod.post("/v1/organizations", json={"name": "acme-pool"}).json()
    body = create(prod, "member@example.com", organization_id=org["id"]).json()
    assert body["organization_id"] == org["id"]


def test_create_with_unknown_organization_is_404_300(prod: httpx.Client) -> None:
    response = create(prod, "orphan@example.com", organization_id="org_does_not_exist")
    assert response.status_code == 404
    assert error_of(response)["code"] == "AVNOLOGY_AUTH_300"


def test_malformed_json_is_400_902(prod: httpx.Client) -> None:
    for raw in (b'{"identity": {"email": ', b"\xff\xfe", b"NaN", b"[1, 2]"):
        response = prod.post("/v1/identities", content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, raw
        assert error_of(response)["code"] == "AVNOLOGY_AUTH_902"
    assert state(prod)["identities"] == []


def test_body_without_json_content_type_is_refused(prod: httpx.Client) -> None:
    response = prod.post("/v1/identities", content=b'{"identity": {"email": "a@example.com"}}')
    assert response.status_code == 415
    assert error_of(response)["code"] == "AVNOLOGY_AUTH_902"


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"identity": {}}, "email", "required"),
        ({"identity": {"email": ""}}, "email", "required"),
        ({"identity": {"email": "not-an-email"}}, "email", "invalid_format"),
        ({"identity": {"email": "two@@example.com"}}, "email", "invalid_format"),
        ({"identity": {"email": "a@example"}}, "email", "invalid_format"),
        ({"identity": {"email": 42}}, "email", "not_a_string"),
        ({"identity": {"email": "u@example.com", "username": "ab"}}, "username", "invalid_format"),
        ({"identity": {"email": "u@example.com", "username": "a" * 65}}, "username", "invalid_format"),
        ({"identity": {"email": "u@example.com", "username": "bad name!"}}, "username", "invalid_format"),
        ({"identity": {"email": "u@example.com", "phone": "0044 7700 900123"}}, "phone", "invalid_format"),
        ({"identity": {"email": "u@example.com", "phone": "+0123456"}}, "phone", "invalid_format"),
        ({"identity": {"email": "u@example.com", "locale": "en_US"}}, "locale", "invalid_format"),
        ({"identity": {"email": "u@example.com", "timezone": "Mars/Olympus"}}, "timezone", "invalid_format"),
        ({"identity": {"email": "u@example.com", "traits": "gold"}}, "traits", "not_an_object"),
        ({"identity": {"email": "u@example.com", "admin_metadata": []}}, "admin_metadata", "not_an_object"),
        ({"identity": {"email": "u@example.com", "external_id": "x"}}, "external_id", "unknown_field"),
        ({"identity": {"email": "u@example.com", "email_verified": True}}, "email_verified", "read_only_field"),
        ({"identity": {"email": "u@example.com"}, "initial_password": "short"}, "initial_password", "too_short"),
        ({"identity": {"email": "u@example.com"}, "validate_only": "yes"}, "validate_only", "not_a_boolean"),
        ({"identity": {"email": "u@example.com"}, "dry_run": True}, "dry_run", "unknown_field"),
        ({"user": {"email": "u@example.com"}}, "user", "unknown_field"),
        ({}, "identity", "required"),
    ],
)
def test_create_validation_rules_are_400_902(prod: httpx.Client, body: dict[str, Any], field: str, reason: str) -> None:
    response = prod.post("/v1/identities", json=body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "AVNOLOGY_AUTH_902"
    assert (error["details"]["field"], error["details"]["reason"]) == (field, reason)
    assert state(prod)["identities"] == []


def test_usernames_at_the_length_limits_are_accepted(prod: httpx.Client) -> None:
    assert create(prod, "three@example.com", username="a-b").status_code == 201
    assert create(prod, "sixtyfour@example.com", username="Z" * 64).status_code == 201


def test_duplicate_email_is_409_903_whatever_the_case(prod: httpx.Client) -> None:
    assert create(prod, "dup@example.com").status_code == 201
    response = create(prod, "DUP@Example.COM")
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "AVNOLOGY_AUTH_903"
    assert error["details"]["field"] == "email"
    assert len(state(prod)["identities"]) == 1


def test_duplicate_username_is_409(prod: httpx.Client) -> None:
    assert create(prod, "one@example.com", username="jdoe").status_code == 201
    response = create(prod, "two@example.com", username="JDoe")
    assert response.status_code == 409
    assert error_of(response)["details"]["field"] == "username"


# --- create: idempotency and validate_only -----------------------------------------------------------------


def test_idempotency_key_replays_the_first_response(prod: httpx.Client) -> None:
    headers = {"Idempotency-Key": "3f1c2b7e-0000-5000-8000-000000000001"}
    first = create(prod, "retry@example.com", headers=headers, first_name="Re")
    second = prod.post(
        "/v1/identities",
        content=b'{"identity": {"first_name": "Re", "email": "retry@example.com"}}',  # same JSON, other order
        headers={**headers, "Content-Type": "application/json"},
    )
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    counters = state(prod)["counters"]
    assert counters["idempotency_keys"][headers["Idempotency-Key"]] == {
        "requests": 2,
        "creates": 1,
        "replays": 1,
        "conflicts": 0,
    }
    assert len(state(prod)["identities"]) == 1


def test_idempotency_key_reused_with_another_body_is_409(prod: httpx.Client) -> None:
    headers = {"Idempotency-Key": "reused-key"}
    assert create(prod, "first@example.com", headers=headers).status_code == 201
    response = create(prod, "second@example.com", headers=headers)
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "AVNOLOGY_AUTH_903"
    assert error["details"]["reason"] == "idempotency_key_reused"
    assert [i["email"] for i in state(prod)["identities"]] == ["first@example.com"]


def test_concurrent_retries_with_one_key_create_once(prod: httpx.Client) -> None:
    headers = {"Idempotency-Key": "burst-of-retries"}
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: create(prod, "burst@example.com", headers=headers), range(8)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert state(prod)["counters"]["idempotency_keys"]["burst-of-retries"]["creates"] == 1


def test_concurrent_creates_of_one_email_leave_one_identity(prod: httpx.Client) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(
            pool.map(lambda i: create(prod, "race@example.com" if i % 2 else "RACE@example.com").status_code, range(8))
        )
    assert statuses == [201] + [409] * 7
    assert len(state(prod)["identities"]) == 1


def test_a_refused_create_does_not_bind_its_idempotency_key(prod: httpx.Client) -> None:
    headers = {"Idempotency-Key": "fix-and-retry"}
    assert create(prod, "broken", headers=headers).status_code == 400
    assert create(prod, "fixed@example.com", headers=headers).status_code == 201


def test_validate_only_answers_like_a_create_and_creates_nothing(prod: httpx.Client) -> None:
    response = prod.post("/v1/identities", json={"identity": {"email": "dry@example.com"}, "validate_only": True})
    assert response.status_code == 201
    body = response.json()
    assert USR_ID.match(body["id"]) and body["email"] == "dry@example.com"
    assert prod.get(f"/v1/identities/{body['id']}").status_code == 404
    assert state(prod)["identities"] == []
    assert state(prod)["counters"]["validate_only_requests"] == 1
    # ... and a real create of the same email still works afterwards
    assert create(prod, "dry@example.com").status_code == 201


def test_validate_only_reports_the_errors_a_create_would_get(prod: httpx.Client) -> None:
    create(prod, "taken@example.com")
    dup = prod.post("/v1/identities", json={"identity": {"email": "TAKEN@example.com"}, "validate_only": True})
    assert dup.status_code == 409 and error_of(dup)["details"]["field"] == "email"
    bad = prod.post("/v1/identities", json={"identity": {"email": "nope"}, "validate_only": True})
    assert bad.status_code == 400 and error_of(bad)["details"]["field"] == "email"


# --- list -------------------------------------------------------------------------------------------------


def test_list_pages_through_every_identity_once(prod: httpx.Client) -> None:
    created = [create(prod, f"page{i}@example.com").json()["id"] for i in range(7)]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        body = prod.get("/v1/identities", params={"page_size": 3, "page_token": token}).json()
        assert body["total_size"] == 7
        seen += [i["id"] for i in body["identities"]]
        pages += 1
        token = body["next_page_token"]
        if not token:
            break
    assert pages == 3
    assert seen == created  # default order: create_time


def test_list_page_size_defaults_to_25_and_is_capped_at_100(prod: httpx.Client) -> None:
    for i in range(105):
        assert create(prod, f"bulk{i}@example.com").status_code == 201
    default = prod.get("/v1/identities").json()
    assert len(default["identities"]) == 25 and default["next_page_token"]
    capped = prod.get("/v1/identities", params={"page_size": 1000}).json()
    assert len(capped["identities"]) == 100 and capped["total_size"] == 105
    rest = prod.get("/v1/identities", params={"page_size": 1000, "page_token": capped["next_page_token"]}).json()
    assert len(rest["identities"]) == 5 and rest["next_page_token"] == ""


def test_list_filter_on_email_is_case_insensitive(prod: httpx.Client) -> None:
    target = create(prod, "Find.Me@Example.com").json()
    create(prod, "other@example.com")
    body = prod.get("/v1/identities", params={"filter": 'email = "find.me@EXAMPLE.com"'}).json()
    assert [i["id"] for i in body["identities"]] == [target["id"]]
    assert body["total_size"] == 1
    none = prod.get("/v1/identities", params={"filter": 'email = "nobody@example.com"'}).json()
    assert none == {"identities": [], "next_page_token": "", "total_size": 0}


def test_list_filter_on_state_and_organization_joined_with_and(prod: httpx.Client) -> None:
    org = prod.post("/v1/organizations", json={"name": "pool-a"}).json()["id"]
    in_org = create(prod, "in@example.com", organization_id=org).json()["id"]
    deleted = create(prod, "gone@example.com", organization_id=org).json()["id"]
    create(prod, "out@example.com")
    assert prod.delete(f"/v1/identities/{deleted}").status_code == 204

    def ids(filter_text: str) -> list[str]:
        response = prod.get("/v1/identities", params={"filter": filter_text})
        assert response.status_code == 200, response.text
        return [i["id"] for i in response.json()["identities"]]

    assert ids(f'state = "active" AND organization_id = "{org}"') == [in_org]
    assert ids(f'organization_id = "{org}"') == [in_org, deleted]
    assert ids('state = "scheduled_deletion"') == [deleted]


@pytest.mark.parametrize(
    "bad_filter",
    [
        'name = "x"',
        "email = x@example.com",
        'email != "x@example.com"',
        'email = "a@example.com" OR state = "active"',
        'email = "a@example.com" and state = "active"',
        'email = "a@example.com" AND',
        'email:"a@example.com"',
    ],
)
def test_list_bad_filter_is_400_902(prod: httpx.Client, bad_filter: str) -> None:
    response = prod.get("/v1/identities", params={"filter": bad_filter})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "AVNOLOGY_AUTH_902" and error["details"]["field"] == "filter"


def test_list_order_by(prod: httpx.Client) -> None:
    for email in ("b@example.com", "C@example.com", "a@example.com"):
        create(prod, email)
    body = prod.get("/v1/identities", params={"order_by": "email desc", "page_size": 2}).json()
    assert [i["email"] for i in body["identities"]] == ["C@example.com", "b@example.com"]
    rest = prod.get(
        "/v1/identities", params={"order_by": "email desc", "page_size": 2, "page_token": body["next_page_token"]}
    ).json()
    assert [i["email"] for i in rest["identities"]] == ["a@example.com"]
    bad = prod.get("/v1/identities", params={"order_by": "first_name"})
    assert bad.status_code == 400 and error_of(bad)["details"]["field"] == "order_by"


def test_page_token_is_bound_to_its_query(prod: httpx.Client) -> None:
    for i in range(3):
        create(prod, f"tok{i}@example.com")
    token = prod.get("/v1/identities", params={"page_size": 1}).json()["next_page_token"]
    other = prod.get("/v1/identities", params={"page_size": 1, "page_token": token, "filter": 'state = "active"'})
    assert other.status_code == 400 and error_of(other)["details"]["field"] == "page_token"
    garbage = prod.get("/v1/identities", params={"page_token": "not-a-token"})
    assert garbage.status_code == 400 and error_of(garbage)["details"]["field"] == "page_token"


def test_list_rejects_unknown_query_parameters(prod: httpx.Client) -> None:
    response = prod.get("/v1/identities", params={"pageSize": 5})
    assert response.status_code == 400 and error_of(response)["details"]["field"] == "pageSize"


# --- get / patch / delete ---------------------------------------------------------------------------------


def test_get_unknown_identity_is_404_901(prod: httpx.Client) -> None:
    response = prod.get("/v1/identities/usr_00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert error_of(response)["code"] == "AVNOLOGY_AUTH_901"
    for response in (
        prod.patch("/v1/identities/usr_x", json={"identity": {}, "update_mask": "first_name"}),
        prod.delete("/v1/identities/usr_x"),
    ):
        assert response.status_code == 404 and error_of(response)["code"] == "AVNOLOGY_AUTH_901"


def test_get_returns_the_identity_with_an_etag(prod: httpx.Client) -> None:
    created = create(prod, "get@example.com").json()
    response = prod.get(f"/v1/identities/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["ETag"] == f'W/"{created["etag"]}"'


def test_patch_without_update_mask_is_400(prod: httpx.Client) -> None:
    identity_id = create(prod, "mask@example.com").json()["id"]
    for body in ({"identity": {"first_name": "X"}}, {"identity": {"first_name": "X"}, "update_mask": ""}):
        response = prod.patch(f"/v1/identities/{identity_id}", json=body)
        assert response.status_code == 400
        assert error_of(response)["details"]["field"] == "update_mask"
    bad_path = prod.patch(f"/v1/identities/{identity_id}", json={"identity": {"state": "x"}, "update_mask": "state"})
    assert bad_path.status_code == 400 and error_of(bad_path)["details"]["field"] == "update_mask"
    assert prod.get(f"/v1/identities/{identity_id}").json()["first_name"] is None


def test_patch_changes_only_the_masked_fields(prod: httpx.Client) -> None:
    created = create(prod, "patch@example.com", first_name="Old", last_name="Name", traits={"a": 1}).json()
    response = prod.patch(
        f"/v1/identities/{created['id']}",
        json={
            "identity": {"first_name": "New", "last_name": "Ignored", "traits": {"b": 2}},
            "update_mask": "first_name,traits",
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["first_name"], body["last_name"], body["traits"]) == ("New", "Name", {"b": 2})
    assert body["update_time"] > created["update_time"]
    assert body["etag"] != created["etag"]
    assert response.headers["ETag"] == f'W/"{body["etag"]}"'
    assert prod.get(f"/v1/identities/{created['id']}").json() == body


def test_patch_applies_the_validation_rules(prod: httpx.Client) -> None:
    create(prod, "holder@example.com")
    identity_id = create(prod, "mover@example.com").json()["id"]
    bad_phone = prod.patch(f"/v1/identities/{identity_id}", json={"identity": {"phone": "12"}, "update_mask": "phone"})
    assert bad_phone.status_code == 400 and error_of(bad_phone)["details"]["field"] == "phone"
    no_email = prod.patch(f"/v1/identities/{identity_id}", json={"identity": {}, "update_mask": "email"})
    assert no_email.status_code == 400 and error_of(no_email)["details"]["field"] == "email"
    taken = prod.patch(
        f"/v1/identities/{identity_id}", json={"identity": {"email": "Holder@example.com"}, "update_mask": "email"}
    )
    assert taken.status_code == 409 and error_of(taken)["details"]["field"] == "email"


def test_patch_if_match(prod: httpx.Client) -> None:
    created = create(prod, "etag@example.com").json()
    url = f"/v1/identities/{created['id']}"
    etag = prod.get(url).headers["ETag"]
    body = {"identity": {"first_name": "A"}, "update_mask": "first_name"}
    first = prod.patch(url, json=body, headers={"If-Match": etag})
    assert first.status_code == 200
    stale = prod.patch(url, json={**body, "identity": {"first_name": "B"}}, headers={"If-Match": etag})
    assert stale.status_code == 409
    assert error_of(stale)["code"] == "AVNOLOGY_AUTH_903"
    assert prod.get(url).json()["first_name"] == "A"
    fresh = prod.patch(url, json={**body, "identity": {"first_name": "B"}}, headers={"If-Match": first.headers["ETag"]})
    assert fresh.status_code == 200 and fresh.json()["first_name"] == "B"


def test_delete_is_soft_by_default(prod: httpx.Client) -> None:
    identity_id = create(prod, "soft@example.com").json()["id"]
    response = prod.delete(f"/v1/identities/{identity_id}")
    assert response.status_code == 204
    body = prod.get(f"/v1/identities/{identity_id}").json()
    assert body["state"] == "scheduled_deletion"
    assert body["purge_time"] > body["update_time"]


def test_delete_with_force_is_hard(prod: httpx.Client) -> None:
    identity_id = create(prod, "hard@example.com").json()["id"]
    response = prod.delete(f"/v1/identities/{identity_id}", params={"force": "true"})
    assert response.status_code == 204
    assert prod.get(f"/v1/identities/{identity_id}").status_code == 404
    assert state(prod)["identities"] == []
    assert create(prod, "hard@example.com").status_code == 201  # the email is free again


# --- organizations and members ----------------------------------------------------------------------------


def test_create_organization_is_201_with_org_id(prod: httpx.Client) -> None:
    response = prod.post("/v1/organizations", json={"name": "us-east-1-abc", "display_name": "Main pool"})
    assert response.status_code == 201
    body = response.json()
    assert ORG_ID.match(body["id"])
    assert (body["name"], body["display_name"], body["slug"]) == ("us-east-1-abc", "Main pool", "us-east-1-abc")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "a"}, "name"),
        ({"name": "Upper"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": "ok-name", "slug": "Bad Slug"}, "slug"),
        ({"name": "ok-name", "owner": "me"}, "owner"),
    ],
)
def test_organization_validation_is_400(prod: httpx.Client, body: dict[str, Any], field: str) -> None:
    response = prod.post("/v1/organizations", json=body)
    assert response.status_code == 400
    assert error_of(response)["details"]["field"] == field


def test_duplicate_organization_name_or_slug_is_409_903(prod: httpx.Client) -> None:
    assert prod.post("/v1/organizations", json={"name": "acme", "slug": "acme-inc"}).status_code == 201
    for body, field in (({"name": "acme"}, "name"), ({"name": "other", "slug": "acme-inc"}, "slug")):
        response = prod.post("/v1/organizations", json=body)
        assert response.status_code == 409
        error = error_of(response)
        assert error["code"] == "AVNOLOGY_AUTH_903" and error["details"]["field"] == field


def test_organizations_have_no_undocumented_lookup(prod: httpx.Client) -> None:
    prod.post("/v1/organizations", json={"name": "acme"})
    assert prod.get("/v1/organizations", params={"filter": 'name = "acme"'}).status_code in (404, 405)


def test_members_add_change_role_and_remove(prod: httpx.Client) -> None:
    org = prod.post("/v1/organizations", json={"name": "team"}).json()["id"]
    user = create(prod, "member@example.com").json()["id"]
    url = f"/v1/organizations/{org}/members/{user}"
    added = prod.put(url, json={"role": "admin"})
    assert added.status_code == 201 and added.json()["role"] == "admin"
    again = prod.post(url, json={})
    assert again.status_code == 409
    assert error_of(again)["code"] == "AVNOLOGY_AUTH_301"
    changed = prod.patch(url, json={"role": "viewer"})
    assert changed.status_code == 200 and changed.json()["role"] == "viewer"
    assert state(prod)["memberships"] == [changed.json()]
    assert prod.delete(url).status_code == 204
    assert state(prod)["memberships"] == []
    assert prod.delete(url).status_code == 404


def test_members_of_a_missing_org_are_404_300(prod: httpx.Client) -> None:
    user = create(prod, "lonely@example.com").json()["id"]
    for response in (
        prod.put(f"/v1/organizations/org_missing/members/{user}", json={}),
        prod.patch(f"/v1/organizations/org_missing/members/{user}", json={"role": "x"}),
        prod.delete(f"/v1/organizations/org_missing/members/{user}"),
    ):
        assert response.status_code == 404
        assert error_of(response)["code"] == "AVNOLOGY_AUTH_300"
    org = prod.post("/v1/organizations", json={"name": "real"}).json()["id"]
    missing_user = prod.put(f"/v1/organizations/{org}/members/usr_missing", json={})
    assert missing_user.status_code == 404 and error_of(missing_user)["code"] == "AVNOLOGY_AUTH_901"


# --- permissions ------------------------------------------------------------------------------------------


def _tuple(user_id: str, obj: str = "admins") -> dict[str, str]:
    return {"namespace": "roles", "object": obj, "relation": "member", "subject": f"identities:{user_id}"}


def test_permission_grant_409_check_and_revoke(prod: httpx.Client) -> None:
    user = create(prod, "perm@example.com").json()["id"]
    granted = prod.post("/v1/permissions", json=_tuple(user))
    assert granted.status_code == 201
    assert {k: granted.json()[k] for k in ("namespace", "object", "relation", "subject")} == _tuple(user)
    again = prod.post("/v1/permissions", json=_tuple(user))
    assert again.status_code == 409 and error_of(again)["code"] == "AVNOLOGY_AUTH_903"
    assert prod.post("/v1/permissions:check", json=_tuple(user)).json() == {"allowed": True}
    assert prod.post("/v1/permissions:check", json=_tuple(user, "other")).json() == {"allowed": False}
    assert prod.delete("/v1/permissions", params=_tuple(user)).status_code == 204
    assert prod.post("/v1/permissions:check", json=_tuple(user)).json() == {"allowed": False}
    assert prod.delete("/v1/permissions", params=_tuple(user)).status_code == 404


def test_permission_revoke_accepts_a_json_body(prod: httpx.Client) -> None:
    prod.post("/v1/permissions", json=_tuple("usr_1"))
    assert prod.request("DELETE", "/v1/permissions", json=_tuple("usr_1")).status_code == 204
    assert state(prod)["permissions"] == []


def test_permission_tuple_validation(prod: httpx.Client) -> None:
    incomplete = prod.post("/v1/permissions", json={"namespace": "roles", "object": "a", "relation": "member"})
    assert incomplete.status_code == 400 and error_of(incomplete)["details"]["field"] == "subject"
    bad_subject = prod.post("/v1/permissions", json={**_tuple("x"), "subject": "usr_without_namespace"})
    assert bad_subject.status_code == 400 and error_of(bad_subject)["details"]["field"] == "subject"


def test_permission_list_filters_and_pages(prod: httpx.Client) -> None:
    for i in range(5):
        prod.post("/v1/permissions", json=_tuple(f"usr_{i}"))
    prod.post("/v1/permissions", json=_tuple("usr_0", "editors"))
    first = prod.get("/v1/permissions", params={"object": "admins", "page_size": 2}).json()
    assert first["total_size"] == 5 and len(first["permissions"]) == 2
    subjects = [p["subject"] for p in first["permissions"]]
    token = first["next_page_token"]
    while token:
        page = prod.get("/v1/permissions", params={"object": "admins", "page_size": 2, "page_token": token}).json()
        subjects += [p["subject"] for p in page["permissions"]]
        token = page["next_page_token"]
    assert subjects == [f"identities:usr_{i}" for i in range(5)]
    by_subject = prod.get("/v1/permissions", params={"subject": "identities:usr_0"}).json()
    assert sorted(p["object"] for p in by_subject["permissions"]) == ["admins", "editors"]


# --- recovery flow ----------------------------------------------------------------------------------------


def _submit(client: httpx.Client, email: str) -> httpx.Response:
    flow = client.get("/v1/flows/recovery")
    assert flow.status_code == 200
    body = flow.json()
    assert body["id"] and body["csrf_token"]
    return client.post(
        f"/v1/flows/recovery/{body['id']}:submit",
        json={"method": "code", "email": email, "csrf_token": body["csrf_token"]},
    )


def test_recovery_answers_sent_alike_and_records_a_code_only_for_a_known_email(
    prod: httpx.Client, anonymous: httpx.Client
) -> None:
    user = create(prod, "Known@example.com").json()["id"]
    known = _submit(anonymous, "known@example.com")  # public: no bearer key
    unknown = _submit(anonymous, "stranger@example.com")
    assert known.status_code == unknown.status_code == 200
    # Identical apart from the flow id, which is the caller's own.
    assert {**known.json(), "id": None} == {**unknown.json(), "id": None}
    assert known.json()["state"] == "sent_email"
    sent = state(prod)["recovery_codes_sent"]
    assert [(s["identity_id"], s["email"]) for s in sent] == [(user, "Known@example.com")]
    assert re.fullmatch(r"\d{6}", sent[0]["code"])
    assert state(prod)["counters"]["recovery_submissions"] == 2


def test_recovery_with_a_key_uses_that_keys_tenant(staging: httpx.Client, prod: httpx.Client) -> None:
    create(staging, "stage@example.com")
    assert _submit(staging, "stage@example.com").status_code == 200
    assert len(state(prod, "staging")["recovery_codes_sent"]) == 1
    assert state(prod, "production")["recovery_codes_sent"] == []


def test_recovery_submit_checks_flow_csrf_and_method(anonymous: httpx.Client) -> None:
    flow = anonymous.get("/v1/flows/recovery").json()
    url = f"/v1/flows/recovery/{flow['id']}:submit"
    ok = {"method": "code", "email": "a@example.com", "csrf_token": flow["csrf_token"]}
    wrong_csrf = anonymous.post(url, json={**ok, "csrf_token": "forged"})
    assert wrong_csrf.status_code == 403 and error_of(wrong_csrf)["code"] == "AVNOLOGY_AUTH_100"
    wrong_method = anonymous.post(url, json={**ok, "method": "link"})
    assert wrong_method.status_code == 400 and error_of(wrong_method)["details"]["field"] == "method"
    missing = anonymous.post("/v1/flows/recovery/no-such-flow:submit", json=ok)
    assert missing.status_code == 404 and error_of(missing)["code"] == "AVNOLOGY_AUTH_901"


def test_recovery_is_rate_limited_per_email_alike_for_unknown_emails(
    prod: httpx.Client, anonymous: httpx.Client
) -> None:
    create(prod, "known@example.com")
    for email in ("known@example.com", "stranger@example.com"):
        assert _submit(anonymous, email).status_code == 200
        again = _submit(anonymous, email.upper())
        assert again.status_code == 429
        error = error_of(again)
        assert error["code"] == "AVNOLOGY_AUTH_021"
        assert int(again.headers["Retry-After"]) >= 1 and error["retry_after"] >= 1
    assert len(state(prod)["recovery_codes_sent"]) == 1


def test_recovery_flow_is_rate_limited_per_client() -> None:
    settings = EmulatorSettings(
        api_keys={PRODUCTION_KEY: "production"}, recovery_rate_limit_rps=0.5, recovery_rate_limit_burst=2
    )
    with AvnologyEmulatorServer(settings) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        statuses = [client.get("/v1/flows/recovery").status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        third = client.get("/v1/flows/recovery")
        assert error_of(third)["code"] == "AVNOLOGY_AUTH_021"


# --- rate limit -------------------------------------------------------------------------------------------


def test_rate_limit_from_settings_is_a_token_bucket_per_key() -> None:
    settings = EmulatorSettings(
        api_keys={STAGING_KEY: "staging", PRODUCTION_KEY: "production"}, rate_limit_rps=1.0, rate_limit_burst=3
    )
    with AvnologyEmulatorServer(settings) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        prod_auth = {"Authorization": f"Bearer {PRODUCTION_KEY}"}
        responses = [client.get("/v1/identities", headers=prod_auth) for _ in range(4)]
        assert [r.status_code for r in responses] == [200, 200, 200, 429]
        assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
        limited = responses[-1]
        assert limited.headers["X-RateLimit-Limit"] == "3"
        assert limited.headers["Retry-After"] == "1"
        error = error_of(limited)
        assert error["code"] == "AVNOLOGY_AUTH_021" and error["retry_after"] == 1
        # another key has its own bucket
        assert client.get("/v1/identities", headers={"Authorization": f"Bearer {STAGING_KEY}"}).status_code == 200
        time.sleep(1.05)  # one token back after 1 s at 1 rps
        assert client.get("/v1/identities", headers=prod_auth).status_code == 200
        assert state(client)["counters"]["rate_limited"] == 1


def test_rate_limit_can_be_changed_at_runtime(prod: httpx.Client, anonymous: httpx.Client) -> None:
    reply = set_faults(anonymous, rate_limit_rps=0.1, rate_limit_burst=2)
    assert reply["rate_limit"] == {"rps": 0.1, "burst": 2}
    statuses = [create(prod, f"rl{i}@example.com").status_code for i in range(3)]
    assert statuses == [201, 201, 429]
    limited = create(prod, "rl9@example.com")
    assert int(limited.headers["Retry-After"]) >= 5  # 1 token at 0.1 rps is ~10 s away
    assert len(state(prod)["identities"]) == 2
    set_faults(anonymous)  # {} restores the start-up limit (unlimited here)
    assert create(prod, "rl3@example.com").status_code == 201


# --- faults -----------------------------------------------------------------------------------------------


def test_error_rate_one_gives_5xx_and_writes_nothing(prod: httpx.Client, anonymous: httpx.Client) -> None:
    set_faults(anonymous, error_rate=1.0, error_statuses=[500, 503], seed=1)
    headers = {"Idempotency-Key": "retry-me"}
    for _ in range(6):
        response = create(prod, "fault@example.com", headers=headers)
        assert response.status_code in (500, 503)
        assert error_of(response)["code"] == "EMULATOR_INJECTED_FAULT"
    snapshot = state(prod)
    assert snapshot["identities"] == []
    assert snapshot["counters"]["faults_injected"] == 6
    assert "retry-me" not in snapshot["counters"]["idempotency_keys"]
    set_faults(anonymous)
    assert create(prod, "fault@example.com", headers=headers).status_code == 201  # the retry is safe


def test_faults_are_reproducible_with_a_seed(prod: httpx.Client, anonymous: httpx.Client) -> None:
    def run() -> list[int]:
        set_faults(anonymous, error_rate=0.5, error_statuses=[500, 502, 503], seed=42)
        return [prod.get("/v1/identities").status_code for _ in range(24)]

    first, second = run(), run()
    assert first == second
    assert {200} < set(first) <= {200, 500, 502, 503}


def test_latency_is_added(prod: httpx.Client, anonymous: httpx.Client) -> None:
    set_faults(anonymous, latency_ms=150, latency_jitter_ms=50, seed=3)
    started = time.monotonic()
    assert prod.get("/v1/identities").status_code == 200
    assert time.monotonic() - started >= 0.15


def test_hung_request_times_the_client_out_and_writes_nothing(prod: httpx.Client, anonymous: httpx.Client) -> None:
    set_faults(anonymous, hang_every=2, hang_seconds=1.0)
    assert prod.get("/v1/identities").status_code == 200  # request 1 passes
    with pytest.raises(httpx.ReadTimeout):  # request 2 hangs longer than the client waits
        prod.post("/v1/identities", json={"identity": {"email": "hung@example.com"}}, timeout=0.3)
    started = time.monotonic()
    assert prod.get("/v1/identities").status_code == 200  # request 3 passes
    hung = prod.get("/v1/identities")  # request 4 hangs, then answers 503
    assert time.monotonic() - started >= 1.0
    assert hung.status_code == 503 and error_of(hung)["details"]["fault"] == "hang"
    time.sleep(0.8)  # let the abandoned request 2 finish its hang
    assert state(prod)["identities"] == []


def test_stop_does_not_wait_for_a_hung_request() -> None:
    server = AvnologyEmulatorServer(EmulatorSettings(api_keys={PRODUCTION_KEY: "production"})).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            set_faults(client, hang_every=1, hang_seconds=60)
            outcome: list[httpx.Response | httpx.TransportError] = []

            def call_the_hung_endpoint() -> None:
                try:
                    outcome.append(client.get("/v1/identities", headers={"Authorization": f"Bearer {PRODUCTION_KEY}"}))
                except httpx.TransportError as exc:
                    outcome.append(exc)

            hung = threading.Thread(target=call_the_hung_endpoint)
            hung.start()
            time.sleep(0.2)
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < 5
            hung.join(timeout=10)
            assert not hung.is_alive()
            # the caller is released: the connection drops or it gets an error status, never a success
            assert isinstance(outcome[0], httpx.TransportError) or outcome[0].status_code >= 500
    finally:
        server.stop()


def test_bad_fault_configuration_is_400(anonymous: httpx.Client) -> None:
    for body in ({"error_rate": 2}, {"error_statuses": [404]}, {"latency_ms": -1}, {"chaos": True}):
        response = anonymous.post("/_emulator/faults", json=body)
        assert response.status_code == 400, body
        assert error_of(response)["code"] == "AVNOLOGY_AUTH_902"


# --- admin API --------------------------------------------------------------------------------------------


def test_state_reports_everything_per_tenant(prod: httpx.Client, anonymous: httpx.Client) -> None:
    user = create(prod, "state@example.com").json()["id"]
    org = prod.post("/v1/organizations", json={"name": "st"}).json()["id"]
    prod.put(f"/v1/organizations/{org}/members/{user}", json={})
    prod.post("/v1/permissions", json=_tuple(user))
    snapshot = state(anonymous)
    assert snapshot["tenant"] == "production"
    assert [len(snapshot[k]) for k in ("identities", "organizations", "memberships", "permissions")] == [1, 1, 1, 1]
    counters = snapshot["counters"]
    assert counters["identities_created"] == 1
    assert counters["by_route"]["POST /v1/identities"] == 1
    assert counters["by_status"]["201"] == 4
    assert PRODUCTION_KEY not in str(snapshot)
    assert anonymous.get("/_emulator/state").status_code == 400
    assert anonymous.get("/_emulator/state", params={"tenant": "nope"}).status_code == 404


def test_reset_clears_all_state_and_faults(prod: httpx.Client, anonymous: httpx.Client) -> None:
    before = create(prod, "reset@example.com", headers={"Idempotency-Key": "k"}).json()["id"]
    prod.post("/v1/organizations", json={"name": "gone"})
    set_faults(anonymous, error_rate=1.0)
    response = anonymous.post("/_emulator/reset")
    assert response.status_code == 200
    snapshot = state(anonymous)
    assert snapshot["identities"] == snapshot["organizations"] == []
    assert snapshot["counters"]["idempotency_keys"] == {}
    assert snapshot["server"]["faults"]["error_rate"] == 0.0
    after = create(prod, "reset@example.com", headers={"Idempotency-Key": "k"})
    assert after.status_code == 201 and after.json()["id"] != before  # a new identity, not a replay


def test_server_python_helpers_use_the_admin_api(avnology: AvnologyEmulatorServer, prod: httpx.Client) -> None:
    create(prod, "helper@example.com")
    assert len(avnology.state("production")["identities"]) == 1
    assert avnology.set_faults(latency_ms=1)["faults"]["latency_ms"] == 1
    avnology.reset()
    assert avnology.state("production")["identities"] == []


# --- the server object and the command --------------------------------------------------------------------


def test_taken_port_fails_fast_with_advice() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        server = AvnologyEmulatorServer(EmulatorSettings(api_keys={PRODUCTION_KEY: "production"}), port=port)
        with pytest.raises(PortInUseError, match=f"{port} is already in use"):
            server.start()
        server.stop()


def test_stop_is_idempotent_and_repr_hides_keys() -> None:
    settings = EmulatorSettings(api_keys={PRODUCTION_KEY: "production"}, readonly_keys={READONLY_KEY: "production"})
    server = AvnologyEmulatorServer(settings).start()
    url = server.url
    assert httpx.get(f"{url}/v1/identities", headers={"Authorization": f"Bearer {PRODUCTION_KEY}"}).status_code == 200
    assert PRODUCTION_KEY not in repr(server) and READONLY_KEY not in repr(settings)
    server.stop()
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v1/identities", timeout=2)
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url


def test_settings_reject_bad_configuration() -> None:
    with pytest.raises(ValueError, match="at least one API key"):
        EmulatorSettings()
    with pytest.raises(ValueError, match="both api_keys and readonly_keys") as excinfo:
        EmulatorSettings(api_keys={PRODUCTION_KEY: "production"}, readonly_keys={PRODUCTION_KEY: "production"})
    assert PRODUCTION_KEY not in str(excinfo.value)
    with pytest.raises(ValueError, match="rate_limit_rps"):
        EmulatorSettings(api_keys={PRODUCTION_KEY: "production"}, rate_limit_rps=-1)
    with pytest.raises(ValueError, match="invalid tenant"):
        EmulatorSettings(api_keys={PRODUCTION_KEY: "Prod Tenant"})


def test_one_command_runs_it_in_the_foreground() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulators.avnology",
            "--port",
            "0",
            "--staging-key",
            STAGING_KEY,
            "--production-key",
            PRODUCTION_KEY,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first_line)
        assert match, first_line
        url = match.group(1)
        response = httpx.post(
            f"{url}/v1/identities",
            json={"identity": {"email": "cli@example.com"}},
            headers={"Authorization": f"Bearer {STAGING_KEY}"},
        )
        assert response.status_code == 201
        assert STAGING_KEY not in first_line
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0
