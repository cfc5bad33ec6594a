"""The reconciliation's reports: the daily sweep and, on the last day, the "safe to decommission" checklist.

Pure code: :mod:`cognito_migration.reconcile_stage` gathers the figures, these functions shape them into JSON and
one self-contained HTML page each. The reports name users by id only (Cognito ``sub``, Avnology ``usr_`` id),
never by email or name, so they can outlive the purge of the per-user run files.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cognito_migration.notify import ineligibility

SUCCESS = ("imported", "already_present")
UNSETTLED = ("pending", "failed")
PROGRESS_KEYS = ("new", "retry", "modified", "disabled", "deleted", "carried_over", "patched")


def cumulative_progress(days: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per sweep day and in total over the window, from the daily reports written so far (one per date)."""
    rows: dict[str, dict[str, Any]] = {}
    for report in days:
        counts = report.get("counts", {})
        rows[str(report["sweep_date"])] = {
            "sweep_date": str(report["sweep_date"]),
            "day": report.get("day"),
            "run_id": report.get("run_id"),
            "complete": bool(report.get("complete")),
            **{k: int(counts.get(k, 0)) for k in ("new", "retry", "modified", "disabled", "deleted")},
            "carried_over": len(report.get("carried_over_today", [])),
            "patched": int(report.get("sync", {}).get("outcomes", {}).get("patched", 0)),
        }
    ordered = [rows[d] for d in sorted(rows)]
    totals = {k: sum(r[k] for r in ordered) for k in PROGRESS_KEYS}
    return {"days": ordered, "totals": totals, "sweeps": len(ordered)}


def carry_over_outcomes(statuses: Mapping[str, str | None]) -> dict[str, int]:
    """Where each user sent to the carry-over ended up, by ledger status (``missing``: no ledger row at all)."""
    counts = Counter(status or "missing" for status in statuses.values())
    return dict(sorted(counts.items()))


def incomplete_reasons(carry_over: Mapping[str, int], sync_outcomes: Mapping[str, int]) -> list[str]:
    """What a re-run today could still fix; an empty list makes the day complete (the next run that day skips)."""
    reasons = []
    unsettled = sum(carry_over.get(s, 0) for s in (*UNSETTLED, "missing"))
    if unsettled:
        reasons.append(f"{unsettled} carried-over users are not settled (pending, failed or never recorded)")
    if sync_outcomes.get("failed"):
        reasons.append(f"{sync_outcomes['failed']} changes to existing identities failed and will be retried")
    return reasons


def daily_report(
    *,
    plan: Mapping[str, Any],
    run_id: str,
    generated_at: str,
    diff: Mapping[str, Any],
    carry_over: Mapping[str, int],
    carried_over_today: Sequence[Mapping[str, str]],
    sync: Mapping[str, Any],
    emails: Mapping[str, Any],
    ledger_counts: Mapping[str, int],
    previous_days: Iterable[Mapping[str, Any]],
    stages: Mapping[str, str],
) -> dict[str, Any]:
    """The day's account: what the diff found, what was done about it, and the progress over the window."""
    sync_outcomes = dict(sync.get("outcomes", {}))
    reasons = incomplete_reasons(carry_over, sync_outcomes)
    failed_stages = sorted(name for name, state in stages.items() if state in ("failed", "upstream_failed"))
    if failed_stages:
        reasons.append("tasks did not finish: " + ", ".join(failed_stages))
    report = {
        "kind": "daily",
        "user_pool_id": plan["user_pool_id"],
        "run_id": run_id,
        "generated_at": generated_at,
        "sweep_date": plan["sweep_date"],
        "day": plan["day"],
        "window": {k: plan[k] for k in ("cutover_at", "closes_at", "window_days")},
        "final": bool(plan["final"]),
        "stop_after": plan.get("stop_after", "emails"),
        "complete": not reasons,
        "incomplete_reasons": reasons,
        "counts": dict(diff["counts"]),
        "carry_over": dict(carry_over),
        "carried_over_today": [dict(u) for u in carried_over_today],
        "sync": dict(sync),
        "deleted_in_cognito": list(diff["subs"].get("deleted", [])),
        "emails": dict(emails),
        "ledger": dict(sorted(ledger_counts.items())),
        "stages": dict(sorted(stages.items())),
    }
    others = [d for d in previous_days if str(d.get("sweep_date")) != str(plan["sweep_date"])]
    report["progress"] = cumulative_progress([*others, report])
    return report


