"""convert_user, the keeper rule and the policies: one golden test per policy and per edge case, and a
property test that arbitrary (including garbage) users never crash the converter."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cognito_migration.convert import (
    ConvertPolicy,
    KeeperCandidate,
    PoolContext,
    choose_sub_version,
    convert_user,
    keeper_rank,
    organization_slug,
    plan_keepers,
    sanitize_metadata_key,
)
from cognito_migration.models import (
    AUTH0_COGNITO_METADATA,
    AUTH0_IMPORT_SCHEMA_PATH,
    AVNOLOGY_ADMIN_METADATA,
    AVNOLOGY_TRAITS,
    IDENTITY_LINE,
    PROFILE_MAX_BYTES,
    Converted,
    Excluded,
    Outcome,
    Reason,
)

SUB = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
POOL = PoolContext("us-east-1_Abc123", "Acme Users", "acme-users", ("custom:tier", "custom:company"))
DEFAULT = ConvertPolicy()
SCHEMA = json.loads(AUTH0_IMPORT_SCHEMA_PATH.read_text())
AUTH0_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def cognito_user(
    sub: str = SUB,
    username: str | None = None,
    status: str = "CONFIRMED",
    enabled: bool = True,
    created: str = "2023-04-05T06:07:08.123000+00:00",
    modified: str = "2024-01-02T03:04:05+00:00",
    **attributes: str | None,
) -> dict[str, Any]:
    """A ListUsers user after the extractor's JSON round trip. ``custom_x`` names ``custom:x``; None drops."""
    pairs: dict[str, str | None] = {"sub": sub, "email": "Jane.Doe@Example.com", "email_verified": "true"}
    for name, value in attributes.items():
        pairs[name.replace("custom_", "custom:", 1) if name.startswith("custom_") else name] = value
    return {
        "Username": sub if username is None else username,
        "Attributes": [{"Name": n, "Value": v} for n, v in pairs.items() if v is not None],
        "UserCreateDate": created,
        "UserLastModifiedDate": modified,
        "Enabled": enabled,
        "UserStatus": status,
    }


def converted(raw: Any, policy: ConvertPolicy = DEFAULT, memberships: dict[str, list[str]] | None = None) -> Converted:
    result = convert_user(raw, memberships or {}, POOL, policy)
    assert isinstance(result, Converted), result
    assert_valid(result)
    return result


def excluded(raw: Any, policy: ConvertPolicy = DEFAULT) -> Excluded:
    result = convert_user(raw, {}, POOL, policy)
    assert isinstance(result, Excluded), result
    return result


def assert_valid(result: Converted) -> None:
    """What every converted user must satisfy: the hand-written schema, the line model, the byte forms."""
    record = json.loads(result.auth0_json)
    AUTH0_VALIDATOR.validate(record)
    AUTH0_COGNITO_METADATA.validate_python(result.auth0["app_metadata"]["cognito"])
    assert len(result.auth0_json) <= PROFILE_MAX_BYTES
    line = json.loads(result.line_json)
    IDENTITY_LINE.validate_python(line, strict=False)
    AVNOLOGY_TRAITS.validate_python(result.line["identity"]["traits"])
    AVNOLOGY_ADMIN_METADATA.validate_python(result.line["identity"]["admin_metadata"])
    assert line["groups"] == record["app_metadata"]["cognito"]["groups"]
    assert line["sub"] == record["user_id"] == result.sub
    assert "organization_id" not in line["identity"]


# --- Golden: the typical user --------------------------------------------------------------------------------


