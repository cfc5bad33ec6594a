"""The reconciliation's task bodies: plan the day, diff, bring existing identities in line, report, decommission.

The carry-over of new and retried users is not here: the DAG runs the migration's own stages on them (convert,
staging dry run, gate, import, emails) as tasks of this run, so each keeps its retry and pool semantics. What
lives here is what the migration has no stage for:

- :func:`plan_run` — which pool, which window, sweep or skip (and why), final or not;
- :func:`run_diff` — the fresh extract against the ledger (:func:`cognito_migration.reconcile.diff_pool`);
- :func:`carry_over_subs` — the users the carry-over converts;
- :func:`run_sync_existing` — PATCH modified identities, apply the disabled policy, record deletions;
- :func:`write_daily_report` and :func:`run_decommission` — the reports, and the purge after the window.

Run storage: the run's own folder (``storage.run_dir(run_id)``) holds the extract, the batches and
``reconcile/diff.json``/``sync.json``; the pool's folder (``storage.run_dir(pool, kind="reconciliation")``)
holds one report per sweep day, which is also how a second run the same day knows to do nothing.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from airflow.sdk.exceptions import AirflowSkipException

from cognito_migration import config, storage
from cognito_migration.assets import CutoverEvent, parse_cutover_extra
from cognito_migration.ledger import ImportedUser, Ledger, SeenUser, utcnow
from cognito_migration.params import MigrationParams
from cognito_migration.reconcile import (
    Category,
    Decision,
    Diff,
    FreshUser,
    Window,
    decide,
    diff_pool,
    fresh_user,
    patch_body,
    update_mask,
)
from cognito_migration.reconcile_params import ReconcileParams, for_pool
from cognito_migration.reconcile_report import (
    carry_over_outcomes,
    daily_report,
    decommission_checklist,
    render_daily_html,
    render_final_html,
)

log = logging.getLogger(__name__)

DIFF_FILE = "reconcile/diff.json"
SYNC_FILE = "reconcile/sync.json"
POOL_KIND = "reconciliation"
_SYNC_WORKERS = 8


class ReconciliationIncomplete(RuntimeError):
    """The day's sweep left work a re-run can finish; the report says what, and the next run retries it."""


# --- plan ------------------------------------------------------------------------------------------------------


def pool_folder(user_pool_id: str) -> Any:
    """The pool's reconciliation folder: one daily report per sweep date, and the final report."""
    return storage.run_dir(user_pool_id, kind=POOL_KIND)


def _day_file(user_pool_id: str, sweep_date: str) -> Any:
    return pool_folder(user_pool_id) / f"day-{sweep_date}.json"


def _swept_today_by(user_pool_id: str, sweep_date: str) -> str | None:
    path = _day_file(user_pool_id, sweep_date)
    if not path.exists():
        return None
    report = storage.read_json(path)
    return str(report.get("run_id")) if report.get("complete") else None


def _event_for(
    params: ReconcileParams, triggering: Sequence[Mapping[str, Any]], latest: Mapping[str, Any] | None
) -> CutoverEvent | None:
    """The cutover event that names this run's pool: the one that triggered it, else the latest ever emitted."""
    events = [e for e in (parse_cutover_extra(x) for x in triggering) if e is not None]
    if not events and latest is not None:
        event = parse_cutover_extra(latest)
        events = [event] if event is not None else []
    if params.user_pool_id:
        events = [e for e in events if e.user_pool_id == params.user_pool_id]
    return events[-1] if events else None


