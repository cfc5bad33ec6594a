"""Extract: page a Cognito user pool out shard by shard, inside a quota budget, resumable at the last page.

The production app that still runs on Cognito shares the account's UserList quota (30 RPS for ListUsers and
ListUsersInGroup together), and Cognito answers anything over it with ``TooManyRequestsException``. So:

- The pool is split into disjoint ``sub``-prefix shards (``Filter='sub ^= "a"'``): one paginator is sequential
  (each page needs the previous page's token), several shards page in parallel.
- The run spends at most ``userlist_budget_rps``. Every UserList task (each shard, and the memberships task) runs
  in the ``cognito_userlist`` Airflow pool of :data:`USERLIST_SLOTS` slots and paces itself at budget/slots, so
  however the scheduler fills the slots the run stays inside its budget.
- Throttles are absorbed, never fatal: botocore retries them first (adaptive mode, see ``CognitoHook``), and if
  one still comes through we back off and retry the same page.
- After every page the page file is written, *then* the shard's checkpoint. A retried task replays the written
  pages (to rebuild the set of subs it holds), resumes with the checkpoint's token and overwrites any page written
  after the last checkpoint, so the output holds each user exactly once.

Layout in the run folder (``storage.run_dir``): ``raw/shard-<prefix>/page-NNNNN.json`` and
``raw/shard-<prefix>/checkpoint.json``; memberships in ``raw/memberships/`` and, once complete,
``memberships.jsonl``. Readers: :func:`iter_extracted_users`, :func:`read_memberships`,
:func:`extract_completeness`. With the MFA inventory on, each user also carries ``MfaInventory``
(``UserMFASettingList``, ``PreferredMfaSetting`` from AdminGetUser).

Tested on moto, which differs from Cognito where it matters here: it never throttles (emulators/throttle_proxy.py
puts the quotas back), it accepts ``Limit`` > 60 (we never send more), its tokens are not bound to the filter (we
only ever reuse a token with the filter that produced it, as Cognito requires), and it returns users in
insertion order (nothing here depends on order).
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import date, datetime
from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from cognito_migration import storage
from cognito_migration.ratelimit import RateLimiter

log = logging.getLogger(__name__)

# Slots of the ``cognito_userlist`` pool (deploy/pools.json; tests/test_pools.py keeps them equal). Eight, because
# a paginator is sequential: at ~150 ms a page one shard manages at most ~6 requests/s, so the 30 RPS quota needs
# at least five shards in flight; at eight, each takes 2.5 (budget 20) to 3.75 (budget 30) requests/s, well below
# what one paginator can do, so the budget, not latency, sets the pace.
USERLIST_SLOTS = 8
PAGE_LIMIT = 60  # ListUsers' maximum (moto accepts more; Cognito does not)
PROGRESS_EVERY_PAGES = 5
THROTTLE_CODES = frozenset(
    {"TooManyRequestsException", "ThrottlingException", "Throttling", "RequestLimitExceeded", "SlowDown"}
)
_BAD_TOKEN_CODES = frozenset({"InvalidToken", "InvalidPaginationTokenException"})
_PREFIX = re.compile(r"[0-9a-f]{1,8}")
MAX_BACKOFF_S = 20.0


class ExtractError(RuntimeError):
    """The extract cannot go on (pool gone, no permission, inconsistent answer); the message says what and where."""


class ExtractIncompleteError(ExtractError):
    """A reader was asked for the extract of a run whose shards have not all finished."""


# --- Planning -------------------------------------------------------------------------------------------------


def shard_prefixes(count: int) -> list[str]:
    """The ``sub`` prefixes of ``count`` disjoint shards covering every UUID: 16 one-digit or 256 two-digit."""
    if count == 16:
        return [f"{i:x}" for i in range(16)]
    if count == 256:
        return [f"{i:02x}" for i in range(256)]
    raise ValueError(f"shard_count must be 16 or 256, got {count!r}")


def slot_share(budget_rps: float, slots: int = USERLIST_SLOTS) -> float:
    """Requests/s one task in the ``cognito_userlist`` pool may spend of a run-wide budget (UserList or UserRead)."""
    if not budget_rps > 0:
        raise ValueError(f"a quota budget must be > 0 requests/s, got {budget_rps!r}")
    return budget_rps / slots


# A task may send one request early after a slow one (burst 2), so a late page does not cost it its share of the
# budget for good. Its bucket starts empty, so from its first request on it never sends more than its share.
SLOT_BURST = 2.0


def slot_limiter(budget_rps: float, slots: int = USERLIST_SLOTS) -> RateLimiter:
    """The pacing of one task in the ``cognito_userlist`` pool: its share of a run-wide budget."""
    return RateLimiter(slot_share(budget_rps, slots), burst=SLOT_BURST, initial_tokens=0)


# --- Calls: pacing, throttles, errors ---------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    """boto3 answers hold datetimes; run storage holds JSON with ISO-8601 strings."""
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def describe_client_error(exc: ClientError) -> str:
    """``Code: message (HTTP status, request id)`` — the context an operator needs, nothing from the request."""
    err = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    return (
        f"{err.get('Code', '?')}: {err.get('Message', '')} "
        f"(HTTP {meta.get('HTTPStatusCode', '?')}, request id {meta.get('RequestId', '?')})"
    )


class ThrottleMeter:
    """Counts every HTTP attempt a client makes and the throttled ones, including those botocore retried itself.

    It listens to botocore's ``response-received`` event, which fires once per attempt, so a throttle that botocore
    absorbed with its own retry is still counted. Use one client per concurrently running shard.
    """

    def __init__(self, client: Any) -> None:
        self._events = client.meta.events
        self._event = f"response-received.{client.meta.service_model.service_id.hyphenize()}"
        self._unique_id = f"cogmig-throttle-meter-{id(self)}"
        self.attempts = 0
        self.throttles = 0

    def _on_response(self, parsed_response: Any = None, **_: Any) -> None:
        self.attempts += 1
        if isinstance(parsed_response, dict) and parsed_response.get("Error", {}).get("Code") in THROTTLE_CODES:
            self.throttles += 1

    def __enter__(self) -> ThrottleMeter:
        self._events.register(self._event, self._on_response, unique_id=self._unique_id)
        return self

    def __exit__(self, *exc: object) -> None:
        self._events.unregister(self._event, unique_id=self._unique_id)


def call_paced(
    call: Callable[[], Any],
    *,
    limiter: RateLimiter,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Run ``call`` when ``limiter`` allows; absorb throttles with capped, jittered exponential backoff.

    Only throttles are retried here (forever: a throttle means "later", never "fail the run"); botocore has
    already retried it within its own attempts. Any other error propagates to the caller.
    """
    attempt = 0
    while True:
        limiter.acquire()
        try:
            return call()
        except ClientError as exc:
            if error_code(exc) not in THROTTLE_CODES:
                raise
            delay = min(MAX_BACKOFF_S, 2.0**attempt) * random.uniform(0.5, 1.0)
            attempt += 1
            log.warning("%s throttled after botocore's retries; absorbing it, next try in %.1f s", what, delay)
            sleep(delay)


