"""Reconciliation maths: the window after cutover, the diff of a fresh extract against the ledger, the patch.

Pure code (no I/O, no Airflow): :mod:`cognito_migration.reconcile_stage` feeds it the extract and the ledger and
carries out what it decides.

**The window.** It opens at the pool's first recorded cutover and lasts ``days`` days (30 by default, the seed's
"keep the Cognito user pool online for 30 days"). A run sweeps at most once per UTC calendar day. The *final*
run is the last one before the window closes: the window closes within the next 24 hours, so a daily schedule
has exactly one final run whatever time of day it fires.

**The diff.** Every user lands in exactly one category, checked in this order:

- ``deleted``: in the ledger, absent from the extract, not reported before. Reported only: the identity stays
  in Avnology (the user may be signing in there already; removing it is a person's decision).
- ``new``: in the extract, not in the ledger (signed up after the extract, or missed).
- ``retry``: in the ledger as ``pending`` or ``failed`` (the import never settled them); or ``rejected``,
  ``skipped`` or ``conflict`` *and* changed in Cognito since (their status, enabled flag or
  ``UserLastModifiedDate`` differs from what the ledger saw), so a fixed email or a confirmed sign-up is
  carried over instead of staying rejected for good.
- ``disabled``: imported while enabled, disabled in Cognito now. See :data:`DISABLED_POLICIES`.
- ``modified``: imported, and ``UserLastModifiedDate`` is later than the version imported (or the user was
  re-enabled). The identity is PATCHed with :func:`update_mask` of exactly the fields that differ.
- ``unchanged``: everything else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

DAY = timedelta(days=1)
DEFAULT_WINDOW_DAYS = 30

# Ledger statuses, by name, so this module stays importable without SQLAlchemy (ledger.py defines the same).
_SUCCESS = frozenset({"imported", "already_present"})
_UNSETTLED = frozenset({"pending", "failed"})
_DECIDED = frozenset({"rejected", "skipped", "conflict"})

# What happens to an identity whose Cognito user an admin disabled after the import.
DISABLED_POLICIES = ("soft_delete", "report")
DISABLED_POLICY_DOC = (
    "A user an admin disabled in Cognito after the import. `soft_delete` (default): the Avnology identity is "
    "soft-deleted (`DELETE /v1/identities/{id}`: state `scheduled_deletion`, purged after 30 days), because the "
    "admin meant to shut the account and Avnology documents no suspend state; disabling in Cognito stops "
    "nothing once the apps sign in with Avnology, and the user may already hold an Avnology password from the "
    "reset email. `report`: only list them in the daily report for a person to act on."
)


# --- the window ----------------------------------------------------------------------------------------------


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime (naive ones are taken as UTC, as the ledger stores them)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class Window:
    """The reconciliation window of one user pool: ``[cutover_at, cutover_at + days)``."""

    user_pool_id: str
    cutover_at: datetime
    days: int = DEFAULT_WINDOW_DAYS

    def __post_init__(self) -> None:
        if not self.user_pool_id:
            raise ValueError("a window needs the user pool id")
        if not isinstance(self.days, int) or isinstance(self.days, bool) or not 1 <= self.days <= 365:
            raise ValueError(f"window length must be 1..365 days, got {self.days!r}")
        object.__setattr__(self, "cutover_at", as_utc(self.cutover_at))

    @property
    def closes_at(self) -> datetime:
        return self.cutover_at + self.days * DAY

    def day_number(self, now: datetime) -> int:
        """1 on the cutover's calendar day (UTC), 2 the next day, …"""
        return (as_utc(now).date() - self.cutover_at.date()).days + 1

    def is_open(self, now: datetime) -> bool:
        return self.cutover_at <= as_utc(now) < self.closes_at

    def is_last_run(self, now: datetime) -> bool:
        """The window closes before the next daily run would come: this run writes the final report."""
        now = as_utc(now)
        return self.is_open(now) and self.closes_at <= now + DAY


@dataclass(frozen=True)
class Decision:
    """Whether this run sweeps, whether it is the final one, and why, in words for the log and the UI."""

    sweep: bool
    final: bool
    reason: str
    day: int | None = None
    sweep_date: date | None = None