def resolve_plan(
    params: ReconcileParams,
    *,
    triggering: Sequence[Mapping[str, Any]] = (),
    latest: Mapping[str, Any] | None = None,
    ledger: Ledger | None = None,
    now: datetime | None = None,
) -> tuple[Decision, dict[str, Any]]:
    """Decide this run from the form, the cutover events and the ledger (the window's source of truth)."""
    now = now or utcnow()
    event: CutoverEvent | None = _event_for(params, triggering, latest)
    pool = params.user_pool_id or (event.user_pool_id if event else "")
    region = params.region if params.user_pool_id or not (event and event.region) else event.region
    if not pool:
        return Decision(
            False,
            False,
            "no pool to reconcile: no cognito_migration run has emitted a cutover event yet, and the form names "
            "no user_pool_id",
        ), {}
    ledger = ledger or Ledger().create_schema()
    recorded = ledger.first_cutover(pool)
    window = None
    if recorded is not None:
        days = params.window_days or int(recorded["window_days"])
        window = Window(pool, recorded["cutover_at"], days)
    decision = decide(
        window,
        now,
        swept_today_by=_swept_today_by(pool, now.date().isoformat()) if window else None,
        force_final=params.final_report,
        user_pool_id=pool,
    )
    if window is None and event is not None and event.cutover_at is not None:
        decision = Decision(
            False,
            False,
            f"{decision.reason}. A cutover event of run {event.run_id} names this pool, but the ledger "
            f"({ledger!r}) has no cutover for it: is this deployment pointed at the migration's ledger?",
        )
    plan: dict[str, Any] = {"user_pool_id": pool, "region": region, "reason": decision.reason}
    if window is not None:
        plan.update(
            cutover_at=window.cutover_at.isoformat(),
            closes_at=window.closes_at.isoformat(),
            window_days=window.days,
            day=decision.day,
            final=decision.final,
            sweep_date=decision.sweep_date.isoformat() if decision.sweep_date else None,
            stop_after=params.stop_after,
        )
    return decision, plan