def test_typical_confirmed_user_maps_every_field() -> None:
    raw = cognito_user(
        username="jdoe",
        given_name="Jane",
        family_name="Doe",
        name="Jane Doe",
        nickname="JD",
        middle_name="Q",
        picture="https://cdn.example.com/jane.png",
        phone_number="+14155550123",
        phone_number_verified="false",
        locale="pt_BR",
        zoneinfo="America/Sao_Paulo",
        birthdate="1990-02-03",
        website="https://jane.example.com",
        custom_tier="gold",
        custom_company="Acme",
        **{"dev:custom:legacy_id": "L-1"},
    )
    result = converted(raw, memberships={SUB: ["support", "admins", "support"]})
    provenance = {
        "user_pool_id": "us-east-1_Abc123",
        "sub": SUB,
        "username": "jdoe",
        "status": "CONFIRMED",
        "enabled": True,
        "federated": False,
        "phone_number_verified": False,
        "other_attributes": {"dev:custom:legacy_id": "L-1"},
    }
    assert json.loads(result.auth0_json) == {
        "email": "Jane.Doe@Example.com",
        "email_verified": True,
        "user_id": SUB,
        "username": "jdoe",
        "given_name": "Jane",
        "family_name": "Doe",
        "name": "Jane Doe",
        "nickname": "JD",
        "picture": "https://cdn.example.com/jane.png",
        "phone_number": "+14155550123",
        "phone_verified": False,
        "blocked": False,
        "app_metadata": {
            "cognito": {
                **provenance,
                "user_create_date": "2023-04-05T06:07:08.123000Z",
                "user_last_modified_date": "2024-01-02T03:04:05Z",
                "groups": ["admins", "support"],
            }
        },
        "user_metadata": {
            "birthdate": "1990-02-03",
            "middle_name": "Q",
            "locale": "pt-BR",
            "zoneinfo": "America/Sao_Paulo",
            "website": "https://jane.example.com",
            "custom": {"company": "Acme", "tier": "gold"},
        },
    }
    assert json.loads(result.line_json) == {
        "sub": SUB,
        "username": "jdoe",
        "email": "Jane.Doe@Example.com",
        "status": "CONFIRMED",
        "enabled": True,
        "federated": False,
        "email_verified": True,
        "reset_email": True,
        "groups": ["admins", "support"],
        "first_name": "Jane",
        "display_name": "Jane Doe",
        "identity": {
            "email": "Jane.Doe@Example.com",
            "username": "jdoe",
            "first_name": "Jane",
            "last_name": "Doe",
            "display_name": "Jane Doe",
            "phone": "+14155550123",
            "locale": "pt-BR",
            "timezone": "America/Sao_Paulo",
            "traits": {
                "birthdate": "1990-02-03",
                "middle_name": "Q",
                "website": "https://jane.example.com",
                "nickname": "JD",
                "picture": "https://cdn.example.com/jane.png",
                "custom": {"company": "Acme", "tier": "gold"},
            },
            "admin_metadata": {
                "cognito": {
                    **provenance,
                    "created_at": "2023-04-05T06:07:08.123000Z",
                    "last_modified_at": "2024-01-02T03:04:05Z",
                    "email_verified": True,
                }
            },
        },
    }
    assert result.email_key == "jane.doe@example.com"
    assert result.warnings == ("email_verified_not_carried",)


