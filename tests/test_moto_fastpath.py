"""The benchmark's moto fast path answers ListUsers exactly as moto does: same users, order, tokens and fields."""

from __future__ import annotations

from typing import Any

from moto.cognitoidp.models import CognitoIdpBackend
from moto.cognitoidp.responses import CognitoIdpResponse

from emulators.cognito_seed import add_user, seed_pool_fast
from emulators.moto_fastpath import install_list_users_fastpath


def _pages(client: Any, pool_id: str, **request: Any) -> list[dict[str, Any]]:
    pages, token = [], None
    while True:
        page = client.list_users(UserPoolId=pool_id, **request, **({"PaginationToken": token} if token else {}))
        page.pop("ResponseMetadata")
        pages.append(page)
        token = page.get("PaginationToken")
        if not token:
            return pages


def test_fastpath_answers_like_moto(stack: Any) -> None:
    client = stack.cognito_client()
    pool = seed_pool_fast(client, 400, seed=11, pool_name="fastpath-test")
    one_sub = sorted(pool.subs)[0]
    requests = [
        {"Filter": 'sub ^= "a"', "Limit": 7},
        {"Filter": 'sub ^= "3f"', "Limit": 60},
        {"Filter": f'sub = "{one_sub}"'},
        {"Filter": 'sub ^= "zz"'},
        {"Filter": 'email ^= "a"', "Limit": 9},
        {"Limit": 50},
        {"Filter": 'sub ^= "b"', "AttributesToGet": ["email", "sub"]},
    ]
    expected = [_pages(client, pool.user_pool_id, **r) for r in requests]
    originals = (CognitoIdpBackend.list_users, CognitoIdpResponse.list_users)
    uninstall = install_list_users_fastpath()
    try:
        assert [_pages(client, pool.user_pool_id, **r) for r in requests] == expected
        assert len(expected[2][0]["Users"]) == 1 and len(expected[0]) >= 2
        # Its index follows the pool: a user added afterwards is found.
        new_sub = add_user(client, pool.user_pool_id, "late-signup", "late@example.com")
        found = client.list_users(UserPoolId=pool.user_pool_id, Filter=f'sub = "{new_sub}"')["Users"]
        assert [u["Username"] for u in found] == ["late-signup"]
    finally:
        uninstall()
    assert (CognitoIdpBackend.list_users, CognitoIdpResponse.list_users) == originals
