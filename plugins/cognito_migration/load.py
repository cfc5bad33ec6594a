"""The load stages: staging dry run per batch, the gate's arithmetic, and the production import per batch.

They read convert's ``identities/batch-NNNN.jsonl`` and write small result files (``dry_run/``, ``import/``);
per-user state goes to the ledger, never to XCom. Everything that knows the Avnology API is in
:mod:`cognito_migration.avnology`; this module decides what to send, in which order, and what to remember.

Crash safety of the import: a user is written to the ledger *after* Avnology answered, in bulk every few
hundred users. A crash in between leaves users ``pending`` that already exist in Avnology; the re-run sends
the same create with the same Idempotency-Key (replayed within the key's 24 h) or gets a 409 on the email and
adopts the identity by its ``admin_metadata.cognito`` provenance. Either way nobody is created twice.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cognito_migration import config, storage
from cognito_migration.avnology import (
    AvnologyAuthError,
    AvnologyClient,
    AvnologyConflict,
    AvnologyError,
    AvnologyHook,
    CreateOutcome,
)
from cognito_migration.convert import organization_slug
from cognito_migration.ledger import (
    CONFLICT,
    FAILED,
    REJECTED,
    SUCCESS_STATUSES,
    ImportedUser,
    Ledger,
    Outcome,
    SeenUser,
)
from cognito_migration.params import skip_unless_stage

log = logging.getLogger(__name__)

IDENTITIES_DIR = "identities"
DRY_RUN_DIR = "dry_run"
IMPORT_DIR = "import"
GATE_SUMMARY = "dry_run/summary.json"
CONVERT_SUMMARY = "convert_summary.json"

_BATCH_ID = re.compile(r"^batch-\d{4,}$")
_FLUSH_EVERY_USERS = 200
_FLUSH_EVERY_S = 2.0
_SAMPLES = 20
_ORG_WAIT_S = 30.0


class LoadError(RuntimeError):
    """A load stage cannot go on; the message says which batch and what to do."""


class ImportIncomplete(LoadError):
    """Some users of a batch were not settled. They are ``failed`` in the ledger; a task retry resumes them."""


class DryRunIncomplete(LoadError):
    """The staging dry run could not get an answer for some users (their counts are in the batch file)."""


class GateFailed(LoadError):
    """The dry run says production must not be touched; the message gives the figures and the reasons."""


def check_batch_id(batch_id: str) -> str:
    if not isinstance(batch_id, str) or not _BATCH_ID.match(batch_id):
        raise LoadError(f"batch id {batch_id!r} is not of the form batch-NNNN")
    return batch_id


def read_batch(run_path: Any, batch_id: str) -> list[dict[str, Any]]:
    """The identities lines of one batch (convert's output), checked for the fields the load needs."""
    path = run_path / IDENTITIES_DIR / f"{check_batch_id(batch_id)}.jsonl"
    if not path.exists():
        raise LoadError(f"{batch_id}: {IDENTITIES_DIR}/{batch_id}.jsonl is missing from the run folder; re-run convert")
    lines = list(storage.iter_jsonl(path))
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        sub = line.get("sub")
        if not isinstance(sub, str) or not isinstance(line.get("identity"), dict):
            raise LoadError(f"{batch_id} line {number}: a line needs 'sub' and 'identity' (convert's format)")
        if sub in seen:
            raise LoadError(f"{batch_id} line {number}: sub {sub} appears twice in the batch")
        seen.add(sub)
    return lines


def organization_name(run_path: Any, user_pool_id: str) -> str:
    """The organization the pool becomes: convert's choice (slugified pool name), else one from the pool id."""
    summary_path = run_path / CONVERT_SUMMARY
    if summary_path.exists():
        name = storage.read_json(summary_path).get("organization_name")
        if isinstance(name, str) and name:
            return name
    return organization_slug(user_pool_id)


# --- carrying users over, concurrently -----------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One user to carry over: create (or adopt) unless ``known_id`` says it is done, then grant its roles."""

    line: Mapping[str, Any]
    known_id: str | None = None


@dataclass(frozen=True)
class UserResult:
    job: Job
    outcome: CreateOutcome
    roles_granted: bool = False  # every group's tuple exists now
    roles_new: int = 0
    roles_error: str = ""


@dataclass(frozen=True)
class Target:
    """Where and how to carry users: the client, the pool, the organization and the role tuple settings."""

    client: AvnologyClient
    user_pool_id: str
    organization_id: str | None
    validate_only: bool = False
    # The users were created by another tool (the CLI backend): look each one up instead of creating it.
    verify_only: bool = False
    role_namespace: str = "roles"
    role_relation: str = "member"


def _carry_one(target: Target, job: Job) -> UserResult:
    line = job.line
    if job.known_id is not None:
        outcome = CreateOutcome("adopted", "already_imported", job.known_id)
    elif target.verify_only:
        outcome = target.client.find_own_identity(line["identity"], user_pool_id=target.user_pool_id, sub=line["sub"])
        if outcome.kind == "adopted":
            outcome = replace(outcome, kind="created", reason="")
        elif outcome.reason == "not_found":
            outcome = replace(
                outcome, reason="cli_not_imported", detail="the CLI exited 0 but no identity has this email"
            )
    else:
        identity = dict(line["identity"])
        if target.organization_id is not None:
            identity["organization_id"] = target.organization_id
        outcome = target.client.create_or_adopt(
            identity, user_pool_id=target.user_pool_id, sub=line["sub"], validate_only=target.validate_only
        )
    groups = [g for g in line.get("groups") or () if isinstance(g, str)]
    if target.validate_only or outcome.avnology_id is None:
        return UserResult(job, outcome)
    try:
        new = target.client.grant_roles(
            outcome.avnology_id, groups, namespace=target.role_namespace, relation=target.role_relation
        )
    except AvnologyAuthError:
        raise
    except (AvnologyError, ValueError) as exc:
        return UserResult(job, outcome, roles_granted=False, roles_error=str(exc))
    return UserResult(job, outcome, roles_granted=True, roles_new=new)


def carry_over(target: Target, jobs: Sequence[Job]) -> Iterator[UserResult]:
    """Run the jobs on ``client.max_concurrency`` threads, yielding results as they complete.

    An :class:`AvnologyAuthError` stops everything at once (no other user can succeed with that key).
    """
    if not jobs:
        return
    workers = max(1, min(target.client.max_concurrency, len(jobs)))
    pending_jobs = iter(jobs)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="avnology") as pool:
        running: set[Future[UserResult]] = set()
        try:
            # Keep a short queue instead of submitting the whole batch: a kill or an abort loses little.
            for job in pending_jobs:
                running.add(pool.submit(_carry_one, target, job))
                if len(running) >= workers * 2:
                    break
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
                    nxt = next(pending_jobs, None)
                    if nxt is not None:
                        running.add(pool.submit(_carry_one, target, nxt))
        finally:
            for future in running:
                future.cancel()