def test_json_text_bytes_and_boto3_datetimes_give_the_same_records() -> None:
    raw = cognito_user(given_name="Jane")
    from_dict = converted(raw)
    assert converted(json.dumps(raw)).auth0_json == from_dict.auth0_json
    assert converted(json.dumps(raw).encode()).line_json == from_dict.line_json
    boto3_style = dict(
        raw,
        UserCreateDate=datetime(2023, 4, 5, 8, 7, 8, 123000, tzinfo=timezone(timedelta(hours=2))),
        UserLastModifiedDate=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert converted(boto3_style).auth0_json == from_dict.auth0_json


def test_attribute_order_does_not_change_the_bytes() -> None:
    raw = cognito_user(given_name="A", custom_tier="x", custom_zeta="z", custom_alpha="a", locale="en-US")
    shuffled = dict(raw, Attributes=list(reversed(raw["Attributes"])))
    assert converted(shuffled).auth0_json == converted(raw).auth0_json
    assert converted(shuffled).line_json == converted(raw).line_json


def test_naive_datetime_is_taken_as_utc() -> None:
    result = converted(cognito_user(created="2023-04-05T06:07:08", modified="2023-04-05T06:07:08"))
    assert json.loads(result.auth0_json)["app_metadata"]["cognito"]["user_create_date"] == "2023-04-05T06:07:08Z"


# --- Policies ------------------------------------------------------------------------------------------------


def test_unconfirmed_is_skipped_by_default() -> None:
    result = excluded(cognito_user(status="UNCONFIRMED"))
    assert (result.outcome, result.reason, result.sub) == (Outcome.SKIPPED, Reason.UNCONFIRMED, SUB)
    assert result.detail == "policy unconfirmed=skip"


def test_unconfirmed_policy_reject_and_import() -> None:
    rejected = excluded(cognito_user(status="UNCONFIRMED"), ConvertPolicy(unconfirmed="reject"))
    assert (rejected.outcome, rejected.reason) == (Outcome.REJECTED, Reason.UNCONFIRMED)
    imported = converted(cognito_user(status="UNCONFIRMED"), ConvertPolicy(unconfirmed="import"))
    assert json.loads(imported.line_json)["status"] == "UNCONFIRMED"


def test_disabled_user_is_imported_blocked_and_gets_no_email() -> None:
    result = converted(cognito_user(enabled=False))
    assert json.loads(result.auth0_json)["blocked"] is True
    line = json.loads(result.line_json)
    assert (line["enabled"], line["reset_email"]) == (False, False)
    assert line["identity"]["admin_metadata"]["cognito"]["enabled"] is False


def test_disabled_policy_skip() -> None:
    result = excluded(cognito_user(enabled=False), ConvertPolicy(disabled="skip"))
    assert (result.outcome, result.reason) == (Outcome.SKIPPED, Reason.DISABLED)


def test_federated_user_is_imported_with_identities_and_no_reset_email() -> None:
    identities = [
        {
            "userId": "113456789012345678901",
            "providerName": "Google",
            "providerType": "Google",
            "issuer": None,
            "primary": True,
            "dateCreated": 1700000000000,
            "unexpected": "dropped",
        }
    ]
    raw = cognito_user(
        username="Google_113456789012345678901", status="EXTERNAL_PROVIDER", identities=json.dumps(identities)
    )
    result = converted(raw)
    record = json.loads(result.auth0_json)
    kept = [{k: v for k, v in identities[0].items() if k != "unexpected"}]
    assert record["app_metadata"]["cognito"]["federated_identities"] == kept
    assert record["app_metadata"]["cognito"]["federated"] is True
    assert "identities" not in record["app_metadata"]  # a name Auth0 forbids in app_metadata
    assert "username" not in record  # 28 characters: over the Auth0 default of 15
    line = json.loads(result.line_json)
    assert (line["federated"], line["reset_email"]) == (True, False)
    assert line["identity"]["username"] == "Google_113456789012345678901"
    assert line["identity"]["admin_metadata"]["cognito"]["federated_identities"] == kept


def test_federated_policy_skip() -> None:
    result = excluded(cognito_user(status="EXTERNAL_PROVIDER"), ConvertPolicy(federated="skip"))
    assert (result.outcome, result.reason) == (Outcome.SKIPPED, Reason.FEDERATED)


def test_unparseable_identities_are_kept_raw_with_a_warning() -> None:
    result = converted(cognito_user(identities="{not json"))
    cognito = json.loads(result.auth0_json)["app_metadata"]["cognito"]
    assert cognito["federated_identities_raw"] == "{not json"
    assert "identities_unparsed" in result.warnings


@pytest.mark.parametrize("status", ["FORCE_CHANGE_PASSWORD", "RESET_REQUIRED"])
def test_password_reset_statuses_are_imported(status: str) -> None:
    assert json.loads(converted(cognito_user(status=status)).line_json)["reset_email"] is True


@pytest.mark.parametrize("status", ["ARCHIVED", "COMPROMISED", "UNKNOWN", "confirmed"])
def test_unsupported_status_is_rejected(status: str) -> None:
    result = excluded(cognito_user(status=status))
    assert (result.outcome, result.reason) == (Outcome.REJECTED, Reason.UNSUPPORTED_STATUS)


def test_phone_only_user_is_rejected_no_email() -> None:
    result = excluded(cognito_user(email=None, email_verified=None, phone_number="+447911123456"))
    assert (result.outcome, result.reason) == (Outcome.REJECTED, Reason.NO_EMAIL)
    assert result.detail == "no email attribute (phone-only user)"


@pytest.mark.parametrize(
    ("email", "detail_start"),
    [
        ("not-an-email", "email is not a valid address"),
        ("two@@example.com", "email is not a valid address"),
        ("a b@example.com", "email is not a valid address"),
        ("jane@localhost", "email is not a valid address"),
        (" jane@example.com", "email is not a valid address"),
        ("jané@example.com", "email is not a valid address"),
        ("x" * 65 + "@example.com", "email local part has 65 characters"),
        ("x@" + "a" * 60 + "." + "b" * 60 + "." + "c" * 60 + "." + "d" * 70 + ".com", "email has 259 characters"),
    ],
)
def test_invalid_email_is_rejected(email: str, detail_start: str) -> None:
    result = excluded(cognito_user(email=email))
    assert (result.outcome, result.reason) == (Outcome.REJECTED, Reason.INVALID_EMAIL)
    assert result.detail.startswith(detail_start)


def test_longest_valid_email_local_part_is_accepted() -> None:
    converted(cognito_user(email="x" * 64 + "@example.com"))


def test_non_e164_phone_is_dropped_with_a_warning() -> None:
    result = converted(cognito_user(phone_number="(555) 010-1234", phone_number_verified="true"))
    record, line = json.loads(result.auth0_json), json.loads(result.line_json)
    assert "phone_number" not in record and "phone_verified" not in record
    assert "phone" not in line["identity"]
    assert record["app_metadata"]["cognito"]["dropped_attributes"] == ["phone_number"]
    assert "phone_dropped" in result.warnings


def test_invalid_phone_policy_reject() -> None:
    result = excluded(cognito_user(phone_number="0044 7911"), ConvertPolicy(invalid_phone="reject"))
    assert (result.outcome, result.reason) == (Outcome.REJECTED, Reason.INVALID_PHONE)


def test_long_names_are_truncated_for_auth0_and_kept_whole_for_avnology() -> None:
    long_name = "Bartholomew-" * 20  # 240 characters
    result = converted(cognito_user(name=long_name, given_name="G" * 151, nickname="n" * 400))
    record, identity = json.loads(result.auth0_json), json.loads(result.line_json)["identity"]
    assert record["name"] == long_name[:150] and record["given_name"] == "G" * 150
    assert record["nickname"] == "n" * 350
    assert record["app_metadata"]["cognito"]["truncated_fields"] == ["given_name", "name", "nickname"]
    assert identity["display_name"] == long_name and identity["first_name"] == "G" * 151
    assert identity["traits"]["nickname"] == "n" * 400
    assert "names_truncated" in result.warnings


def test_long_names_policy_reject() -> None:
    result = excluded(cognito_user(family_name="F" * 151), ConvertPolicy(long_names="reject"))
    assert (result.outcome, result.reason) == (Outcome.REJECTED, Reason.NAME_TOO_LONG)
    assert result.detail == "family_name has 151 characters, Auth0 allows 150"


def test_metadata_keys_with_dot_or_dollar_are_sanitized_and_the_mapping_recorded() -> None:
    raw = cognito_user(**{"custom:plan.v2": "legacy", "custom:$price": "9.99", "custom:plan_v2": "new"})
    result = converted(raw)
    record, line = json.loads(result.auth0_json), json.loads(result.line_json)
    assert record["user_metadata"]["custom"] == {"plan_v2": "new", "_price": "9.99", "plan_v2_2": "legacy"}
    renamed = [{"attribute": "custom:$price", "key": "_price"}, {"attribute": "custom:plan.v2", "key": "plan_v2_2"}]
    assert record["app_metadata"]["cognito"]["renamed_attributes"] == renamed
    assert line["identity"]["traits"]["custom"] == record["user_metadata"]["custom"]
    assert line["identity"]["admin_metadata"]["cognito"]["renamed_attributes"] == renamed
    assert "metadata_keys_sanitized" in result.warnings


def test_declared_custom_attributes_get_the_same_key_for_every_user() -> None:
    pool = PoolContext("us-east-1_X", "X", "x", ("custom:a.b", "custom:a_b"))
    both = convert_user(cognito_user(**{"custom:a.b": "1", "custom:a_b": "2"}), {}, pool, DEFAULT)
    only_dotted = convert_user(cognito_user(**{"custom:a.b": "1"}), {}, pool, DEFAULT)
    assert isinstance(both, Converted) and isinstance(only_dotted, Converted)
    assert both.auth0["user_metadata"]["custom"] == {"a_b": "2", "a_b_2": "1"}
    assert only_dotted.auth0["user_metadata"]["custom"] == {"a_b_2": "1"}


@pytest.mark.parametrize(
    ("username", "auth0", "avnology"),
    [
        ("jdoe", "jdoe", "jdoe"),
        (SUB, None, None),  # pools with email/phone as username use the sub
        (SUB.upper(), None, None),
        ("jane@example.com", None, None),  # never an email address
        ("ab", "ab", None),  # Avnology needs 3 to 64
        ("john.doe", "john.doe", None),  # "." is allowed by Auth0 only
        ("sixteen_chars_xx", None, "sixteen_chars_xx"),  # over Auth0's default of 15
        ("名前", None, None),
    ],
)
def test_username_rules(username: str, auth0: str | None, avnology: str | None) -> None:
    result = converted(cognito_user(username=username))
    assert result.auth0.get("username") == auth0
    assert result.line["identity"].get("username") == avnology
    assert result.line["username"] == username
    assert result.auth0["app_metadata"]["cognito"]["username"] == username


def test_auth0_username_length_follows_the_policy() -> None:
    result = converted(cognito_user(username="sixteen_chars_xx"), ConvertPolicy(auth0_username_max_length=20))
    assert result.auth0["username"] == "sixteen_chars_xx"


def test_email_verified_flags() -> None:
    assert converted(cognito_user(email_verified="false")).auth0["email_verified"] is False
    unverified = converted(cognito_user(email_verified=None))
    assert unverified.auth0["email_verified"] is False
    assert "email_verified_not_carried" not in unverified.warnings
    assert converted(cognito_user(email_verified="garbage")).auth0["email_verified"] is False


def test_bad_locale_and_timezone_are_dropped() -> None:
    result = converted(cognito_user(locale="english please", zoneinfo="Mars/Olympus_Mons"))
    identity = result.line["identity"]
    assert "locale" not in identity and "timezone" not in identity
    assert "user_metadata" not in result.auth0
    assert {"locale_dropped", "timezone_dropped"} <= set(result.warnings)
    assert identity["admin_metadata"]["cognito"]["dropped_attributes"] == ["locale", "zoneinfo"]


def test_picture_that_is_not_a_url_stays_in_traits_only() -> None:
    result = converted(cognito_user(picture="avatar.png"))
    assert "picture" not in result.auth0
    assert result.line["identity"]["traits"]["picture"] == "avatar.png"
    assert result.auth0["app_metadata"]["cognito"]["dropped_attributes"] == ["picture"]


def test_empty_attribute_values_are_treated_as_absent() -> None:
    result = converted(cognito_user(given_name="", custom_tier="", phone_number=""))
    assert "given_name" not in result.auth0 and "phone_number" not in result.auth0
    assert result.line["identity"]["traits"] == {}


def test_profile_over_10_kb_is_rejected() -> None:
    big = {f"custom_field{i}": "x" * 2000 for i in range(6)}
    result = excluded(cognito_user(**big))
    assert (result.outcome, result.reason) == (Outcome.REJECTED, Reason.PROFILE_TOO_LARGE)


def test_mfa_options_are_kept_as_admin_metadata() -> None:
    raw = dict(cognito_user(), MFAOptions=[{"DeliveryMedium": "SMS", "AttributeName": "phone_number"}])
    result = converted(raw)
    assert result.auth0["app_metadata"]["cognito"]["mfa_options"] == raw["MFAOptions"]


# --- Records that are not ListUsers users --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "detail_start"),
    [
        ({"Attributes": []}, "Username: Field required"),
        (dict(cognito_user(), Attributes=[{"Name": "email", "Value": 42}]), "Attributes.0.Value"),
        (dict(cognito_user(), Enabled="sometimes"), "Enabled"),
        (dict(cognito_user(), UserCreateDate="yesterday"), "UserCreateDate"),
        ("{not json", "record: Invalid JSON"),
        ([1, 2], "record: Input should be"),
        (cognito_user(sub=None, username="jdoe"), "the sub attribute is missing"),
        (cognito_user(sub=SUB.upper()), "the sub attribute is missing or not a UUID"),
        (cognito_user(created="0001-01-01T00:30:00+05:00"), "a date is outside the representable range"),
        (cognito_user(given_name="bad \ud800 surrogate"), "Auth0 record: given_name: Input should be a valid string"),
    ],
)
def test_invalid_records_are_rejected_with_where_not_what(raw: Any, detail_start: str) -> None:
    result = excluded(raw)
    assert (result.outcome, result.reason) == (Outcome.REJECTED, Reason.INVALID_RECORD)
    assert result.detail.startswith(detail_start), result.detail
    assert "42" not in result.detail and "sometimes" not in result.detail


