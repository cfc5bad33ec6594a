"""Cognito group → Avnology role: the one mapping that both the cutover kit and the import stage use.

A group becomes a Keto relation tuple ``{namespace, object, relation, subject}`` with the subject written
``identities:<usr_id>`` (avnology-id-api.md, "Groups to roles"). Keeping it in one function means the plan an
operator reviews in the kit is byte for byte what the import grants.
"""

from __future__ import annotations

ROLE_NAMESPACE = "roles"
ROLE_RELATION = "member"
SUBJECT_PREFIX = "identities:"


class RoleTupleError(ValueError):
    """A role tuple cannot be built from these values; the message names the field."""


def role_tuple(
    group_name: str, usr_id: str, namespace: str = ROLE_NAMESPACE, relation: str = ROLE_RELATION
) -> dict[str, str]:
    """The permission tuple that makes identity ``usr_id`` a member of the role named after Cognito ``group_name``.

    The group name is kept verbatim as the object: it is what the app already checks in ``cognito:groups``.
    ``usr_id`` is the Avnology identity id (``usr_…``), not a subject: passing ``identities:usr_…`` is refused,
    so a double prefix can never be granted.
    """
    for field, value in (("group_name", group_name), ("namespace", namespace), ("relation", relation)):
        if not isinstance(value, str) or not value.strip():
            raise RoleTupleError(f"role tuple: {field} must be a non-empty string, got {value!r}")
    if not isinstance(usr_id, str) or not usr_id.strip() or any(c.isspace() for c in usr_id):
        raise RoleTupleError(f"role tuple for group {group_name!r}: usr_id must be a non-empty id without spaces")
    if ":" in usr_id:
        raise RoleTupleError(
            f"role tuple for group {group_name!r}: usr_id {usr_id!r} looks like a subject; pass the bare identity id"
        )
    return {"namespace": namespace, "object": group_name, "relation": relation, "subject": SUBJECT_PREFIX + usr_id}
