"""The boundary models: what they accept, what they refuse, and that they agree with the hand-written schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from cognito_migration.models import (
    AUTH0_FORBIDDEN_APP_METADATA_KEYS,
    AUTH0_IMPORT_SCHEMA_PATH,
    AUTH0_USER,
    COGNITO_USER,
    IDENTITY_LINE,
    BatchInfo,
    ConservationError,
    ConvertSummary,
)

SUB = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
SCHEMA = json.loads(AUTH0_IMPORT_SCHEMA_PATH.read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def auth0_record(**overrides: Any) -> dict[str, Any]:
    cognito = {
        "user_pool_id": "us-east-1_X",
        "sub": SUB,
        "username": "jdoe",
        "status": "CONFIRMED",
        "enabled": True,
        "federated": False,
        "user_create_date": NOW,
        "user_last_modified_date": NOW,
        "groups": [],
    }
    record = {
        "email": "a@example.com",
        "email_verified": True,
        "user_id": SUB,
        "blocked": False,
        "app_metadata": {"cognito": cognito},
    }
    record.update(overrides)
    return record


def test_cognito_user_accepts_boto3_shapes_and_ignores_new_fields() -> None:
    raw = {
        "Username": "jdoe",
        "Attributes": [{"Name": "sub", "Value": SUB}, {"Name": "email"}],
        "UserCreateDate": NOW,
        "UserLastModifiedDate": "2024-01-02T03:04:05.123+02:00",
        "Enabled": True,
        "UserStatus": "CONFIRMED",
        "MFAOptions": [{"DeliveryMedium": "SMS", "AttributeName": "phone_number", "Future": 1}],
        "SomethingBoto3AddsLater": {"x": 1},
    }
    user = COGNITO_USER.validate_python(raw)
    assert "SomethingBoto3AddsLater" not in user
    assert user["MFAOptions"] == [{"DeliveryMedium": "SMS", "AttributeName": "phone_number"}]
    assert user["UserLastModifiedDate"].utcoffset().total_seconds() == 7200
    assert COGNITO_USER.validate_json(json.dumps(raw, default=str))["Username"] == "jdoe"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"Username": ""}, "Username"),
        ({"Attributes": [{"Value": "x"}]}, "Attributes.0.Name"),
        ({"Attributes": [{"Name": "email", "Value": None}]}, "Attributes.0.Value"),
        ({"Enabled": None}, "Enabled"),
        ({"UserCreateDate": "not a date"}, "UserCreateDate"),
    ],
)
def test_cognito_user_refuses_what_listusers_never_returns(change: dict[str, Any], where: str) -> None:
    raw = {"Username": "j", "UserCreateDate": NOW, "UserLastModifiedDate": NOW, "Enabled": True, "UserStatus": "X"}
    with pytest.raises(ValidationError) as caught:
        COGNITO_USER.validate_python({**raw, **change})
    assert ".".join(map(str, caught.value.errors()[0]["loc"])) == where


def test_a_valid_auth0_record_passes_model_and_schema() -> None:
    record = auth0_record(username="j.doe", phone_number="+4915112345678", name="N" * 150, nickname="n" * 350)
    AUTH0_USER.validate_python(record)
    VALIDATOR.validate(json.loads(AUTH0_USER.dump_json(record)))


@pytest.mark.parametrize(
    ("overrides", "schema_refuses"),
    [
        ({"unknown_field": 1}, True),
        ({"email": "x" * 65 + "@example.com"}, True),
        ({"email": "x@" + "a" * 250 + ".com"}, True),
        ({"phone_number": "+0123"}, True),
        ({"phone_number": "4155550123"}, True),
        ({"username": "a@example.com"}, True),
        ({"username": "x" * 129}, True),
        ({"username": ""}, True),
        ({"given_name": ""}, True),
        ({"family_name": "F" * 151}, True),
        ({"nickname": "n" * 351}, True),
        ({"picture": "ftp://x/y.png"}, True),
        ({"user_metadata": {"custom": {"a.b": "x"}}}, True),
        ({"user_metadata": {"custom": {"$x": "x"}}}, True),
        # Where the model is stricter than the documented format, on purpose:
        ({"email": "a@localhost"}, False),  # a host name without a dot
        ({"email": ".a@example.com"}, False),  # a local part starting with a dot
        ({"user_id": "not-a-uuid"}, False),  # any source id is fine for Auth0; ours is always a Cognito sub
    ],
)
def test_model_refuses_bad_records_and_the_schema_agrees(overrides: dict[str, Any], schema_refuses: bool) -> None:
    record = auth0_record(**overrides)
    with pytest.raises(ValidationError):
        AUTH0_USER.validate_python(record)
    serializable = json.loads(json.dumps(record, default=str))
    assert VALIDATOR.is_valid(serializable) is not schema_refuses


def test_schema_refuses_forbidden_app_metadata_keys_and_nested_dots() -> None:
    base = json.loads(json.dumps(auth0_record(), default=str))
    for key in sorted(AUTH0_FORBIDDEN_APP_METADATA_KEYS):
        assert not VALIDATOR.is_valid({**base, "app_metadata": {key: 1}}), key
    assert not VALIDATOR.is_valid({**base, "app_metadata": {"cognito": {"deep": [{"a.b": 1}]}}})
    assert not VALIDATOR.is_valid({**base, "user_metadata": {"x": {"$y": 1}}})
    assert VALIDATOR.is_valid({**base, "user_metadata": {"x": {"y": [1, "two", None, {"z": True}]}}})


def test_every_field_the_model_writes_is_in_the_schema() -> None:
    model_fields = set(AUTH0_USER.json_schema()["properties"])
    assert model_fields <= set(SCHEMA["properties"])
    assert SCHEMA["required"] == ["email"] and SCHEMA["additionalProperties"] is False
    for name, rule in SCHEMA["properties"].items():
        assert "description" in rule or "type" in rule or "$ref" in rule or "allOf" in rule, name


def test_identity_line_refuses_an_organization_less_shape_error() -> None:
    line = {
        "sub": SUB,
        "username": "jdoe",
        "email": "a@example.com",
        "status": "CONFIRMED",
        "enabled": True,
        "federated": False,
        "email_verified": True,
        "reset_email": True,
        "groups": [],
        "first_name": None,
        "display_name": None,
        "identity": {"email": "a@example.com", "traits": {}, "admin_metadata": {"cognito": {}}},
    }
    IDENTITY_LINE.validate_python(line)
    for bad_identity in (
        {"email": "a@example.com", "traits": {}, "admin_metadata": {}, "username": "ab"},
        {"email": "a@example.com", "traits": {}, "admin_metadata": {}, "phone": "555"},
        {"email": "a@example.com", "traits": {}, "admin_metadata": {}, "locale": "english please"},
        {"email": "a@example.com", "traits": {}},
    ):
        with pytest.raises(ValidationError):
            IDENTITY_LINE.validate_python({**line, "identity": bad_identity})
    with pytest.raises(ValidationError):
        IDENTITY_LINE.validate_python({k: v for k, v in line.items() if k != "reset_email"})


def summary(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "user_pool_id": "us-east-1_X",
        "organization_name": "x",
        "policy": {},
        "seen": 3,
        "unique_subs": 3,
        "converted": 1,
        "skipped": 1,
        "rejected": 1,
        "by_reason": {"unconfirmed": 1, "no_email": 1},
        "by_status": {"CONFIRMED": {"converted": 1, "skipped": 0, "rejected": 1}, "UNCONFIRMED": {"skipped": 1}},
        "warnings": {},
        "memberships_without_user": 0,
        "batches": [
            BatchInfo(
                id="batch-0001",
                auth0_file="auth0/batch-0001.json",
                identities_file="identities/batch-0001.jsonl",
                users=1,
                bytes=100,
            )
        ],
    }
    values.update(overrides)
    return values


def test_summary_holds_when_every_user_is_accounted_for() -> None:
    assert ConvertSummary(**summary()).seen == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"seen": 4}, "seen 4 users but converted 1 \\+ skipped 1 \\+ rejected 1 = 3"),
        ({"by_reason": {"unconfirmed": 1}}, "reasons count 1 users"),
        ({"batches": []}, "batches hold 0 users, converted is 1"),
        ({"by_status": {"CONFIRMED": {"converted": 1}}}, "status table counts 1 users, seen is 3"),
    ],
)
def test_summary_refuses_counts_that_do_not_add_up(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConservationError, match=message):
        ConvertSummary(**summary(**overrides))


def test_batch_info_refuses_an_oversized_batch() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 500000"):
        BatchInfo(id="batch-0001", auth0_file="a", identities_file="i", users=1, bytes=500_001)