def test_invalid_record_salvages_ids_for_the_rejects_file() -> None:
    raw = dict(cognito_user(username="jdoe"), Enabled=None)
    assert excluded(raw)[:4] == (SUB, "jdoe", "Jane.Doe@Example.com", "CONFIRMED")
    assert excluded(json.dumps(raw))[:3] == (SUB, "jdoe", "Jane.Doe@Example.com")


# --- De-duplication and policy plumbing ----------------------------------------------------------------------


def test_keeper_rule_confirmed_first_then_most_recent_then_lowest_sub() -> None:
    old_confirmed = KeeperCandidate("a@x.com", keeper_rank("CONFIRMED", 1_000), "sub-3")
    new_unconfirmed = KeeperCandidate("a@x.com", keeper_rank("FORCE_CHANGE_PASSWORD", 9_000), "sub-1")
    newer_confirmed = KeeperCandidate("a@x.com", keeper_rank("CONFIRMED", 2_000), "sub-2")
    tie = KeeperCandidate("a@x.com", keeper_rank("CONFIRMED", 2_000), "sub-0")
    alone = KeeperCandidate("b@x.com", 5, "sub-9")
    candidates = [old_confirmed, new_unconfirmed, newer_confirmed, alone]
    assert plan_keepers(candidates) == {"a@x.com": "sub-2", "b@x.com": "sub-9"}
    for seed in range(5):
        shuffled = [*candidates, tie]
        random.Random(seed).shuffle(shuffled)
        assert plan_keepers(shuffled) == {"a@x.com": "sub-0", "b@x.com": "sub-9"}