def decommission_checklist(
    rows: Iterable[Mapping[str, Any]],
    email_status: Mapping[str, str],
    *,
    in_cognito_not_in_ledger: Sequence[str],
    campaign: str,
) -> dict[str, Any]:
    """The "safe to decommission" checklist over every ledger row of the pool.

    - **Unaccounted** (must be 0): users Cognito still has that the ledger does not, and users still ``pending``
      or ``failed`` that Cognito still has (one deleted from Cognito no longer needs carrying over).
    - **Open conflicts**: users whose email belongs to another Avnology identity, with the reason code.
    - **Never emailed**: every user with no sent email in the campaign, with the reason (from the campaign's own
      eligibility rules, or the user's status and reason when they were never imported).
    """
    unaccounted = [{"sub": sub, "reason": "in_cognito_not_in_ledger"} for sub in sorted(in_cognito_not_in_ledger)]
    conflicts: list[dict[str, Any]] = []
    never_emailed: list[dict[str, Any]] = []
    statuses: Counter[str] = Counter()
    deleted = 0
    for row in rows:
        sub, status = row["sub"], row["status"]
        statuses[status] += 1
        deleted += bool(row.get("deleted_in_cognito_at"))
        if status in UNSETTLED and not row.get("deleted_in_cognito_at"):
            unaccounted.append({"sub": sub, "reason": f"{status}:{row.get('reason') or 'no_reason'}"})
        if status == "conflict":
            conflicts.append({"sub": sub, "reason": row.get("reason") or "conflict"})
        send = email_status.get(sub)
        if send == "sent":
            continue
        if status in SUCCESS:
            why = ineligibility(row, send) or "eligible_not_sent"
            never_emailed.append({"sub": sub, "avnology_id": row.get("avnology_id"), "reason": why})
        else:
            never_emailed.append({"sub": sub, "reason": f"{status}:{row.get('reason') or 'no_reason'}"})
    reasons = Counter(u["reason"] for u in never_emailed)
    checks = [
        {
            "check": "every user in Cognito is accounted for (imported, or skipped/rejected/conflict with a reason)",
            "passed": not unaccounted,
            "blocking": True,
            "count": len(unaccounted),
        },
        {
            "check": "no open conflicts (another identity holds the user's email)",
            "passed": not conflicts,
            "blocking": False,
            "count": len(conflicts),
        },
        {
            "check": f"every imported, enabled user got the '{campaign}' email",
            "passed": not any(u["reason"] == "eligible_not_sent" for u in never_emailed),
            "blocking": False,
            "count": reasons.get("eligible_not_sent", 0),
        },
    ]
    return {
        "safe_to_decommission": all(c["passed"] for c in checks if c["blocking"]),
        "checks": checks,
        "ledger": dict(sorted(statuses.items())),
        "deleted_in_cognito": deleted,
        "unaccounted": unaccounted,
        "open_conflicts": sorted(conflicts, key=lambda c: c["sub"]),
        "never_emailed": {"by_reason": dict(sorted(reasons.items())), "users": never_emailed},
        "campaign": campaign,
    }