# --- staging dry run -----------------------------------------------------------------------------------------


# Outcome kind -> dry-run count; anything else (``failed``) is an error.
_DRY_RUN_BUCKET = {
    "created": "would_create",
    "adopted": "already_present",
    "conflict": "conflict",
    "invalid": "invalid",
}


@dataclass
class DryRunTally:
    users: int = 0
    would_create: int = 0
    already_present: int = 0
    conflict: int = 0
    invalid: int = 0
    errors: int = 0
    reasons: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    samples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, result: UserResult) -> None:
        outcome = result.outcome
        bucket = _DRY_RUN_BUCKET.get(outcome.kind, "errors")
        self.users += 1
        setattr(self, bucket, getattr(self, bucket) + 1)
        if bucket in ("conflict", "invalid", "errors"):
            self.reasons[bucket][outcome.reason or "unknown"] += 1
            if len(self.samples) < _SAMPLES:
                # Ids and codes only: the dry-run file is an aggregate and must hold no personal data.
                self.samples.append(
                    {
                        "sub": result.job.line["sub"],
                        "outcome": bucket,
                        "reason": outcome.reason,
                        "request_id": outcome.request_id,
                    }
                )

    def counts(self) -> dict[str, int]:
        return {
            k: getattr(self, k) for k in ("users", "would_create", "already_present", "conflict", "invalid", "errors")
        }


def dry_run_batch(target: Target, lines: Sequence[Mapping[str, Any]]) -> DryRunTally:
    """Ask the staging tenant about every user of a batch: validate_only, or a real staging import."""
    tally = DryRunTally()
    for result in carry_over(target, [Job(line) for line in lines]):
        tally.add(result)
    return tally