def plan_run(
    params: ReconcileParams,
    run_id: str,
    *,
    triggering: Sequence[Mapping[str, Any]] = (),
    latest: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``plan`` task: the plan for XCom, or a skip that says why (every downstream task skips with it)."""
    decision, plan = resolve_plan(params, triggering=triggering, latest=latest)
    log.info("reconciliation %s: %s", plan.get("user_pool_id") or "(no pool)", decision.reason)
    if not decision.sweep:
        raise AirflowSkipException(decision.reason)
    return plan


def pool_params(params: ReconcileParams, plan: Mapping[str, Any]) -> MigrationParams:
    """The migration's params for this run's pool, as the reused stages take them."""
    return for_pool(
        params, user_pool_id=plan["user_pool_id"], region=plan["region"], window_days=int(plan["window_days"])
    )


def asset_extras(context: Mapping[str, Any], asset: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The extras of the events that triggered this run, and of the latest event of ``asset`` ever (for cron runs).

    Read defensively: a run on a fresh deployment has no events, and that is a normal "before any migration".
    """
    triggering = [dict(e.extra or {}) for e in (context.get("triggering_asset_events") or {}).get(asset, [])]
    latest: dict[str, Any] | None = None
    try:
        events = context["inlet_events"][asset]
        if len(events):
            latest = dict(events[-1].extra or {})
    except (KeyError, IndexError, LookupError):
        latest = None
    return triggering, latest


# --- diff ------------------------------------------------------------------------------------------------------


def iter_fresh(run_path: Any) -> Iterable[FreshUser]:
    from cognito_migration.extract import iter_extracted_users

    return (fresh_user(raw) for raw in iter_extracted_users(run_path))


def run_diff(params: MigrationParams, run_id: str) -> dict[str, Any]:
    """The ``diff`` task: classify every user; write the subs per category to ``reconcile/diff.json``."""
    run_path = storage.run_dir(run_id)
    ledger = Ledger().create_schema()
    pool = params.user_pool_id
    diff = diff_pool(
        iter_fresh(run_path),
        lambda subs: ledger.get_many(pool, subs),
        lambda: ledger.users(pool),
    )
    storage.write_json(run_path / DIFF_FILE, diff.as_json())
    counts = diff.counts()
    log.info("diff of %s: %s", pool, counts)
    return {**counts, "carry_over": len(diff.carry_over), "path": DIFF_FILE}


def read_diff(run_id: str) -> Diff:
    path = storage.run_dir(run_id) / DIFF_FILE
    if not path.exists():
        raise FileNotFoundError(f"{DIFF_FILE} is missing from run {run_id}: the diff task has not run")
    return Diff.from_json(storage.read_json(path))


def carry_over_subs(run_id: str) -> list[str]:
    """The new and retried users: the only ones the carry-over converts, dry-runs, imports and emails."""
    return read_diff(run_id).carry_over


class _Selected:
    """The extracted users whose sub is in ``subs``, re-readable: the convert stage reads its input twice, and a
    re-scan of the run's pages keeps memory flat however many users a day carries over."""

    def __init__(self, run_path: Any, subs: set[str]) -> None:
        self.run_path = run_path
        self.subs = subs

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from cognito_migration.extract import iter_extracted_users

        return (raw for raw in iter_extracted_users(self.run_path) if fresh_user(raw).sub in self.subs)


def run_carry_over_convert(params: MigrationParams, run_id: str) -> list[str]:
    """The ``convert`` task: the migration's convert stage on today's new and retried users only.

    Returns the batch ids for the mapped dry run, import and emails; skips (and they with it) when nobody is due.
    """
    from cognito_migration.convert import ConvertPolicy
    from cognito_migration.convert_stage import convert_users

    if not params.runs("convert"):
        raise AirflowSkipException(f"stop_after={params.stop_after}: the carry-over is not converted")
    subs = set(carry_over_subs(run_id))
    if not subs:
        raise AirflowSkipException("nobody to carry over today: no new or retryable users")
    run_path = storage.run_dir(run_id)
    result = convert_users(
        run_path,
        user_pool_id=params.user_pool_id,
        users=_Selected(run_path, subs),
        policy=ConvertPolicy.from_params(params),
        ledger=Ledger().create_schema(),
        run_id=run_id,
    )
    log.info(
        "carry-over of %s: %d users, %d converted into %s",
        params.user_pool_id,
        len(subs),
        result["converted"],
        result["batches"],
    )
    return list(result["batches"])


def run_carry_over_gate(params: MigrationParams, run_id: str, batch_ids: Sequence[str]) -> dict[str, Any]:
    """The ``gate`` task: the migration's dry-run thresholds, without waiting for a person (a daily job)."""
    from airflow.sdk.exceptions import AirflowFailException

    from cognito_migration.load import GateFailed, run_gate

    if not params.runs("dry_run"):
        raise AirflowSkipException(f"stop_after={params.stop_after}: no dry run, no gate")
    try:
        return run_gate(params, run_id, batch_ids).as_dict()
    except GateFailed as exc:
        raise AirflowFailException(str(exc)) from None


def task_states(context: Mapping[str, Any]) -> dict[str, str]:
    """The state of every other task of this run (mapped copies as ``task_<i>``), for the day's report."""
    ti = context["ti"]
    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[context["run_id"]])
    return {
        str(k): str(v)
        for k, v in (states.get(context["run_id"]) or {}).items()
        if v is not None and str(k) != ti.task_id
    }


# --- existing identities: modified, disabled, deleted ----------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    """What was done about one existing identity (ids, field names and reason codes only)."""

    sub: str
    avnology_id: str | None
    category: str
    outcome: str
    mask: tuple[str, ...] = ()
    detail: str = ""