def _raise_for(exc: ClientError, what: str, user_pool_id: str) -> None:
    code = error_code(exc)
    if code == "ResourceNotFoundException":
        raise ExtractError(
            f"{what}: user pool {user_pool_id} (or the resource named) does not exist any more: "
            f"{describe_client_error(exc)}"
        ) from None
    if code in ("AccessDeniedException", "NotAuthorizedException", "UnauthorizedOperation"):
        raise ExtractError(
            f"{what}: the credentials of the Cognito connection lack a permission this stage needs "
            f"(cognito-idp:ListUsers, ListGroups, ListUsersInGroup, AdminGetUser): {describe_client_error(exc)}"
        ) from None
    raise ExtractError(f"{what} failed: {describe_client_error(exc)}") from exc


def _is_bad_token(exc: ClientError) -> bool:
    code = error_code(exc)
    message = str(exc.response.get("Error", {}).get("Message", "")).lower()
    return code in _BAD_TOKEN_CODES or (
        code == "InvalidParameterException" and ("token" in message or "marker" in message)
    )


class _Progress:
    """Every few pages: users so far, pages, request rate against the task's share of the budget, throttles."""

    def __init__(self, label: str, share_rps: float, budget_rps: float | None, every: int) -> None:
        self.label = label
        self.share_rps = share_rps
        self.budget_rps = budget_rps
        self.every = max(1, every)
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def report(self, counted: str, *, pages: int, meter: ThrottleMeter, final: bool = False) -> None:
        if not final and pages % self.every:
            return
        elapsed = self.elapsed()
        rate = meter.attempts / elapsed if elapsed > 0 else 0.0
        budget = f" of the run's {self.budget_rps:g}" if self.budget_rps else ""
        log.info(
            "%s%s: %s, %d pages, %.2f req/s against a %.2f req/s share%s, %d throttles absorbed, %.1f s",
            self.label,
            " done" if final else "",
            counted,
            pages,
            rate,
            self.share_rps,
            budget,
            meter.throttles,
            elapsed,
        )