def test_keeper_rule_reject_all() -> None:
    candidates = [
        KeeperCandidate("a@x.com", 1, "s1"),
        KeeperCandidate("a@x.com", 2, "s2"),
        KeeperCandidate("b", 1, "s3"),
    ]
    assert plan_keepers(candidates, "reject_all") == {"a@x.com": None, "b": "s3"}
    with pytest.raises(ValueError, match="unknown duplicate_email policy"):
        plan_keepers(candidates, "newest")


def test_choose_sub_version_prefers_latest_then_greatest_bytes() -> None:
    assert choose_sub_version([(5, b"b"), (7, b"a"), (6, b"z")]) == 1
    assert choose_sub_version([(7, b"a"), (7, b"b")]) == 1


def test_policy_from_the_trigger_form_names() -> None:
    form = {
        "user_pool_id": "us-east-1_X",
        "batch_size": 250,
        "unconfirmed_policy": "import",
        "disabled_policy": "skip",
        "duplicate_email_policy": "reject_all",
        "email_mode": "preview",
    }
    policy = ConvertPolicy.from_params(form)
    assert (policy.batch_max_users, policy.unconfirmed, policy.disabled) == (250, "import", "skip")
    assert policy.duplicate_email == "reject_all" and policy.federated == "import"
    with pytest.raises(ValidationError, match="unconfirmed"):
        ConvertPolicy.from_params({"unconfirmed_policy": "maybe"})
    with pytest.raises(ValidationError, match="batch_max_bytes"):
        ConvertPolicy(batch_max_bytes=600_000)