def sync_modified(
    client: Any,
    raw: Mapping[str, Any],
    row: Mapping[str, Any],
    convert: Callable[[Mapping[str, Any]], Any],
    write: bool,
) -> tuple[SyncResult, dict[str, Any] | None]:
    """PATCH one modified user's identity with exactly the fields that differ from Avnology's current identity.

    Returns the result and, when Avnology now matches the Cognito user, the converted identity line (for the
    ledger). The PATCH carries the ETag read just before it: a concurrent change makes it fail, and the identity
    is read again and the mask recomputed, once.
    """
    from cognito_migration.avnology import AvnologyConflict, AvnologyError, AvnologyNotFound
    from cognito_migration.models import Converted

    sub, avnology_id = row["sub"], row["avnology_id"]
    converted = convert(raw)
    if not isinstance(converted, Converted):
        return SyncResult(sub, avnology_id, "modified", "not_converted", detail=str(converted.reason)), None
    line = json.loads(converted.line_json)
    identity = line["identity"]
    for attempt in (1, 2):
        try:
            current = client.get_identity(avnology_id)
        except AvnologyNotFound:
            return SyncResult(sub, avnology_id, "modified", "identity_missing"), None
        except AvnologyError as exc:
            return SyncResult(sub, avnology_id, "modified", "failed", detail=f"read: {exc.status or 'no answer'}"), None
        mask = update_mask(identity, current)
        if not mask:
            return SyncResult(sub, avnology_id, "modified", "in_sync"), line
        if not write:
            return SyncResult(sub, avnology_id, "modified", "would_patch", tuple(mask)), None
        try:
            client.patch_identity(avnology_id, patch_body(identity, current, mask), mask, etag=current.get("etag"))
        except AvnologyConflict as exc:
            if exc.reason == "etag_mismatch" and attempt == 1:
                continue  # changed between our read and our write: read again, recompute the mask
            return SyncResult(sub, avnology_id, "modified", "conflict", tuple(mask), exc.field or "conflict"), None
        except AvnologyError as exc:
            outcome = "failed" if exc.retryable or exc.status is None else "rejected"
            return SyncResult(sub, avnology_id, "modified", outcome, tuple(mask), exc.field or str(exc.status)), None
        return SyncResult(sub, avnology_id, "modified", "patched", tuple(mask)), line
    raise AssertionError("unreachable: the second attempt always returns")


def sync_disabled(client: Any, row: Mapping[str, Any], policy: str, write: bool) -> SyncResult:
    """Apply the disabled-in-Cognito policy to one identity (see ``reconcile.DISABLED_POLICY_DOC``)."""
    from cognito_migration.avnology import AvnologyError, AvnologyNotFound

    sub, avnology_id = row["sub"], row["avnology_id"]
    if policy == "report":
        return SyncResult(sub, avnology_id, "disabled", "reported")
    if not write:
        return SyncResult(sub, avnology_id, "disabled", "would_soft_delete")
    try:
        client.delete_identity(avnology_id)
    except AvnologyNotFound:
        return SyncResult(sub, avnology_id, "disabled", "already_gone")
    except AvnologyError as exc:
        return SyncResult(sub, avnology_id, "disabled", "failed", detail=str(exc.status or "no answer"))
    return SyncResult(sub, avnology_id, "disabled", "soft_deleted")


def _seen(row: Mapping[str, Any], fresh: FreshUser, line: Mapping[str, Any] | None) -> SeenUser:
    """The ledger's Cognito facts after a sync: the converted line's when there is one, else the row's own."""
    source = line or row
    return SeenUser(
        sub=row["sub"],
        username=str(source.get("username") or row["username"]),
        email=source.get("email"),
        cognito_status=fresh.status,
        enabled=fresh.enabled,
        last_modified=fresh.last_modified,
        federated=bool(source.get("federated")),
        first_name=source.get("first_name"),
    )


def _record_synced(ledger: Ledger, pool: str, run_id: str, settled: Sequence[tuple[Mapping, FreshUser, Any]]) -> None:
    """Avnology now reflects these users' current Cognito version: the next sweep compares against it."""
    if not settled:
        return
    ledger.record_seen(pool, (_seen(row, fresh, line) for row, fresh, line in settled), run_id=run_id)
    ledger.record_imports(
        pool,
        (
            ImportedUser(
                sub=row["sub"],
                avnology_id=row["avnology_id"],
                already_present=row["status"] == "already_present",
                cognito_last_modified=fresh.last_modified,
                detail=row.get("detail") or "",
            )
            for row, fresh, _ in settled
        ),
        run_id=run_id,
    )