# --- One shard ------------------------------------------------------------------------------------------------


def _shard_dir(run_path: Any, prefix: str) -> Any:
    return run_path / "raw" / f"shard-{prefix}"


def _page_path(shard_dir: Any, page: int) -> Any:
    return shard_dir / f"page-{page:05d}.json"


def _sub_of(user: dict[str, Any]) -> str:
    for attr in user.get("Attributes", []):
        if attr.get("Name") == "sub":
            return str(attr.get("Value", ""))
    raise ExtractError(f"ListUsers returned a user without a sub attribute (Username {user.get('Username')!r})")


def _replay(shard_dir: Any, pages: int) -> tuple[set[str], Counter[str]]:
    """The subs and statuses already written, from the pages a previous attempt checkpointed."""
    seen: set[str] = set()
    statuses: Counter[str] = Counter()
    for page in range(1, pages + 1):
        for user in storage.read_json(_page_path(shard_dir, page))["users"]:
            seen.add(_sub_of(user))
            statuses[user.get("UserStatus", "UNKNOWN")] += 1
    return seen, statuses


def _drop_stale_pages(shard_dir: Any, pages: int) -> None:
    """Remove page files past the final page (left by an attempt whose shard later came out shorter)."""
    for entry in shard_dir.iterdir():
        match = re.fullmatch(r"page-(\d+)\.json", entry.name)
        if match and int(match.group(1)) > pages:
            entry.unlink()


def _mfa_inventory(client: Any, user_pool_id: str, username: str, limiter: RateLimiter) -> dict[str, Any]:
    try:
        got = call_paced(
            lambda: client.admin_get_user(UserPoolId=user_pool_id, Username=username),
            limiter=limiter,
            what="AdminGetUser",
        )
    except ClientError as exc:
        if error_code(exc) == "UserNotFoundException":  # deleted between the page and this call
            return {"error": "UserNotFoundException"}
        _raise_for(exc, "AdminGetUser (MFA inventory)", user_pool_id)
    return {
        "UserMFASettingList": list(got.get("UserMFASettingList") or []),
        "PreferredMfaSetting": got.get("PreferredMfaSetting") or None,
    }