def decide(
    window: Window | None,
    now: datetime,
    *,
    swept_today_by: str | None = None,
    force_final: bool = False,
    user_pool_id: str = "",
) -> Decision:
    """What a run at ``now`` does. ``swept_today_by`` is the run id of a complete sweep earlier the same UTC day.

    ``force_final`` (an operator's explicit request) writes the final report now, even after the window
    closed; it still needs a recorded cutover.
    """
    now = as_utc(now)
    if window is None:
        pool = f" for user pool {user_pool_id}" if user_pool_id else ""
        return Decision(
            False,
            False,
            f"no cutover recorded{pool}: cognito_migration has not imported this pool yet (its report task "
            "records the cutover when the import ran), so there is no window to reconcile",
        )
    day = window.day_number(now)
    opened = window.cutover_at.isoformat(timespec="seconds")
    closes = window.closes_at.isoformat(timespec="seconds")
    if now < window.cutover_at:
        return Decision(False, False, f"the cutover of {window.user_pool_id} is in the future ({opened})", day)
    if force_final:
        return Decision(True, True, f"final report requested (window {opened} → {closes})", day, now.date())
    if not window.is_open(now):
        return Decision(
            False,
            False,
            f"the {window.days}-day window of {window.user_pool_id} closed at {closes} (cutover {opened}); "
            "nothing is reconciled outside it (trigger with final_report=true to write the final report anyway)",
            day,
        )
    if swept_today_by:
        return Decision(
            False,
            False,
            f"{window.user_pool_id} was already reconciled today ({now.date()}, run {swept_today_by}); "
            "a second run the same day does nothing",
            day,
        )
    final = window.is_last_run(now)
    what = "last day: sweep, then the final report" if final else "daily sweep"
    return Decision(True, final, f"day {day} of {window.days} ({what}); window closes at {closes}", day, now.date())


# --- the diff ------------------------------------------------------------------------------------------------


class Category(StrEnum):
    NEW = "new"
    RETRY = "retry"
    MODIFIED = "modified"
    DISABLED = "disabled"
    DELETED = "deleted"
    UNCHANGED = "unchanged"


ACTION_CATEGORIES = (Category.NEW, Category.RETRY, Category.MODIFIED, Category.DISABLED, Category.DELETED)