def run_dry_run(params: Any, run_id: str, batch_id: str) -> dict[str, Any]:
    """Stage entry: dry-run one batch against ``avnology_staging``; writes ``dry_run/<batch>.json``."""
    skip_unless_stage(params, "dry_run")
    started = time.monotonic()
    run_path = storage.run_dir(run_id)
    lines = read_batch(run_path, batch_id)
    validate_only = params.staging_mode == "validate_only"
    hook = AvnologyHook(config.AVNOLOGY_STAGING_CONN_ID)
    try:
        organization_id = None
        if not validate_only:
            # A real staging import is the cutover rehearsal: same organization, roles and idempotency.
            organization_id = ensure_organization(
                hook.client,
                Ledger().create_schema(),
                user_pool_id=params.user_pool_id,
                tenant=config.AVNOLOGY_STAGING_CONN_ID,
                name=organization_name(run_path, params.user_pool_id),
                pinned=hook.settings.organization_id,
            )
        target = Target(
            hook.client,
            params.user_pool_id,
            organization_id,
            validate_only=validate_only,
            role_namespace=hook.settings.role_namespace,
            role_relation=hook.settings.role_relation,
        )
        tally = dry_run_batch(target, lines)
    finally:
        hook.close()
    cli: dict[str, Any] = {}
    if params.import_backend == "cli":
        from cognito_migration.cli_backend import run_cli_dry_run

        cli = run_cli_dry_run(params, run_id, batch_id)
    elapsed = round(time.monotonic() - started, 3)
    result = {
        "batch_id": batch_id,
        "mode": params.staging_mode,
        "tenant": config.AVNOLOGY_STAGING_CONN_ID,
        **tally.counts(),
        "reasons": {bucket: dict(counter) for bucket, counter in tally.reasons.items()},
        "samples": tally.samples,
        "elapsed_s": elapsed,
        **cli,
    }
    storage.write_json(run_path / DRY_RUN_DIR / f"{batch_id}.json", result)
    log.info(
        "dry run %s (%s): %d users, %d would create, %d already present, %d conflict, %d invalid, %d errors",
        batch_id,
        params.staging_mode,
        tally.users,
        tally.would_create,
        tally.already_present,
        tally.conflict,
        tally.invalid,
        tally.errors,
    )
    if tally.errors:
        raise DryRunIncomplete(
            f"dry run {batch_id}: {tally.errors} of {tally.users} users got no usable answer from staging "
            f"({_reason_text(tally.reasons['errors'])}); see {DRY_RUN_DIR}/{batch_id}.json"
        )
    return {
        **tally.counts(),
        **cli,
        "batch_id": batch_id,
        "path": f"{DRY_RUN_DIR}/{batch_id}.json",
        "elapsed_s": elapsed,
    }


# --- gate ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str]
    totals: dict[str, int]
    reject_ratio: float
    max_reject_ratio: float
    top_reasons: dict[str, int]
    batches: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reasons": self.reasons,
            "totals": self.totals,
            "reject_ratio": self.reject_ratio,
            "max_reject_ratio": self.max_reject_ratio,
            "top_reasons": self.top_reasons,
            "batches": self.batches,
        }

    def markdown(self) -> str:
        """The summary a person approves in the Airflow UI."""
        t = self.totals
        rows = [
            "| | users |",
            "|---|---:|",
            *(
                f"| {name.replace('_', ' ')} | {t.get(name, 0):,} |"
                for name in ("users", "would_create", "already_present", "conflict", "invalid", "errors")
            ),
        ]
        reasons = [f"- `{reason}`: {n:,}" for reason, n in self.top_reasons.items()] or ["- none"]
        return "\n".join(
            [
                f"**Staging dry run** over {len(self.batches)} batches: invalid + conflict = "
                f"{self.reject_ratio:.2%} of users (threshold {self.max_reject_ratio:.2%}).",
                "",
                *rows,
                "",
                "**Reasons**",
                *reasons,
                "",
                "Approve to import these users into **production**.",
            ]
        )