def extract_shard(
    client: Any,
    user_pool_id: str,
    prefix: str,
    run_path: Any,
    *,
    limiter: RateLimiter,
    mfa_limiter: RateLimiter | None = None,
    budget_rps: float | None = None,
    page_limit: int = PAGE_LIMIT,
    progress_every: int = PROGRESS_EVERY_PAGES,
) -> dict[str, Any]:
    """Page every user whose ``sub`` starts with ``prefix`` into the run folder; resume from the checkpoint.

    Returns the shard's counts (small, for XCom). ``mfa_limiter`` turns on the MFA inventory: one
    ``AdminGetUser`` per user, its answer stored under the user's ``MfaInventory`` key.
    """
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"shard prefix must be 1-8 lowercase hex digits, got {prefix!r}")
    if not 1 <= page_limit <= PAGE_LIMIT:
        raise ValueError(f"page_limit must be 1..{PAGE_LIMIT}, got {page_limit}")
    shard_dir = _shard_dir(run_path, prefix)
    storage.make_private_dir(shard_dir)
    checkpoint_path = shard_dir / "checkpoint.json"
    checkpoint: dict[str, Any] = (
        storage.read_json(checkpoint_path)
        if checkpoint_path.exists()
        else {"shard": prefix, "pages": 0, "next_token": None, "done": False, "requests": 0, "throttles": 0}
    )
    label = f"shard {prefix}"
    if checkpoint["done"]:
        log.info(
            "%s: already complete (%d users, %d pages); nothing to do", label, checkpoint["users"], checkpoint["pages"]
        )
        return _shard_summary(checkpoint, resumed_from_page=checkpoint["pages"], elapsed_s=0.0)

    pages = int(checkpoint["pages"])
    token: str | None = checkpoint["next_token"]
    seen, statuses = _replay(shard_dir, pages)
    resumed_from = pages
    if pages:
        log.info("%s: resuming after page %d (%d users already written)", label, pages, len(seen))
    duplicates = int(checkpoint.get("duplicates_dropped", 0))
    mfa_users = int(checkpoint.get("mfa_users", 0))
    earlier_requests, earlier_throttles = int(checkpoint["requests"]), int(checkpoint["throttles"])
    restarted = False
    progress = _Progress(label, limiter.rate_per_s, budget_rps, progress_every)
    with ThrottleMeter(client) as meter:
        while True:
            request: dict[str, Any] = {"UserPoolId": user_pool_id, "Filter": f'sub ^= "{prefix}"', "Limit": page_limit}
            if token:
                request["PaginationToken"] = token
            try:
                answer = call_paced(partial(client.list_users, **request), limiter=limiter, what=f"ListUsers {label}")
            except ClientError as exc:
                if token and _is_bad_token(exc) and not restarted:
                    # Tokens expire; the shard restarts from page one and overwrites its pages (still exactly once).
                    log.warning("%s: pagination token refused (%s); restarting the shard", label, error_code(exc))
                    restarted = True
                    pages, token, duplicates, mfa_users = 0, None, 0, 0
                    seen, statuses = set(), Counter()
                    continue
                _raise_for(exc, f"ListUsers on {label}, page {pages + 1}", user_pool_id)

            fresh: list[dict[str, Any]] = []
            for user in answer.get("Users", []):
                sub = _sub_of(user)
                if not sub.startswith(prefix):
                    raise ExtractError(
                        f"{label}: ListUsers with Filter sub ^= {prefix!r} returned sub {sub!r}; the shards would "
                        "overlap. Is this endpoint really Cognito?"
                    )
                if sub in seen:  # Cognito's paging is eventually consistent: a user may come back
                    duplicates += 1
                    continue
                seen.add(sub)
                statuses[user.get("UserStatus", "UNKNOWN")] += 1
                fresh.append(to_jsonable(user))
            if mfa_limiter is not None:
                for user in fresh:
                    user["MfaInventory"] = _mfa_inventory(client, user_pool_id, user["Username"], mfa_limiter)
                mfa_users += len(fresh)

            pages += 1
            storage.write_json(
                _page_path(shard_dir, pages), {"shard": prefix, "page": pages, "users": fresh}, indent=None
            )
            token = answer.get("PaginationToken") or None
            checkpoint = {
                "shard": prefix,
                "pages": pages,
                "next_token": token,
                "done": token is None,
                "users": len(seen),
                "status_counts": dict(sorted(statuses.items())),
                "duplicates_dropped": duplicates,
                "mfa_users": mfa_users,
                # Across attempts: what earlier attempts spent plus this one's so far.
                "requests": earlier_requests + meter.attempts,
                "throttles": earlier_throttles + meter.throttles,
            }
            storage.write_json(checkpoint_path, checkpoint)
            progress.report(f"{len(seen)} users", pages=pages, meter=meter)
            if token is None:
                break
        progress.report(f"{len(seen)} users", pages=pages, meter=meter, final=True)
    _drop_stale_pages(shard_dir, pages)
    return _shard_summary(checkpoint, resumed_from_page=resumed_from, elapsed_s=progress.elapsed())


