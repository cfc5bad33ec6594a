"""The one group → role mapping shared by the cutover kit and the import stage."""

from __future__ import annotations

import pytest

from cognito_migration.roles import RoleTupleError, role_tuple


def test_group_becomes_a_member_tuple_in_the_roles_namespace() -> None:
    assert role_tuple("admins", "usr_0b9d6c0e-5f0c-4a51-9d8e-1f2a3b4c5d6e") == {
        "namespace": "roles",
        "object": "admins",
        "relation": "member",
        "subject": "identities:usr_0b9d6c0e-5f0c-4a51-9d8e-1f2a3b4c5d6e",
    }


def test_namespace_and_relation_are_configurable() -> None:
    assert role_tuple("billing.read", "usr_1", namespace="groups", relation="holder") == {
        "namespace": "groups",
        "object": "billing.read",
        "relation": "holder",
        "subject": "identities:usr_1",
    }


def test_group_name_is_kept_verbatim() -> None:
    """Apps check the Cognito group name they already know; the role must carry it unchanged."""
    for name in ("Admins", "beta-testers", "équipe_ü", "a/b:c"):
        assert role_tuple(name, "usr_1")["object"] == name


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"group_name": "", "usr_id": "usr_1"}, "group_name"),
        ({"group_name": "   ", "usr_id": "usr_1"}, "group_name"),
        ({"group_name": None, "usr_id": "usr_1"}, "group_name"),
        ({"group_name": "g", "usr_id": "usr_1", "namespace": ""}, "namespace"),
        ({"group_name": "g", "usr_id": "usr_1", "relation": " "}, "relation"),
        ({"group_name": "g", "usr_id": ""}, "usr_id"),
        ({"group_name": "g", "usr_id": "usr 1"}, "usr_id"),
        ({"group_name": "g", "usr_id": None}, "usr_id"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(kwargs: dict, field: str) -> None:
    with pytest.raises(RoleTupleError, match=field):
        role_tuple(**kwargs)


def test_a_subject_passed_as_usr_id_is_refused_so_no_double_prefix_is_granted() -> None:
    with pytest.raises(RoleTupleError, match="looks like a subject"):
        role_tuple("admins", "identities:usr_1")