def run_sync_existing(params: ReconcileParams, mparams: MigrationParams, run_id: str) -> dict[str, Any]:
    """The ``sync_existing`` task: modified → PATCH, disabled → policy, deleted → recorded and reported.

    Before the import stage (``stop_after`` earlier) it only reads: it reports the masks it would send and
    writes nothing, to Avnology or to the ledger. Users whose change failed keep their ledger state, so
    tomorrow's diff finds them again.
    """
    from cognito_migration.avnology import AvnologyHook
    from cognito_migration.convert import ConvertPolicy, PoolContext, convert_user
    from cognito_migration.extract import iter_extracted_users, read_memberships

    run_path = storage.run_dir(run_id)
    diff = read_diff(run_id)
    pool = mparams.user_pool_id
    ledger = Ledger().create_schema()
    write = mparams.runs("import")
    if write:
        ledger.mark_deleted_in_cognito(pool, diff[Category.DELETED])

    modified, disabled = diff[Category.MODIFIED], diff[Category.DISABLED]
    results: list[SyncResult] = []
    settled: list[tuple[Mapping, FreshUser, Any]] = []
    if modified or disabled:
        wanted = set(modified) | set(disabled)
        raws = {}
        for raw in iter_extracted_users(run_path):
            user = fresh_user(raw)
            if user.sub in wanted:
                raws[user.sub] = (raw, user)
        rows = ledger.get_many(pool, wanted)
        snapshot = storage.read_json(run_path / "snapshot.json")
        context = PoolContext.from_describe_user_pool(snapshot["UserPool"])
        policy = ConvertPolicy.from_params(mparams)
        memberships = read_memberships(run_path)

        def convert(raw: Mapping[str, Any]) -> Any:
            return convert_user(raw, memberships, context, policy)

        hook = AvnologyHook(config.AVNOLOGY_PRODUCTION_CONN_ID)
        try:
            client = hook.client
            with ThreadPoolExecutor(max_workers=_SYNC_WORKERS) as workers:
                for (result, line), sub in zip(
                    workers.map(lambda s: sync_modified(client, raws[s][0], rows[s], convert, write), modified),
                    modified,
                    strict=True,
                ):
                    results.append(result)
                    if result.outcome in ("patched", "in_sync"):
                        settled.append((rows[sub], raws[sub][1], line))
                for result in workers.map(
                    lambda s: sync_disabled(client, rows[s], params.disabled_since_import, write), disabled
                ):
                    results.append(result)
                    if result.outcome in ("soft_deleted", "already_gone", "reported"):
                        settled.append((rows[result.sub], raws[result.sub][1], None))
        finally:
            hook.close()
        if write:
            _record_synced(ledger, pool, run_id, settled)

    outcomes = Counter(r.outcome for r in results)
    fields = Counter(name for r in results if r.outcome == "patched" for name in r.mask)
    summary = {
        "disabled_policy": params.disabled_since_import,
        "write": write,
        "outcomes": dict(sorted(outcomes.items())),
        "fields": dict(sorted(fields.items())),
        "deleted_recorded": len(diff[Category.DELETED]) if write else 0,
        "users": [asdict(r) | {"mask": list(r.mask)} for r in sorted(results, key=lambda r: r.sub)],
    }
    emails: dict[str, Any] = {}
    reachable = [r.sub for r in results if r.category == "modified" and r.outcome in ("patched", "in_sync")]
    if reachable and mparams.runs("emails"):
        # A user re-enabled in Cognito (or imported blocked and enabled since) is now due the reset email.
        from cognito_migration.notify import send_emails_for_subs

        emails = send_emails_for_subs(mparams, run_id, reachable, label="reconcile-modified")
    summary["emails"] = emails
    storage.write_json(run_path / SYNC_FILE, summary)
    log.info(
        "existing identities of %s: %s; fields patched %s; %d deletions recorded",
        pool,
        summary["outcomes"],
        summary["fields"],
        summary["deleted_recorded"],
    )
    return {k: summary[k] for k in ("outcomes", "fields", "deleted_recorded", "write")} | {"path": SYNC_FILE}