def _shard_summary(checkpoint: dict[str, Any], *, resumed_from_page: int, elapsed_s: float) -> dict[str, Any]:
    """The extract task's XCom: counts only, never user data."""
    return {
        "shard": checkpoint["shard"],
        "users": int(checkpoint.get("users", 0)),
        "pages": int(checkpoint["pages"]),
        "status_counts": dict(checkpoint.get("status_counts", {})),
        "duplicates_dropped": int(checkpoint.get("duplicates_dropped", 0)),
        "mfa_users": int(checkpoint.get("mfa_users", 0)),
        "requests": int(checkpoint.get("requests", 0)),
        "throttles": int(checkpoint.get("throttles", 0)),
        "resumed_from_page": resumed_from_page,
        "elapsed_s": round(elapsed_s, 3),
    }


# --- Group memberships -------------------------------------------------------------------------------------------


def _list_groups(client: Any, user_pool_id: str, limiter: RateLimiter) -> list[str]:
    names: list[str] = []
    token: str | None = None
    while True:
        request: dict[str, Any] = {"UserPoolId": user_pool_id, "Limit": 60}
        if token:
            request["NextToken"] = token
        try:
            answer = call_paced(partial(client.list_groups, **request), limiter=limiter, what="ListGroups")
        except ClientError as exc:
            _raise_for(exc, "ListGroups", user_pool_id)
        names.extend(g["GroupName"] for g in answer.get("Groups", []))
        token = answer.get("NextToken") or None
        if token is None:
            return names


def _membership_page(members_dir: Any, group_index: int, page: int) -> Any:
    return members_dir / f"group-{group_index:05d}-page-{page:05d}.json"


def extract_memberships(
    client: Any,
    user_pool_id: str,
    run_path: Any,
    *,
    limiter: RateLimiter,
    groups_limiter: RateLimiter,
    budget_rps: float | None = None,
    page_limit: int = PAGE_LIMIT,
    progress_every: int = PROGRESS_EVERY_PAGES,
) -> dict[str, Any]:
    """``ListGroups``, then ``ListUsersInGroup`` page by page for each group, into ``memberships.jsonl``.

    One call per 60 members instead of one ``AdminListGroupsForUser`` per user. Checkpointed like a shard: the
    group list is frozen on the first attempt, and a retry resumes inside the group it stopped in.
    ``limiter`` paces ListUsersInGroup (UserList quota), ``groups_limiter`` ListGroups (5 RPS per pool).
    """
    if not 1 <= page_limit <= PAGE_LIMIT:
        raise ValueError(f"page_limit must be 1..{PAGE_LIMIT}, got {page_limit}")
    members_dir = run_path / "raw" / "memberships"
    storage.make_private_dir(members_dir)
    checkpoint_path = members_dir / "checkpoint.json"
    output = run_path / "memberships.jsonl"
    checkpoint: dict[str, Any] = storage.read_json(checkpoint_path) if checkpoint_path.exists() else {}
    if checkpoint.get("done"):
        log.info("memberships: already complete (%d pairs); nothing to do", checkpoint["memberships"])
        return _memberships_summary(checkpoint, output)

    if "groups" not in checkpoint:
        checkpoint = {
            "groups": _list_groups(client, user_pool_id, groups_limiter),
            "pages_per_group": [],
            "group": 0,
            "page": 0,
            "next_token": None,
            "vanished_groups": 0,
            "requests": 0,
            "throttles": 0,
            "done": False,
        }
        storage.write_json(checkpoint_path, checkpoint)
    groups: list[str] = checkpoint["groups"]
    earlier_requests, earlier_throttles = int(checkpoint["requests"]), int(checkpoint["throttles"])
    progress = _Progress("memberships", limiter.rate_per_s, budget_rps, progress_every)
    pages_total = sum(checkpoint["pages_per_group"]) + checkpoint["page"]
    with ThrottleMeter(client) as meter:
        while checkpoint["group"] < len(groups):
            index, group = checkpoint["group"], groups[checkpoint["group"]]
            request: dict[str, Any] = {"UserPoolId": user_pool_id, "GroupName": group, "Limit": page_limit}
            if checkpoint["next_token"]:
                request["NextToken"] = checkpoint["next_token"]
            try:
                answer = call_paced(
                    partial(client.list_users_in_group, **request),
                    limiter=limiter,
                    what="ListUsersInGroup",
                )
            except ClientError as exc:
                if error_code(exc) == "ResourceNotFoundException" and "group" in str(exc).lower():
                    log.warning("memberships: group #%d was deleted during the run; its members are skipped", index)
                    checkpoint["vanished_groups"] += 1
                    answer = {"Users": []}
                else:
                    _raise_for(exc, f"ListUsersInGroup (group #{index})", user_pool_id)
            checkpoint["page"] += 1
            pages_total += 1
            subs = [_sub_of(user) for user in answer.get("Users", [])]
            storage.write_json(_membership_page(members_dir, index, checkpoint["page"]), {"group": group, "subs": subs})
            checkpoint["next_token"] = answer.get("NextToken") or None
            if checkpoint["next_token"] is None:
                checkpoint["pages_per_group"].append(checkpoint["page"])
                checkpoint["group"], checkpoint["page"] = index + 1, 0
            checkpoint["requests"] = earlier_requests + meter.attempts
            checkpoint["throttles"] = earlier_throttles + meter.throttles
            storage.write_json(checkpoint_path, checkpoint)
            progress.report(f"{checkpoint['group']}/{len(groups)} groups", pages=pages_total, meter=meter)

    pairs, users = _assemble_memberships(members_dir, groups, checkpoint["pages_per_group"], output)
    checkpoint.update(done=True, memberships=pairs, users_in_groups=users)
    storage.write_json(checkpoint_path, checkpoint)
    log.info(
        "memberships done: %d groups, %d (group, user) pairs, %d users in at least one group, %d requests, "
        "%d throttles absorbed",
        len(groups),
        pairs,
        users,
        checkpoint["requests"],
        checkpoint["throttles"],
    )
    return _memberships_summary(checkpoint, output)