def test_pool_context_from_describe_user_pool() -> None:
    described = {
        "Id": "eu-west-1_Q1",
        "Name": "Customers (prod)",
        "SchemaAttributes": [{"Name": "email"}, {"Name": "custom:tier"}, {"Name": "custom:a.b"}],
    }
    pool = PoolContext.from_describe_user_pool(described)
    assert (pool.user_pool_id, pool.organization_name) == ("eu-west-1_Q1", "customers-prod")
    assert dict(pool.custom_keys) == {"tier": "tier", "a.b": "a_b"}
    with pytest.raises(ValueError, match=r"lacks UserPool\.Id"):
        PoolContext.from_describe_user_pool({"Name": "x"})
    with pytest.raises(ValueError, match="user_pool_id"):
        PoolContext("", "x", "x")


def test_organization_slug_and_key_sanitizing() -> None:
    assert organization_slug("  Ünïcode Pool__2 ") == "n-code-pool-2"
    assert organization_slug("!", fallback="us-east-1_Ab") == "us-east-1-ab"
    assert len(organization_slug("x" * 100)) == 64
    assert sanitize_metadata_key("a.b$c") == "a_b_c" and sanitize_metadata_key("") == "_"


# --- Property: arbitrary users never crash -------------------------------------------------------------------

STANDARD_NAMES = [
    "sub",
    "email",
    "email_verified",
    "phone_number",
    "phone_number_verified",
    "given_name",
    "family_name",
    "name",
    "nickname",
    "picture",
    "locale",
    "zoneinfo",
    "identities",
    "address",
    "birthdate",
    "gender",
    "middle_name",
    "preferred_username",
    "profile",
    "updated_at",
    "website",
    "custom:tier",
    "custom:a.b",
    "custom:$",
    "custom:",
    "dev:custom:x",
]
garbage = st.one_of(
    st.none(), st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2)
)