def evaluate_gate(results: Mapping[str, Mapping[str, Any] | None], *, max_reject_ratio: float) -> GateDecision:
    """Pass only when every batch has a dry-run result, none had errors, and invalid + conflict ≤ the ratio."""
    totals: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    failures: list[str] = []
    missing = sorted(batch for batch, result in results.items() if not result)
    if missing:
        failures.append(
            f"no dry-run result for {len(missing)} batches ({', '.join(missing[:5])}{'…' if len(missing) > 5 else ''})"
        )
    for result in results.values():
        if not result:
            continue
        for key in ("users", "would_create", "already_present", "conflict", "invalid", "errors"):
            totals[key] += int(result.get(key, 0) or 0)
        for bucket_reasons in (result.get("reasons") or {}).values():
            reasons.update({str(k): int(v) for k, v in bucket_reasons.items()})
    cli_failed = sorted(b for b, r in results.items() if r and r.get("cli_exit_code") not in (None, 0))
    if cli_failed:
        failures.append(
            f"`avnology migrate auth0 --dry-run` exited non-zero for {', '.join(cli_failed[:5])} (see its log)"
        )
    rejected = totals["invalid"] + totals["conflict"]
    ratio = rejected / totals["users"] if totals["users"] else 0.0
    top = dict(reasons.most_common(8))
    if totals["errors"]:
        failures.append(
            f"{totals['errors']} users got an unexpected error in the staging dry run; production is not touched "
            "until every user has a definite answer"
        )
    if ratio > max_reject_ratio:
        failures.append(
            f"invalid {totals['invalid']} + conflict {totals['conflict']} = {rejected} of {totals['users']} users "
            f"({ratio:.2%}) exceeds max_reject_ratio {max_reject_ratio:.2%}"
        )
    if failures and top:
        failures.append("top reasons: " + _reason_text(top))
    return GateDecision(
        passed=not failures,
        reasons=failures,
        totals=dict(totals),
        reject_ratio=round(ratio, 6),
        max_reject_ratio=max_reject_ratio,
        top_reasons=top,
        batches=sorted(results),
    )


def run_gate(params: Any, run_id: str, batch_ids: Iterable[str]) -> GateDecision:
    """Stage entry: read every batch's dry-run file, decide, write ``dry_run/summary.json``; raise if failed."""
    run_path = storage.run_dir(run_id)
    results: dict[str, Mapping[str, Any] | None] = {}
    for batch_id in batch_ids:
        path = run_path / DRY_RUN_DIR / f"{check_batch_id(batch_id)}.json"
        results[batch_id] = storage.read_json(path) if path.exists() else None
    decision = evaluate_gate(results, max_reject_ratio=params.max_reject_ratio)
    storage.write_json(run_path / GATE_SUMMARY, decision.as_dict())
    if not decision.passed:
        raise GateFailed("gate: production import stopped: " + "; ".join(decision.reasons) + f" (see {GATE_SUMMARY})")
    log.info("gate passed: %s", decision.totals)
    return decision


# --- organization ----------------------------------------------------------------------------------------------


def ensure_organization(
    client: AvnologyClient,
    ledger: Ledger,
    *,
    user_pool_id: str,
    tenant: str,
    name: str,
    pinned: str | None = None,
    wait_s: float = _ORG_WAIT_S,
) -> str:
    """The pool's organization id in this tenant, created on first use and remembered in the ledger.

    Avnology documents no lookup by name, so a ``409`` means someone created it: usually a parallel import
    task that is about to store the id (we wait for it); otherwise the id is unknown here and the operator
    must pin it (connection extra ``organization_id``), which the error says.
    """
    if pinned:
        return ledger.remember_organization(user_pool_id, tenant, pinned, name)
    known = ledger.organization_id(user_pool_id, tenant)
    if known:
        return known
    try:
        created = client.create_organization(name, display_name=name)
    except AvnologyConflict as exc:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            known = ledger.organization_id(user_pool_id, tenant)
            if known:
                return known
            time.sleep(0.5)
        raise LoadError(
            f"organization {name!r} already exists in {tenant} (409, request {exc.request_id}) but this ledger does "
            f"not know its id, and Avnology has no lookup by name. Set the connection extra "
            f'"organization_id": "org_…" on {tenant!r} to use it.'
        ) from None
    org_id = created.get("id")
    if not isinstance(org_id, str) or not org_id:
        raise LoadError(f"creating organization {name!r} in {tenant}: the answer has no id")
    log.info("created organization %s (%s) in %s", name, org_id, tenant)
    return ledger.remember_organization(user_pool_id, tenant, org_id, name)


# --- production import -----------------------------------------------------------------------------------------