def _assemble_memberships(
    members_dir: Any, groups: list[str], pages_per_group: list[int], output: Any
) -> tuple[int, int]:
    """Concatenate the checkpointed pages into ``memberships.jsonl``, each (group, sub) pair once."""
    pairs = 0
    users: set[str] = set()
    with output.open("w") as fh:
        for index, group in enumerate(groups):
            written: set[str] = set()
            for page in range(1, pages_per_group[index] + 1):
                for sub in storage.read_json(_membership_page(members_dir, index, page))["subs"]:
                    if sub in written:
                        continue
                    written.add(sub)
                    fh.write(json.dumps({"group": group, "sub": sub}) + "\n")
            pairs += len(written)
            users |= written
    return pairs, len(users)


def _memberships_summary(checkpoint: dict[str, Any], output: Any) -> dict[str, Any]:
    return {
        "path": str(output),
        "groups": len(checkpoint["groups"]),
        "memberships": int(checkpoint["memberships"]),
        "users_in_groups": int(checkpoint["users_in_groups"]),
        "vanished_groups": int(checkpoint["vanished_groups"]),
        "requests": int(checkpoint["requests"]),
        "throttles": int(checkpoint["throttles"]),
    }


# --- Readers (for convert, report and reconciliation) --------------------------------------------------------


def _planned_shards(run_path: Any) -> list[str]:
    snapshot = run_path / "snapshot.json"
    if not snapshot.exists():
        raise ExtractIncompleteError(f"{snapshot} is missing: preflight has not run for this run folder")
    return list(storage.read_json(snapshot)["shards"])


def _finished_checkpoint(run_path: Any, prefix: str) -> dict[str, Any]:
    path = _shard_dir(run_path, prefix) / "checkpoint.json"
    checkpoint = storage.read_json(path) if path.exists() else None
    if not checkpoint or not checkpoint.get("done"):
        pages = checkpoint["pages"] if checkpoint else 0
        raise ExtractIncompleteError(f"shard {prefix} has not finished extracting ({pages} pages so far) in {run_path}")
    return checkpoint


