"""The migration ledger: one row per (user pool, sub), the state that must survive crashes and re-runs.

Idempotency, resume, the email campaign, reconciliation and the report all read it. It is *not* Airflow's
metadata database. SQLAlchemy Core, so the same code runs on the embedded SQLite file and on PostgreSQL.

User status life cycle::

    pending ──► imported | already_present          (terminal, success)
            ──► skipped | rejected | conflict       (terminal, with a reason)
            ──► failed                               (retryable; a run that ends with failures does not balance)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cognito_migration import config

PENDING = "pending"
IMPORTED = "imported"
ALREADY_PRESENT = "already_present"
SKIPPED = "skipped"
REJECTED = "rejected"
CONFLICT = "conflict"
FAILED = "failed"

SUCCESS_STATUSES = frozenset({IMPORTED, ALREADY_PRESENT})
TERMINAL_STATUSES = frozenset({IMPORTED, ALREADY_PRESENT, SKIPPED, REJECTED, CONFLICT})
ALL_STATUSES = TERMINAL_STATUSES | {PENDING, FAILED}

EMAIL_CLAIMED = "claimed"
EMAIL_SENT = "sent"
EMAIL_FAILED = "failed"

metadata = sa.MetaData()

users = sa.Table(
    "migration_users",
    metadata,
    sa.Column("user_pool_id", sa.String(64), primary_key=True),
    sa.Column("sub", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(256), nullable=False, index=True),
    sa.Column("email", sa.String(320)),
    sa.Column("email_lower", sa.String(320), index=True),
    sa.Column("first_name", sa.String(256)),
    sa.Column("cognito_status", sa.String(32)),
    sa.Column("cognito_enabled", sa.Boolean),
    sa.Column("federated", sa.Boolean, nullable=False, default=False),
    sa.Column("cognito_last_modified", sa.DateTime(timezone=True)),
    sa.Column("status", sa.String(32), nullable=False, index=True),
    sa.Column("reason", sa.String(64)),
    sa.Column("detail", sa.Text),
    sa.Column("avnology_id", sa.String(64)),
    sa.Column("imported_at", sa.DateTime(timezone=True)),
    sa.Column("imported_last_modified", sa.DateTime(timezone=True)),
    sa.Column("imported_run_id", sa.String(250)),
    sa.Column("roles_granted_at", sa.DateTime(timezone=True)),
    sa.Column("hook_migrated_at", sa.DateTime(timezone=True)),
    sa.Column("deleted_in_cognito_at", sa.DateTime(timezone=True)),
    sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_run_id", sa.String(250)),
)

email_sends = sa.Table(
    "migration_email_sends",
    metadata,
    sa.Column("user_pool_id", sa.String(64), primary_key=True),
    sa.Column("sub", sa.String(64), primary_key=True),
    sa.Column("campaign", sa.String(128), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Column("error", sa.Text),
    sa.Column("run_id", sa.String(250)),
)

cutovers = sa.Table(
    "migration_cutovers",
    metadata,
    sa.Column("user_pool_id", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("cutover_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_days", sa.Integer, nullable=False),
    sa.Column("organization_id", sa.String(64)),
    sa.Column("summary", sa.Text),
)

# The organization each user pool became, per tenant: Avnology documents no lookup by name, so after the
# first create the ledger is the only place that knows the id (a re-run's create answers 409).
organizations = sa.Table(
    "migration_organizations",
    metadata,
    sa.Column("user_pool_id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("organization_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything in the ledger is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True)
class SeenUser:
    """What the extract/convert stages know about a user before any import."""

    sub: str
    username: str
    email: str | None
    cognito_status: str | None
    enabled: bool | None
    last_modified: datetime | None
    federated: bool = False
    first_name: str | None = None


@dataclass(frozen=True)
class Outcome:
    """A terminal decision that is not an import: skipped, rejected or conflict, always with a reason."""

    sub: str
    status: str
    reason: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.status not in (SKIPPED, REJECTED, CONFLICT, FAILED):
            raise ValueError(f"outcome status must be skipped, rejected, conflict or failed, not {self.status!r}")
        if not self.reason:
            raise ValueError(f"outcome for sub {self.sub} has no reason")


@dataclass(frozen=True)
class EmailOutcome:
    """How a claimed email ended: ``sent`` (the server accepted it) or ``failed`` (refused for good, with why)."""

    sub: str
    status: str
    error: str = ""

    def __post_init__(self) -> None:
        if self.status not in (EMAIL_SENT, EMAIL_FAILED):
            raise ValueError(f"email status must be sent or failed, not {self.status!r}")


@dataclass(frozen=True)
class ImportedUser:
    """One user carried over to Avnology: created now, or adopted (``already_present``) after a 409."""

    sub: str
    avnology_id: str
    already_present: bool
    cognito_last_modified: datetime | None = None
    roles_granted: bool = False
    detail: str = ""


class Ledger:
    """Migration state in a real database (SQLite file by default, PostgreSQL for several workers)."""

    def __init__(self, url: str | None = None, *, engine: Engine | None = None) -> None:
        self.url = url or config.ledger_url()
        self.engine = engine or _make_engine(self.url)

    def __repr__(self) -> str:
        return f"Ledger({self.engine.url.render_as_string(hide_password=True)!r})"

    def create_schema(self) -> Ledger:
        metadata.create_all(self.engine)
        return self

    # -- users -----------------------------------------------------------------------------------------

    def record_seen(self, user_pool_id: str, seen: Iterable[SeenUser], *, run_id: str) -> int:
        """Upsert the Cognito facts of users seen in this run; new users start as ``pending``."""
        now = utcnow()
        rows = [
            {
                "user_pool_id": user_pool_id,
                "sub": u.sub,
                "username": u.username,
                "email": u.email,
                "email_lower": u.email.lower() if u.email else None,
                "first_name": u.first_name,
                "cognito_status": u.cognito_status,
                "cognito_enabled": u.enabled,
                "federated": u.federated,
                "cognito_last_modified": u.last_modified,
                "status": PENDING,
                "first_seen_at": now,
                "last_seen_at": now,
                "last_run_id": run_id,
                "deleted_in_cognito_at": None,
            }
            for u in seen
        ]
        update_cols = [
            "username",
            "email",
            "email_lower",
            "first_name",
            "cognito_status",
            "cognito_enabled",
            "federated",
            "cognito_last_modified",
            "last_seen_at",
            "last_run_id",
            "deleted_in_cognito_at",
        ]
        for chunk in _chunks(rows, 500):
            self._upsert(users, chunk, ("user_pool_id", "sub"), update_cols)
        return len(rows)

    def record_outcomes(self, user_pool_id: str, outcomes: Iterable[Outcome]) -> int:
        """Mark users skipped/rejected/conflict/failed. A user already imported keeps its success status."""
        count = 0
        with self.engine.begin() as conn:
            for o in outcomes:
                conn.execute(
                    users.update()
                    .where(users.c.user_pool_id == user_pool_id, users.c.sub == o.sub)
                    .where(users.c.status.not_in(SUCCESS_STATUSES))
                    .values(status=o.status, reason=o.reason, detail=o.detail[:2000])
                )
                count += 1
        return count

    def mark_pending(self, user_pool_id: str, subs: Iterable[str]) -> int:
        """Put users this run converted back in the queue (e.g. rejected last run, fixed in Cognito since).

        Users already carried over keep their success status: the import skips them by the ledger.
        """
        changed = 0
        with self.engine.begin() as conn:
            for chunk in _chunks(list(subs), 500):
                result = conn.execute(
                    users.update()
                    .where(users.c.user_pool_id == user_pool_id, users.c.sub.in_(chunk))
                    .where(users.c.status.not_in(SUCCESS_STATUSES | {PENDING}))
                    .values(status=PENDING, reason=None, detail=None)
                )
                changed += result.rowcount or 0
        return changed

    def record_import(
        self,
        user_pool_id: str,
        sub: str,
        *,
        avnology_id: str,
        already_present: bool,
        cognito_last_modified: datetime | None,
        run_id: str,
        detail: str = "",
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                users.update()
                .where(users.c.user_pool_id == user_pool_id, users.c.sub == sub)
                .values(
                    status=ALREADY_PRESENT if already_present else IMPORTED,
                    reason="adopted_existing" if already_present else None,
                    detail=detail or None,
                    avnology_id=avnology_id,
                    imported_at=utcnow(),
                    imported_last_modified=cognito_last_modified,
                    imported_run_id=run_id,
                )
            )

    def record_imports(self, user_pool_id: str, imported: Iterable[ImportedUser], *, run_id: str) -> int:
        """:meth:`record_import` for many users in one transaction (the import writes in bulk, not per user)."""
        now = utcnow()
        count = 0
        with self.engine.begin() as conn:
            for user in imported:
                values: dict[str, Any] = {
                    "status": ALREADY_PRESENT if user.already_present else IMPORTED,
                    "reason": "adopted_existing" if user.already_present else None,
                    "detail": user.detail[:2000] or None,
                    "avnology_id": user.avnology_id,
                    "imported_at": now,
                    "imported_last_modified": user.cognito_last_modified,
                    "imported_run_id": run_id,
                }
                if user.roles_granted:
                    values["roles_granted_at"] = now
                conn.execute(
                    users.update().where(users.c.user_pool_id == user_pool_id, users.c.sub == user.sub).values(**values)
                )
                count += 1
        return count

    def mark_roles_granted(self, user_pool_id: str, sub: str) -> None:
        self._set(user_pool_id, sub, roles_granted_at=utcnow())

    def mark_deleted_in_cognito(self, user_pool_id: str, subs: Iterable[str]) -> None:
        now = utcnow()
        with self.engine.begin() as conn:
            for sub in subs:
                conn.execute(
                    users.update()
                    .where(users.c.user_pool_id == user_pool_id, users.c.sub == sub)
                    .values(deleted_in_cognito_at=now)
                )

    def mark_hook_migrated(self, user_pool_id: str, identifier: str) -> int:
        """Record that the password migration hook verified this user (matched by email or username).

        Two indexed updates rather than one ``OR``: this runs on the sign-in path, and SQLite would answer an
        ``OR`` across two columns with a scan of the whole pool.
        """
        ident = identifier.strip()
        now = utcnow()
        changed = 0
        with self.engine.begin() as conn:
            for column, value in ((users.c.email_lower, ident.lower()), (users.c.username, ident)):
                result = conn.execute(
                    users.update()
                    .where(users.c.user_pool_id == user_pool_id, column == value)
                    .where(users.c.hook_migrated_at.is_(None))
                    .values(hook_migrated_at=now)
                )
                changed += result.rowcount or 0
        return changed

    def get(self, user_pool_id: str, sub: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(users.select().where(users.c.user_pool_id == user_pool_id, users.c.sub == sub)).first()
        return _row(row) if row else None

    def get_many(self, user_pool_id: str, subs: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Rows of ``subs`` by sub (missing subs are absent): one query per 500, not one per user."""
        found: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(subs), 500):
                for row in conn.execute(
                    users.select().where(users.c.user_pool_id == user_pool_id, users.c.sub.in_(chunk))
                ):
                    found[row.sub] = _row(row)
        return found

    def users(self, user_pool_id: str, *, statuses: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        query = users.select().where(users.c.user_pool_id == user_pool_id).order_by(users.c.sub)
        if statuses is not None:
            query = query.where(users.c.status.in_(list(statuses)))
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                yield _row(row)

    def imported_subs(self, user_pool_id: str, subs: Iterable[str]) -> dict[str, str]:
        """``sub -> usr_ id`` for those of ``subs`` already carried over (the resume check before a create)."""
        wanted = list(subs)
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(wanted, 500):
                for sub, avnology_id in conn.execute(
                    sa.select(users.c.sub, users.c.avnology_id).where(
                        users.c.user_pool_id == user_pool_id,
                        users.c.sub.in_(chunk),
                        users.c.status.in_(SUCCESS_STATUSES),
                    )
                ):
                    found[sub] = avnology_id
        return found

    def counts(self, user_pool_id: str, *, run_id: str | None = None) -> dict[str, int]:
        """Users per status; with ``run_id``, only users seen in that run."""
        query = sa.select(users.c.status, sa.func.count()).where(users.c.user_pool_id == user_pool_id)
        if run_id is not None:
            query = query.where(users.c.last_run_id == run_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query.group_by(users.c.status)).all()
        return {status: int(n) for status, n in rows}

    def reason_counts(self, user_pool_id: str, *, run_id: str | None = None) -> dict[tuple[str, str], int]:
        query = sa.select(users.c.status, users.c.reason, sa.func.count()).where(
            users.c.user_pool_id == user_pool_id, users.c.reason.is_not(None)
        )
        if run_id is not None:
            query = query.where(users.c.last_run_id == run_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query.group_by(users.c.status, users.c.reason)).all()
        return {(status, reason): int(n) for status, reason, n in rows}

    # -- email campaign: at most one email per user per campaign -------------------------------------

    def claim_email(self, user_pool_id: str, sub: str, campaign: str, *, run_id: str | None = None) -> bool:
        """Atomically claim the right to send; False if this user was already claimed in this campaign.

        The claim is committed *before* the message goes out, so a crash between claim and send leaves a
        ``claimed`` row that is reported as unknown and never silently re-sent.
        """
        return self.settle_and_claim_email(user_pool_id, campaign, claim=sub, run_id=run_id)

    def mark_email(self, user_pool_id: str, sub: str, campaign: str, *, status: str, error: str = "") -> None:
        """Record how one claimed email ended (``sent`` or ``failed``)."""
        self.settle_and_claim_email(user_pool_id, campaign, settle=[EmailOutcome(sub, status, error)])

    def settle_and_claim_email(
        self,
        user_pool_id: str,
        campaign: str,
        *,
        settle: Iterable[EmailOutcome] = (),
        claim: str | None = None,
        run_id: str | None = None,
    ) -> bool:
        """Record the outcomes of earlier sends and claim the next user, in one transaction.

        A campaign then commits once per email instead of twice: on SQLite's default ``synchronous=FULL`` each
        commit is an fsync, and that is what bounds the sending rate. The claim is still committed before its
        email goes out. Returns whether ``claim`` was claimed (False when it was already, or when None).
        """
        outcomes = list(settle)
        try:
            with self.engine.begin() as conn:
                _settle_emails(conn, user_pool_id, campaign, outcomes)
                if claim is None:
                    return False
                conn.execute(
                    email_sends.insert().values(
                        user_pool_id=user_pool_id,
                        sub=claim,
                        campaign=campaign,
                        status=EMAIL_CLAIMED,
                        claimed_at=utcnow(),
                        run_id=run_id,
                    )
                )
        except sa.exc.IntegrityError:
            # The claim lost (the user was claimed already); the outcomes rolled back with it: record them alone.
            with self.engine.begin() as conn:
                _settle_emails(conn, user_pool_id, campaign, outcomes)
            return False
        return True

    def email_sends(
        self, user_pool_id: str, campaign: str | None = None, *, subs: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        query = email_sends.select().where(email_sends.c.user_pool_id == user_pool_id)
        if campaign is not None:
            query = query.where(email_sends.c.campaign == campaign)
        with self.engine.connect() as conn:
            if subs is None:
                return [_row(r) for r in conn.execute(query.order_by(email_sends.c.sub))]
            return [
                _row(r)
                for chunk in _chunks(list(subs), 500)
                for r in conn.execute(query.where(email_sends.c.sub.in_(chunk)).order_by(email_sends.c.sub))
            ]

    def release_email(self, user_pool_id: str, sub: str, campaign: str) -> bool:
        """Give back a claim whose message the server certainly did not accept (it answered 4xx, or the
        connection failed before the end of the data), so a later attempt may send it.

        Only a row still ``claimed`` is removed: a sent or failed outcome is never undone here.
        """
        with self.engine.begin() as conn:
            result = conn.execute(
                email_sends.delete().where(
                    email_sends.c.user_pool_id == user_pool_id,
                    email_sends.c.sub == sub,
                    email_sends.c.campaign == campaign,
                    email_sends.c.status == EMAIL_CLAIMED,
                )
            )
            return bool(result.rowcount)

    # -- organizations ----------------------------------------------------------------------------------

    def organization_id(self, user_pool_id: str, tenant: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(organizations.c.organization_id).where(
                    organizations.c.user_pool_id == user_pool_id, organizations.c.tenant == tenant
                )
            ).scalar()

    def remember_organization(self, user_pool_id: str, tenant: str, organization_id: str, name: str) -> str:
        """Store the pool's organization; the first id stored wins and is returned (concurrent creators agree)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    organizations.insert().values(
                        user_pool_id=user_pool_id,
                        tenant=tenant,
                        organization_id=organization_id,
                        name=name,
                        created_at=utcnow(),
                    )
                )
        except sa.exc.IntegrityError:
            pass
        stored = self.organization_id(user_pool_id, tenant)
        if stored is None:
            raise RuntimeError(f"ledger: organization of pool {user_pool_id} ({tenant}) was not stored")
        return stored

    # -- cutover ----------------------------------------------------------------------------------------

    def record_cutover(
        self,
        user_pool_id: str,
        run_id: str,
        *,
        cutover_at: datetime,
        window_days: int,
        organization_id: str | None,
        summary: Mapping[str, Any] | None = None,
    ) -> None:
        row = {
            "user_pool_id": user_pool_id,
            "run_id": run_id,
            "cutover_at": cutover_at,
            "window_days": window_days,
            "organization_id": organization_id,
            "summary": json.dumps(summary or {}, sort_keys=True, default=str),
        }
        self._upsert(cutovers, [row], ("user_pool_id", "run_id"), list(row)[2:])

    def first_cutover(self, user_pool_id: str) -> dict[str, Any] | None:
        """The window starts at the first cutover of a pool; later runs do not extend it silently."""
        with self.engine.connect() as conn:
            row = conn.execute(
                cutovers.select()
                .where(cutovers.c.user_pool_id == user_pool_id)
                .order_by(cutovers.c.cutover_at)
                .limit(1)
            ).first()
        return _row(row) if row else None

    # -- internals --------------------------------------------------------------------------------------

    def _set(self, user_pool_id: str, sub: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                users.update().where(users.c.user_pool_id == user_pool_id, users.c.sub == sub).values(**values)
            )

    def _upsert(
        self, table: sa.Table, rows: list[dict[str, Any]], keys: tuple[str, ...], update_cols: list[str]
    ) -> None:
        if not rows:
            return
        from sqlalchemy.dialects import postgresql, sqlite

        dialects = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
        dialect = self.engine.dialect.name
        if dialect not in dialects:
            raise NotImplementedError(f"ledger supports SQLite and PostgreSQL, not {dialect}")
        insert: Any = dialects[dialect](table)
        stmt = insert.on_conflict_do_update(
            index_elements=list(keys), set_={c: getattr(insert.excluded, c) for c in update_cols}
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, rows)


def _settle_emails(conn: sa.Connection, user_pool_id: str, campaign: str, outcomes: list[EmailOutcome]) -> None:
    now = utcnow()
    for outcome in outcomes:
        conn.execute(
            email_sends.update()
            .where(
                email_sends.c.user_pool_id == user_pool_id,
                email_sends.c.sub == outcome.sub,
                email_sends.c.campaign == campaign,
            )
            .values(
                status=outcome.status,
                sent_at=now if outcome.status == EMAIL_SENT else None,
                error=outcome.error or None,
            )
        )


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Mapped tasks may write concurrently under LocalExecutor: wait for the lock instead of failing.
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _wal(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")

        return engine
    parsed = sa.engine.make_url(url)
    if parsed.drivername == "postgresql":
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the project ships psycopg2 (requirements.txt).
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return sa.create_engine(parsed, pool_pre_ping=True)


def _row(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = _aware(value)
    return out


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