@dataclass
class ImportTally:
    users: int = 0
    done_before: int = 0
    imported: int = 0
    already_present: int = 0
    conflict: int = 0
    rejected: int = 0
    failed: int = 0
    roles_granted: int = 0
    roles_failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def counts(self) -> dict[str, int]:
        return {
            k: getattr(self, k)
            for k in (
                "users",
                "done_before",
                "imported",
                "already_present",
                "conflict",
                "rejected",
                "failed",
                "roles_granted",
                "roles_failed",
            )
        }


class _LedgerWriter:
    """Buffers per-user results and writes them in bulk (every few hundred users or seconds, and at the end)."""

    def __init__(self, ledger: Ledger, user_pool_id: str, run_id: str) -> None:
        self.ledger = ledger
        self.user_pool_id = user_pool_id
        self.run_id = run_id
        self.imports: list[ImportedUser] = []
        self.outcomes: list[Outcome] = []
        self.roles_done: list[str] = []
        self._last_flush = time.monotonic()

    def add(self, result: UserResult) -> None:
        outcome, line = result.outcome, result.job.line
        sub = line["sub"]
        if result.job.known_id is not None:
            if result.roles_granted:
                self.roles_done.append(sub)
        elif outcome.kind in ("created", "adopted") and outcome.avnology_id:
            self.imports.append(
                ImportedUser(
                    sub=sub,
                    avnology_id=outcome.avnology_id,
                    already_present=outcome.kind == "adopted",
                    cognito_last_modified=_last_modified(line),
                    roles_granted=result.roles_granted,
                    detail=result.roles_error and f"roles not granted: {result.roles_error}",
                )
            )
        else:
            status = {"conflict": CONFLICT, "invalid": REJECTED}.get(outcome.kind, FAILED)
            self.outcomes.append(Outcome(sub, status, outcome.reason or outcome.kind, outcome.detail))
        pending = len(self.imports) + len(self.outcomes) + len(self.roles_done)
        if pending >= _FLUSH_EVERY_USERS or time.monotonic() - self._last_flush >= _FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if self.imports:
            self.ledger.record_imports(self.user_pool_id, self.imports, run_id=self.run_id)
        if self.outcomes:
            self.ledger.record_outcomes(self.user_pool_id, self.outcomes)
        for sub in self.roles_done:
            self.ledger.mark_roles_granted(self.user_pool_id, sub)
        self.imports, self.outcomes, self.roles_done = [], [], []
        self._last_flush = time.monotonic()


def _last_modified(line: Mapping[str, Any]) -> datetime | None:
    cognito = (line.get("identity") or {}).get("admin_metadata", {}).get("cognito", {})
    text = cognito.get("last_modified_at") if isinstance(cognito, Mapping) else None
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _seen_user(line: Mapping[str, Any]) -> SeenUser:
    return SeenUser(
        sub=line["sub"],
        username=str(line.get("username") or line["sub"]),
        email=line.get("email"),
        cognito_status=line.get("status"),
        enabled=line.get("enabled"),
        last_modified=_last_modified(line),
        federated=bool(line.get("federated")),
        first_name=line.get("first_name"),
    )


def plan_import(
    ledger: Ledger, user_pool_id: str, lines: Sequence[Mapping[str, Any]], *, run_id: str
) -> tuple[list[Job], int]:
    """Jobs for the users not yet settled, plus role grants left over by a crash; and how many are done.

    Users convert did not record (no ledger row) are recorded as seen first, so every import has a row.
    """
    subs = [line["sub"] for line in lines]
    rows = ledger.get_many(user_pool_id, subs)
    missing = [line for line in lines if line["sub"] not in rows]
    if missing:
        log.warning("%d users of the batch had no ledger row; recording them as seen", len(missing))
        ledger.record_seen(user_pool_id, (_seen_user(line) for line in missing), run_id=run_id)
    jobs: list[Job] = []
    done = 0
    for line in lines:
        row = rows.get(line["sub"])
        if row is not None and row["status"] in SUCCESS_STATUSES and row.get("avnology_id"):
            if line.get("groups") and row.get("roles_granted_at") is None:
                jobs.append(Job(line, known_id=row["avnology_id"]))
            else:
                done += 1
        else:
            jobs.append(Job(line))
    return jobs, done