def iter_extracted_users(run_path: Any) -> Iterator[dict[str, Any]]:
    """Every extracted user once, as ListUsers returned it (datetimes as ISO strings), shard by shard.

    Reads only the pages each shard's checkpoint vouches for; raises :class:`ExtractIncompleteError` if a planned
    shard has not finished. Streams: memory holds one page at a time.
    """
    for prefix in _planned_shards(run_path):
        checkpoint = _finished_checkpoint(run_path, prefix)
        shard_dir = _shard_dir(run_path, prefix)
        for page in range(1, int(checkpoint["pages"]) + 1):
            yield from storage.read_json(_page_path(shard_dir, page))["users"]


def read_memberships(run_path: Any) -> dict[str, list[str]]:
    """``{sub: [group, …]}`` (groups sorted) from ``memberships.jsonl``; users in no group are absent."""
    path = run_path / "memberships.jsonl"
    if not path.exists():
        raise ExtractIncompleteError(f"{path} is missing: the memberships task has not finished")
    groups: dict[str, list[str]] = defaultdict(list)
    for row in storage.iter_jsonl(path):
        groups[row["sub"]].append(row["group"])
    return {sub: sorted(names) for sub, names in groups.items()}


def extract_completeness(run_path: Any) -> dict[str, Any]:
    """Unique users extracted against DescribeUserPool's ``EstimatedNumberOfUsers``, and counts by UserStatus.

    Logged, and small enough for XCom. ``EstimatedNumberOfUsers`` is an estimate (and was read at preflight), so
    a ratio slightly off 1.0 is expected on a live pool; a large gap is worth a look before importing.
    """
    snapshot = storage.read_json(run_path / "snapshot.json")
    estimated = int(snapshot.get("UserPool", {}).get("EstimatedNumberOfUsers", 0))
    statuses: Counter[str] = Counter()
    users = pages = requests = throttles = duplicates = 0
    for prefix in snapshot["shards"]:
        checkpoint = _finished_checkpoint(run_path, prefix)
        users += int(checkpoint["users"])
        pages += int(checkpoint["pages"])
        requests += int(checkpoint.get("requests", 0))
        throttles += int(checkpoint.get("throttles", 0))
        duplicates += int(checkpoint.get("duplicates_dropped", 0))
        statuses.update(checkpoint.get("status_counts", {}))
    result = {
        "unique_users": users,
        "estimated_users": estimated,
        "ratio": round(users / estimated, 4) if estimated else None,
        "status_counts": dict(sorted(statuses.items())),
        "shards": len(snapshot["shards"]),
        "pages": pages,
        "requests": requests,
        "throttles": throttles,
        "duplicates_dropped": duplicates,
    }
    log.info(
        "extract completeness: %d unique users of an estimated %d (ratio %s), by status %s; %d pages, "
        "%d requests, %d throttles absorbed",
        users,
        estimated,
        result["ratio"],
        result["status_counts"],
        pages,
        requests,
        throttles,
    )
    return result


# --- Task entry points (the DAG calls these) ------------------------------------------------------------------


def _cognito_client(params: Any) -> Any:
    from cognito_migration.cognito import CognitoHook

    return CognitoHook(region_name=params.region).client


def run_extract_shard(params: Any, run_id: str, shard: str) -> dict[str, Any]:
    """The ``extract`` task for one shard: its share of the UserList (and, if asked, UserRead) budget."""
    mfa = slot_limiter(params.userread_budget_rps) if params.mfa_inventory else None
    return extract_shard(
        _cognito_client(params),
        params.user_pool_id,
        shard,
        storage.run_dir(run_id),
        limiter=slot_limiter(params.userlist_budget_rps),
        mfa_limiter=mfa,
        budget_rps=params.userlist_budget_rps,
    )


# ListGroups has its own quota (UserPoolResourceRead), 5 RPS per pool: stay under it with room for the app.
LIST_GROUPS_RPS = 2.0


def run_memberships(params: Any, run_id: str) -> dict[str, Any]:
    """The ``memberships`` task: one UserList slot's share of the budget for ListUsersInGroup."""
    return extract_memberships(
        _cognito_client(params),
        params.user_pool_id,
        storage.run_dir(run_id),
        limiter=slot_limiter(params.userlist_budget_rps),
        groups_limiter=RateLimiter(LIST_GROUPS_RPS),
        budget_rps=params.userlist_budget_rps,
    )