# -- HTML -------------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:980px;color:#1d2330}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #dde}
.ok{color:#0a7d32;font-weight:600} .bad{color:#b3261e;font-weight:600} .warn{color:#a15c00;font-weight:600}
table{border-collapse:collapse;margin:.5rem 0} td,th{padding:.25rem .75rem;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums} code{background:#f3f4f8;padding:0 .25rem}
"""
_LIST_LIMIT = 200


def _table(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class=n>{v:,}</td>"
            if isinstance(v, int) and not isinstance(v, bool)
            else f"<td>{html.escape(str(v))}</td>"
            for v in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body or '<tr><td>none</td></tr>'}</table>"


def _id_list(items: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
    shown = _table(([item.get(k, "") for k in keys] for item in items[:_LIST_LIMIT]), keys)
    more = f"<p>… and {len(items) - _LIST_LIMIT:,} more in the JSON report.</p>" if len(items) > _LIST_LIMIT else ""
    return shown + more


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>{body}</body></html>\n"
    )


def render_daily_html(report: Mapping[str, Any]) -> str:
    esc = html.escape
    verdict = (
        '<span class="ok">complete</span>'
        if report["complete"]
        else '<span class="bad">incomplete</span>: ' + esc("; ".join(report["incomplete_reasons"]))
    )
    window = report["window"]
    progress = report["progress"]
    sync = report["sync"]
    body = f"""<h1>Cognito reconciliation, day {report["day"]} ({esc(str(report["sweep_date"]))})</h1>
<p>Pool <code>{esc(report["user_pool_id"])}</code>, run <code>{esc(report["run_id"])}</code>. Window
{esc(str(window["cutover_at"]))} → {esc(str(window["closes_at"]))} ({window["window_days"]} days).
Stages up to <code>{esc(report["stop_after"])}</code>. This sweep is {verdict}.</p>
<h2>What the diff found</h2>{_table(sorted(report["counts"].items()), ("category", "users"))}
<h2>Carried over (new and retried users), by outcome</h2>{_table(sorted(report["carry_over"].items()), ("status", "users"))}
<h2>Users carried over today</h2>{_id_list(report["carried_over_today"], ("sub", "avnology_id"))}
<h2>Existing identities: modified, disabled, deleted</h2>
{_table(sorted(sync.get("outcomes", {}).items()), ("outcome", "users"))}
<p>Fields patched: {esc(", ".join(f"{k} ({v})" for k, v in sorted(sync.get("fields", {}).items())) or "none")}.
Disabled-in-Cognito policy: <code>{esc(str(sync.get("disabled_policy", "")))}</code>.</p>
{_id_list(sync.get("users", []), ("sub", "avnology_id", "category", "outcome", "detail"))}
<h2>Deleted in Cognito since import (reported only)</h2>{_id_list([{"sub": s} for s in report["deleted_in_cognito"]], ("sub",))}
<h2>Reset emails</h2>{_table(sorted((k, v) for k, v in report["emails"].items() if not isinstance(v, dict)), ("", "users"))}
<h2>Progress over the window ({progress["sweeps"]} sweeps)</h2>
{_table(([d["sweep_date"], d["day"], *(d[k] for k in PROGRESS_KEYS), "yes" if d["complete"] else "no"] for d in progress["days"]), ("date", "day", *PROGRESS_KEYS, "complete"))}
{_table(sorted(progress["totals"].items()), ("total over the window", "users"))}
<h2>Ledger now</h2>{_table(sorted(report["ledger"].items()), ("status", "users"))}
"""
    return _page(f"Cognito reconciliation {report['user_pool_id']} {report['sweep_date']}", body)


def render_final_html(report: Mapping[str, Any]) -> str:
    esc = html.escape
    checklist = report["checklist"]
    safe = checklist["safe_to_decommission"]
    verdict = (
        '<span class="ok">SAFE to decommission the user pool</span>'
        if safe
        else '<span class="bad">NOT safe to decommission yet</span>'
    )
    checks = "".join(
        f"<li>{'<span class=ok>✔</span>' if c['passed'] else ('<span class=bad>✘</span>' if c['blocking'] else '<span class=warn>!</span>')} "
        f"{esc(c['check'])}: {c['count']:,}</li>"
        for c in checklist["checks"]
    )
    purge = report.get("purge", {})
    body = f"""<h1>Cognito reconciliation: final report</h1>
<p>Pool <code>{esc(report["user_pool_id"])}</code>, window {esc(str(report["window"]["cutover_at"]))} →
{esc(str(report["window"]["closes_at"]))}. {verdict}.</p>
<h2>Checklist</h2><ul>{checks}</ul>
<h2>Unaccounted users</h2>{_id_list(checklist["unaccounted"], ("sub", "reason"))}
<h2>Open conflicts</h2>{_id_list(checklist["open_conflicts"], ("sub", "reason"))}
<h2>Users never emailed, by reason</h2>{_table(sorted(checklist["never_emailed"]["by_reason"].items()), ("reason", "users"))}
{_id_list(checklist["never_emailed"]["users"], ("sub", "avnology_id", "reason"))}
<h2>Ledger</h2>{_table(sorted(checklist["ledger"].items()), ("status", "users"))}
<p>Deleted in Cognito since import: {checklist["deleted_in_cognito"]:,}.</p>
<h2>Progress over the window</h2>{_table(sorted(report["progress"]["totals"].items()), ("total", "users"))}
<h2>Purge of per-user run files</h2>
<p>Retention {purge.get("retention_days", "–")} days: {len(purge.get("purged", []))} runs purged,
{len(purge.get("kept", []))} kept. Aggregate reports are kept.</p>
{_table(([p["run"], ", ".join(p["removed"])] for p in purge.get("purged", [])), ("run", "removed"))}
"""
    return _page(f"Cognito reconciliation final report {report['user_pool_id']}", body)