def import_batch(
    target: Target,
    ledger: Ledger,
    lines: Sequence[Mapping[str, Any]],
    *,
    run_id: str,
) -> ImportTally:
    """Create (or adopt) every unsettled user of a batch and grant their roles, recording all in the ledger."""
    jobs, done_before = plan_import(ledger, target.user_pool_id, lines, run_id=run_id)
    tally = ImportTally(users=len(lines), done_before=done_before)
    writer = _LedgerWriter(ledger, target.user_pool_id, run_id)
    try:
        for result in carry_over(target, jobs):
            writer.add(result)
            _count_import(tally, result)
    finally:
        writer.flush()
    return tally


def _count_import(tally: ImportTally, result: UserResult) -> None:
    outcome = result.outcome
    if result.job.known_id is not None:
        tally.done_before += 1
    elif outcome.kind == "created":
        tally.imported += 1
    elif outcome.kind == "adopted":
        tally.already_present += 1
    elif outcome.kind == "conflict":
        tally.conflict += 1
        tally.reasons[outcome.reason] += 1
    elif outcome.kind == "invalid":
        tally.rejected += 1
        tally.reasons[outcome.reason] += 1
    else:
        tally.failed += 1
        tally.reasons[outcome.reason or "failed"] += 1
    tally.roles_granted += result.roles_new
    if result.roles_error:
        tally.roles_failed += 1
        tally.reasons["roles_not_granted"] += 1


def run_import_batch(params: Any, run_id: str, batch_id: str) -> dict[str, Any]:
    """Stage entry: import one batch into ``avnology_production``; writes ``import/<batch>.json``."""
    skip_unless_stage(params, "import")
    if params.import_backend == "cli":
        from cognito_migration.cli_backend import run_cli_import_batch

        return run_cli_import_batch(params, run_id, batch_id)
    started = time.monotonic()
    run_path = storage.run_dir(run_id)
    lines = read_batch(run_path, batch_id)
    ledger = Ledger().create_schema()
    hook = AvnologyHook(config.AVNOLOGY_PRODUCTION_CONN_ID)
    try:
        target = production_target(hook, ledger, params.user_pool_id, organization_name(run_path, params.user_pool_id))
        tally = import_batch(target, ledger, lines, run_id=run_id)
    finally:
        hook.close()
    return finish_import(run_path, batch_id, tally, started, backend="api", organization_id=target.organization_id)


def production_target(hook: AvnologyHook, ledger: Ledger, user_pool_id: str, org_name: str) -> Target:
    organization_id = ensure_organization(
        hook.client,
        ledger,
        user_pool_id=user_pool_id,
        tenant=config.AVNOLOGY_PRODUCTION_CONN_ID,
        name=org_name,
        pinned=hook.settings.organization_id,
    )
    return Target(
        hook.client,
        user_pool_id,
        organization_id,
        role_namespace=hook.settings.role_namespace,
        role_relation=hook.settings.role_relation,
    )


def finish_import(
    run_path: Any, batch_id: str, tally: ImportTally, started: float, *, backend: str, **extra: Any
) -> dict[str, Any]:
    elapsed = round(time.monotonic() - started, 3)
    result = {
        "batch_id": batch_id,
        "backend": backend,
        **tally.counts(),
        "reasons": dict(tally.reasons),
        "elapsed_s": elapsed,
        **extra,
    }
    storage.write_json(run_path / IMPORT_DIR / f"{batch_id}.json", result)
    log.info(
        "import %s: %d users, %d done before, %d imported, %d already present, %d conflict, %d rejected, "
        "%d failed, %d role tuples granted",
        batch_id,
        tally.users,
        tally.done_before,
        tally.imported,
        tally.already_present,
        tally.conflict,
        tally.rejected,
        tally.failed,
        tally.roles_granted,
    )
    if tally.failed or tally.roles_failed:
        raise ImportIncomplete(
            f"import {batch_id}: {tally.failed} users not imported and {tally.roles_failed} without their roles "
            f"({_reason_text(tally.reasons)}). They are recorded in the ledger; a retry of this task resumes "
            f"exactly them (see {IMPORT_DIR}/{batch_id}.json)"
        )
    return {
        **tally.counts(),
        **extra,
        "batch_id": batch_id,
        "path": f"{IMPORT_DIR}/{batch_id}.json",
        "elapsed_s": elapsed,
    }


def _reason_text(reasons: Mapping[str, int]) -> str:
    ordered = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{reason} {n}" for reason, n in ordered) or "no reason given"