@dataclass(frozen=True)
class FreshUser:
    """The facts of one freshly extracted user that the diff needs (no personal data)."""

    sub: str
    last_modified: datetime | None
    enabled: bool
    status: str


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO-8601 string (run storage) or a datetime (boto3, the ledger) as aware UTC; None if unusable."""
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, str) and value:
        try:
            return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def fresh_user(raw: Mapping[str, Any]) -> FreshUser:
    """From one ListUsers user as the extractor stored it."""
    sub = next((a.get("Value") for a in raw.get("Attributes") or () if a.get("Name") == "sub"), None)
    if not isinstance(sub, str) or not sub:
        raise ValueError(f"extracted user {raw.get('Username')!r} has no sub attribute")
    return FreshUser(
        sub=sub,
        last_modified=parse_timestamp(raw.get("UserLastModifiedDate")),
        enabled=bool(raw.get("Enabled", True)),
        status=str(raw.get("UserStatus", "")),
    )


def _millis(value: datetime | None) -> int | None:
    """Compare instants at millisecond precision (Cognito's), immune to how a database rounds microseconds."""
    if value is None:
        return None
    return int(as_utc(value).timestamp() * 1000)


def _later(fresh: datetime | None, recorded: datetime | None) -> bool:
    a, b = _millis(fresh), _millis(parse_timestamp(recorded) if recorded is not None else None)
    return a is not None and b is not None and a > b


def classify(fresh: FreshUser | None, row: Mapping[str, Any] | None) -> Category:
    """The category of one user from its fresh Cognito facts and its ledger row (either may be missing)."""
    if fresh is None:
        if row is None:
            raise ValueError("classify needs the fresh user, the ledger row, or both")
        return Category.DELETED if not row.get("deleted_in_cognito_at") else Category.UNCHANGED
    if row is None:
        return Category.NEW
    status = row.get("status")
    if status in _UNSETTLED:
        return Category.RETRY
    if status in _DECIDED:
        changed = (
            _later(fresh.last_modified, row.get("cognito_last_modified"))
            or fresh.status != row.get("cognito_status")
            or fresh.enabled != bool(row.get("cognito_enabled"))
        )
        return Category.RETRY if changed else Category.UNCHANGED
    if status in _SUCCESS:
        if row.get("cognito_enabled") and not fresh.enabled:
            return Category.DISABLED
        synced = row.get("imported_last_modified") or row.get("cognito_last_modified")
        reenabled = fresh.enabled and row.get("cognito_enabled") is False
        if _later(fresh.last_modified, synced) or reenabled:
            return Category.MODIFIED
        return Category.UNCHANGED
    raise ValueError(f"ledger row of sub {row.get('sub')} has unknown status {status!r}")


@dataclass
class Diff:
    """Subs per category (ids only), and how many users were compared."""

    subs: dict[Category, list[str]] = field(default_factory=lambda: {c: [] for c in ACTION_CATEGORIES})
    unchanged: int = 0
    extracted: int = 0
    in_ledger: int = 0

    def add(self, sub: str, category: Category) -> None:
        if category is Category.UNCHANGED:
            self.unchanged += 1
        else:
            self.subs[category].append(sub)

    def __getitem__(self, category: Category | str) -> list[str]:
        return self.subs[Category(category)]

    @property
    def carry_over(self) -> list[str]:
        """New and retried users: they go through convert → dry run → import → email."""
        return sorted(self.subs[Category.NEW] + self.subs[Category.RETRY])

    def counts(self) -> dict[str, int]:
        out = {str(c): len(self.subs[c]) for c in ACTION_CATEGORIES}
        out.update(unchanged=self.unchanged, extracted=self.extracted, in_ledger=self.in_ledger)
        return out

    def is_empty(self) -> bool:
        return not any(self.subs.values())

    def as_json(self) -> dict[str, Any]:
        return {"counts": self.counts(), "subs": {str(c): sorted(self.subs[c]) for c in ACTION_CATEGORIES}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Diff:
        diff = cls()
        for category in ACTION_CATEGORIES:
            diff.subs[category] = list(data["subs"].get(str(category), []))
        counts = data.get("counts", {})
        diff.unchanged = int(counts.get("unchanged", 0))
        diff.extracted = int(counts.get("extracted", 0))
        diff.in_ledger = int(counts.get("in_ledger", 0))
        return diff


def _chunks(items: Iterable[FreshUser], size: int) -> Iterator[list[FreshUser]]:
    chunk: list[FreshUser] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def diff_pool(
    fresh: Iterable[FreshUser],
    lookup: Callable[[Sequence[str]], Mapping[str, Mapping[str, Any]]],
    ledger_rows: Callable[[], Iterable[Mapping[str, Any]]],
    *,
    chunk_size: int = 500,
) -> Diff:
    """Classify every extracted user against its ledger row, then find the ledger's users Cognito no longer has.

    ``lookup(subs)`` returns the ledger rows of those subs (absent ones missing); ``ledger_rows()`` iterates
    every row of the pool once. Memory holds one chunk of rows and the set of extracted subs.
    """
    diff = Diff()
    seen: set[str] = set()
    for chunk in _chunks(fresh, chunk_size):
        chunk = [u for u in chunk if u.sub not in seen]
        rows = lookup([u.sub for u in chunk])
        for user in chunk:
            seen.add(user.sub)
            diff.add(user.sub, classify(user, rows.get(user.sub)))
    diff.extracted = len(seen)
    for row in ledger_rows():
        diff.in_ledger += 1
        if row["sub"] not in seen:
            diff.add(row["sub"], classify(None, row))
    return diff


# --- the patch of a modified user ----------------------------------------------------------------------------

# Identity fields a reconciliation may change. ``organization_id`` is the pipeline's own choice at import, not
# a Cognito attribute, so a change in Cognito never moves a user to another organization.
PATCHABLE_FIELDS = (
    "email",
    "username",
    "first_name",
    "last_name",
    "display_name",
    "phone",
    "locale",
    "timezone",
    "traits",
    "admin_metadata",
)
PROVENANCE_KEY = "cognito"


def _normal(value: Any) -> Any:
    """JSON form, with the empty values an API may return for an unset field (None, "", {}, []) as None."""
    if value in (None, "", {}, []):
        return None
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _traits_differ(new: Mapping[str, Any] | None, current: Mapping[str, Any] | None) -> bool:
    current = current or {}
    return any(_normal(value) != _normal(current.get(key)) for key, value in (new or {}).items())


def update_mask(new_identity: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The fields of the freshly converted identity that differ from the identity in Avnology, in a fixed order.

    Until the pool is decommissioned, Cognito is the source of truth for the fields it maps to: when a user
    changes there, those fields are made equal to Cognito's, even if an app wrote one of them in Avnology since.

    - A field the conversion no longer produces (e.g. the phone was removed in Cognito) but Avnology still holds
      is in the mask, so the PATCH clears it.
    - ``traits``: differs when a trait the conversion writes has another value; traits only Avnology holds
      (written there by an app since cutover) do not count and survive the patch (:func:`patch_body`).
    - ``admin_metadata``: only our provenance key (``cognito``) is compared; other keys are not ours.
    """
    mask: list[str] = []
    for name in PATCHABLE_FIELDS:
        new, cur = new_identity.get(name), current.get(name)
        if name == "traits":
            differs = _traits_differ(new, cur)
        elif name == "admin_metadata":
            differs = _normal((new or {}).get(PROVENANCE_KEY)) != _normal((cur or {}).get(PROVENANCE_KEY))
        else:
            differs = _normal(new) != _normal(cur)
        if differs:
            mask.append(name)
    return mask


def patch_body(new_identity: Mapping[str, Any], current: Mapping[str, Any], mask: Sequence[str]) -> dict[str, Any]:
    """The ``identity`` of the PATCH: the new values of the masked fields, merged where the field is shared.

    A masked field the conversion no longer produces is left out of the body, which clears it.
    """
    body: dict[str, Any] = {}
    for name in mask:
        if name not in PATCHABLE_FIELDS:
            raise ValueError(f"{name!r} is not a field a reconciliation patches")
        new = new_identity.get(name)
        if name == "traits":
            body[name] = {**(current.get("traits") or {}), **(new or {})}
        elif name == "admin_metadata":
            merged = dict(current.get("admin_metadata") or {})
            merged[PROVENANCE_KEY] = (new or {}).get(PROVENANCE_KEY)
            body[name] = merged
        elif _normal(new) is not None:
            body[name] = new
    return body