def mostly(valid: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` about 19 times in 20, else ``odd``: every path (converted, each reason) gets examples."""
    return st.integers(0, 19).flatmap(lambda k: odd if k == 19 else valid)


attr_value = mostly(
    st.one_of(
        st.text(max_size=40),
        st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2),
        st.text(max_size=400),
        st.sampled_from(
            [
                SUB,
                "true",
                "false",
                "+14155550123",
                "(555) 1234",
                "a@b.co",
                "Jane@Example.com",
                "en_US",
                "Europe/Paris",
                '[{"userId": 1, "primary": "yes"}]',
                "[[[[",
                "https://x.io/p.png",
            ]
        ),
    ),
    garbage,
)

named_value = st.fixed_dictionaries(
    {"Name": st.one_of(st.sampled_from(STANDARD_NAMES), st.text(max_size=12)), "Value": attr_value}
)
attribute = mostly(named_value, st.one_of(st.fixed_dictionaries({"Name": st.text(max_size=5)}), garbage))
some_datetime = st.datetimes(timezones=st.one_of(st.none(), st.timezones()))
date = mostly(
    st.one_of(some_datetime, some_datetime.map(datetime.isoformat)),
    st.one_of(st.sampled_from(["2024-02-30T00:00:00Z", "", "9999-12-31T23:59:59-05:00"]), garbage),
)
statuses = st.sampled_from(["CONFIRMED", "UNCONFIRMED", "EXTERNAL_PROVIDER", "FORCE_CHANGE_PASSWORD", "ARCHIVED"])
fields = {
    "Username": mostly(st.one_of(st.sampled_from([SUB, "jdoe", "Google_1"]), st.text(max_size=20)), garbage),
    "Attributes": st.lists(attribute, max_size=12).map(
        lambda attrs: [{"Name": "sub", "Value": SUB}, {"Name": "email", "Value": "a@b.co"}, *attrs]
    ),
    "UserCreateDate": date,
    "UserLastModifiedDate": date,
    "Enabled": mostly(st.booleans(), garbage),
    "UserStatus": mostly(statuses, st.one_of(st.text(max_size=8), garbage)),
    "MFAOptions": mostly(st.lists(st.fixed_dictionaries({"DeliveryMedium": st.text(max_size=5)}), max_size=2), garbage),
}
raw_user = st.fixed_dictionaries(
    {name: mostly(strategy.map(lambda v: (True, v)), st.just((False, None))) for name, strategy in fields.items()}
).map(lambda user: {name: value for name, (present, value) in user.items() if present})

policies = st.builds(
    ConvertPolicy,
    unconfirmed=st.sampled_from(["skip", "reject", "import"]),
    disabled=st.sampled_from(["import_blocked", "skip"]),
    invalid_phone=st.sampled_from(["drop", "reject"]),
    long_names=st.sampled_from(["truncate", "reject"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_user, policy=policies, as_text=st.booleans())
def test_arbitrary_users_yield_a_schema_valid_record_or_a_reason(
    raw: dict[str, Any], policy: ConvertPolicy, as_text: bool
) -> None:
    source: Any = raw
    if as_text:
        try:
            source = json.dumps(raw, default=str)
        except ValueError:  # lone surrogates cannot be UTF-8 text; the dict path covers them
            source = raw
    result = convert_user(source, {SUB: ["g"]}, POOL, policy)
    if isinstance(result, Converted):
        assert_valid(result)
    else:
        assert isinstance(result, Excluded)
        assert result.outcome in (Outcome.SKIPPED, Outcome.REJECTED)
        assert result.reason in set(Reason) and result.detail