# --- reports ---------------------------------------------------------------------------------------------------


def _previous_days(pool: str) -> list[dict[str, Any]]:
    folder = pool_folder(pool)
    return [storage.read_json(p) for p in sorted(folder.iterdir(), key=lambda p: p.name) if _is_day_file(p.name)]


def _is_day_file(name: str) -> bool:
    return name.startswith("day-") and name.endswith(".json")


def _write_pair(folder: Any, stem: str, report: Mapping[str, Any], html_text: str) -> None:
    storage.write_json(folder / f"{stem}.json", report)
    with (folder / f"{stem}.html").open("w") as fh:
        fh.write(html_text)


def write_daily_report(
    mparams: MigrationParams | None,
    run_id: str,
    plan: Mapping[str, Any] | None,
    *,
    email_outputs: Iterable[Mapping[str, Any] | None] = (),
    stages: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``report`` task: the day's report in the run folder and in the pool's folder; raise if incomplete.

    A complete day marks the date as swept (a second run that day does nothing); an incomplete one is written
    too, and the next run re-sweeps. A run that stops before the import writes its report in its own folder only.
    """
    from cognito_migration.notify import summarize

    if not plan or mparams is None:
        raise AirflowSkipException("no sweep in this run (see the plan task), so no daily report")
    pool = mparams.user_pool_id
    run_path = storage.run_dir(run_id)
    if not (run_path / DIFF_FILE).exists():
        failed = sorted(k for k, v in (stages or {}).items() if v in ("failed", "upstream_failed"))
        raise ReconciliationIncomplete(
            f"day {plan['day']} of {pool}: the sweep stopped before the diff (failed: {', '.join(failed) or '?'}); "
            "nothing was changed, the next run sweeps again"
        )
    diff = read_diff(run_id)
    ledger = Ledger().create_schema()
    carry = diff.carry_over
    rows = ledger.get_many(pool, carry)
    carried_today = [
        {"sub": sub, "avnology_id": rows[sub]["avnology_id"]}
        for sub in carry
        if sub in rows
        and rows[sub]["status"] in ("imported", "already_present")
        and rows[sub]["imported_run_id"] == run_id
    ]
    sync_path = run_path / SYNC_FILE
    sync: dict[str, Any] = storage.read_json(sync_path) if sync_path.exists() else {"outcomes": {}, "skipped": True}
    report = daily_report(
        plan=plan,
        run_id=run_id,
        generated_at=utcnow().isoformat(timespec="seconds"),
        diff=diff.as_json(),
        carry_over=carry_over_outcomes({sub: (rows.get(sub) or {}).get("status") for sub in carry}),
        carried_over_today=carried_today,
        sync=sync,
        emails=summarize([*email_outputs, sync.get("emails")]),
        ledger_counts=ledger.counts(pool),
        previous_days=_previous_days(pool),
        stages=stages or {},
    )
    _write_pair(run_path, "report", report, render_daily_html(report))
    if mparams.runs("import"):  # a look-only run (stop_after before the import) is not the day's sweep
        _write_pair(pool_folder(pool), f"day-{plan['sweep_date']}", report, render_daily_html(report))
    log.info(
        "reconciliation day %s of %s: %s; carried over %d; report %s",
        plan["day"],
        pool,
        "complete" if report["complete"] else "INCOMPLETE: " + "; ".join(report["incomplete_reasons"]),
        len(carried_today),
        run_path / "report.html",
    )
    if not report["complete"]:
        raise ReconciliationIncomplete(
            f"day {plan['day']} of {pool} is incomplete: {'; '.join(report['incomplete_reasons'])} "
            f"(see {run_path / 'report.html'}); the next run re-sweeps"
        )
    return {
        "report_json": str(run_path / "report.json"),
        "report_html": str(run_path / "report.html"),
        "carried_over": len(carried_today),
        **{k: report["counts"][k] for k in ("new", "retry", "modified", "disabled", "deleted")},
    }


def purge_runs(user_pool_id: str, *, older_than_days: int, now: datetime | None = None) -> dict[str, Any]:
    """Remove the per-user files of every run of this pool older than the retention; keep the reports.

    A run's pool and age come from its ``snapshot.json`` (preflight writes it in every run of both DAGs), which
    works the same on a local folder and on S3. A run without a snapshot holds no extract and is left alone.
    """
    now = now or utcnow()
    cutoff = now.timestamp() - older_than_days * 86400
    purged: list[dict[str, Any]] = []
    kept: list[str] = []
    root = storage.storage_root() / "runs"
    if not root.exists():
        return {"retention_days": older_than_days, "purged": purged, "kept": kept}
    for run_path in sorted(root.iterdir(), key=lambda p: p.name):
        snapshot_path = run_path / "snapshot.json"
        if not run_path.is_dir() or not snapshot_path.exists():
            continue
        snapshot = storage.read_json(snapshot_path)
        if snapshot.get("UserPool", {}).get("Id") != user_pool_id:
            continue
        taken = datetime.fromisoformat(str(snapshot.get("taken_at")).replace("Z", "+00:00"))
        if taken.timestamp() > cutoff:
            kept.append(run_path.name)
            continue
        removed = storage.purge_personal_data(run_path)
        purged.append({"run": run_path.name, "removed": removed})
    log.info(
        "purge for %s: %d runs purged, %d kept (retention %d days)",
        user_pool_id,
        len(purged),
        len(kept),
        older_than_days,
    )
    return {"retention_days": older_than_days, "purged": purged, "kept": kept}


def run_decommission(
    params: ReconcileParams, mparams: MigrationParams, run_id: str, plan: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``decommission`` task (final run only): the checklist, then the purge of per-user run files."""
    if not plan.get("final"):
        raise AirflowSkipException(f"day {plan.get('day')} is not the window's last: no final report yet")
    pool = mparams.user_pool_id
    ledger = Ledger().create_schema()
    extracted = [u.sub for u in iter_fresh(storage.run_dir(run_id))]
    known = ledger.get_many(pool, extracted)
    sends = {row["sub"]: row["status"] for row in ledger.email_sends(pool, mparams.campaign)}
    checklist = decommission_checklist(
        ledger.users(pool),
        sends,
        in_cognito_not_in_ledger=[sub for sub in extracted if sub not in known],
        campaign=mparams.campaign,
    )
    report: dict[str, Any] = {
        "kind": "final",
        "user_pool_id": pool,
        "run_id": run_id,
        "generated_at": utcnow().isoformat(timespec="seconds"),
        "window": {k: plan[k] for k in ("cutover_at", "closes_at", "window_days")},
        "checklist": checklist,
        "progress": daily_progress(pool),
    }
    folder = pool_folder(pool)
    _write_pair(folder, "final", report, render_final_html(report))
    report["purge"] = purge_runs(pool, older_than_days=params.retention_days)
    _write_pair(folder, "final", report, render_final_html(report))
    _write_pair(storage.run_dir(run_id), "final_report", report, render_final_html(report))
    log.info(
        "final report for %s: %s; %d unaccounted, %d open conflicts; %d runs purged",
        pool,
        "SAFE to decommission" if checklist["safe_to_decommission"] else "NOT safe to decommission",
        len(checklist["unaccounted"]),
        len(checklist["open_conflicts"]),
        len(report["purge"]["purged"]),
    )
    return {
        "final_json": str(folder / "final.json"),
        "safe_to_decommission": checklist["safe_to_decommission"],
        "unaccounted": len(checklist["unaccounted"]),
        "open_conflicts": len(checklist["open_conflicts"]),
        "never_emailed": len(checklist["never_emailed"]["users"]),
        "purged_runs": len(report["purge"]["purged"]),
    }


def daily_progress(pool: str) -> dict[str, Any]:
    from cognito_migration.reconcile_report import cumulative_progress

    return cumulative_progress(_previous_days(pool))
