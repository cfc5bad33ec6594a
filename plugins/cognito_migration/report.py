"""The run report: one account of every user in the pool, for people (HTML) and machines (JSON).

The maths is pure (``build_report``); ``render_html`` draws it with inline SVG so the report is one
self-contained file with no external assets. The conservation check is the project's central promise:

    users seen = imported + already present + skipped + rejected + conflict

A run where the import stage ran and that equation does not hold (anyone still pending or failed) fails.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cognito_migration import ledger as L

STAGE_ORDER = ("extract", "convert", "dry_run", "import", "emails")


class ConservationError(RuntimeError):
    """Users went missing between stages; the message carries the equation with the numbers."""


@dataclass(frozen=True)
class StageStats:
    name: str
    users: int
    elapsed_s: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def users_per_s(self) -> float | None:
        if not self.elapsed_s:
            return None
        return self.users / self.elapsed_s


def aggregate_stage(
    name: str, outputs: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None, users_key: str
) -> StageStats | None:
    """Sum the small XCom dicts of a (possibly mapped) stage.

    Time is the sum of the copies' own durations (task-seconds): copies may run one at a time (emails, pools of one
    slot) or in parallel, and only the sum means the same thing in both cases.
    """
    if not outputs:
        return None
    items = [outputs] if isinstance(outputs, Mapping) else [o for o in outputs if o]
    if not items:
        return None
    users = sum(int(o.get(users_key, 0) or 0) for o in items)
    times = [float(o["elapsed_s"]) for o in items if o.get("elapsed_s")]
    totals: dict[str, Any] = {}
    for o in items:
        for key, value in o.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and key != "elapsed_s":
                totals[key] = totals.get(key, 0) + value
    return StageStats(name, users, sum(times) if times else None, totals)


def build_report(
    *,
    run_id: str,
    user_pool_id: str,
    stop_after: str,
    status_counts: Mapping[str, int],
    reason_counts: Mapping[tuple[str, str], int],
    stages: Sequence[StageStats],
    email: Mapping[str, Any] | None = None,
    links: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Assemble the report and its conservation check from ledger counts and per-stage stats."""
    seen = sum(status_counts.values())
    parts = {
        s: int(status_counts.get(s, 0)) for s in (L.IMPORTED, L.ALREADY_PRESENT, L.SKIPPED, L.REJECTED, L.CONFLICT)
    }
    open_ = {s: int(status_counts.get(s, 0)) for s in (L.PENDING, L.FAILED)}
    unknown = {s: n for s, n in status_counts.items() if s not in L.ALL_STATUSES}
    import_ran = STAGE_ORDER.index(stop_after) >= STAGE_ORDER.index("import")
    accounted = sum(parts.values())
    if import_ran:
        holds = accounted == seen and not any(open_.values()) and not unknown
        equation = (
            f"seen {seen} = imported {parts[L.IMPORTED]} + already present {parts[L.ALREADY_PRESENT]} + "
            f"skipped {parts[L.SKIPPED]} + rejected {parts[L.REJECTED]} + conflict {parts[L.CONFLICT]}"
            + (f"  (unaccounted: pending {open_[L.PENDING]}, failed {open_[L.FAILED]})" if not holds else "")
        )
    else:
        # Before the import, "pending" is the expected state of a convertible user.
        holds = accounted + open_[L.PENDING] == seen and not open_[L.FAILED] and not unknown
        equation = (
            f"seen {seen} = ready to import {open_[L.PENDING]} + skipped {parts[L.SKIPPED]} + "
            f"rejected {parts[L.REJECTED]} + conflict {parts[L.CONFLICT]} (run stopped after {stop_after})"
        )
    reasons = [
        {"status": status, "reason": reason, "count": n}
        for (status, reason), n in sorted(reason_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return {
        "run_id": run_id,
        "user_pool_id": user_pool_id,
        "stop_after": stop_after,
        "conservation": {
            "holds": holds,
            "equation": equation,
            "seen": seen,
            "accounted": accounted,
            **parts,
            **open_,
            "unknown_statuses": unknown,
        },
        "status_counts": dict(sorted(status_counts.items())),
        "reasons": reasons,
        "stages": [
            {
                "name": s.name,
                "users": s.users,
                "elapsed_s": round(s.elapsed_s, 3) if s.elapsed_s else None,
                "users_per_s": round(s.users_per_s, 1) if s.users_per_s else None,
                "details": dict(s.details),
            }
            for s in stages
        ],
        "email": dict(email or {}),
        "links": dict(links or {}),
    }


def check_conservation(report: Mapping[str, Any]) -> None:
    if not report["conservation"]["holds"]:
        raise ConservationError(f"users are unaccounted for: {report['conservation']['equation']}")


# -- HTML ---------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:980px;color:#1d2330}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #dde}
.ok{color:#0a7d32;font-weight:600} .bad{color:#b3261e;font-weight:600}
table{border-collapse:collapse;margin:.5rem 0} td,th{padding:.25rem .75rem;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums} code{background:#f3f4f8;padding:0 .25rem}
"""

_COLORS = {
    L.IMPORTED: "#2e7d32",
    L.ALREADY_PRESENT: "#66bb6a",
    L.SKIPPED: "#9e9e9e",
    L.REJECTED: "#e53935",
    L.CONFLICT: "#fb8c00",
    L.FAILED: "#6a1b9a",
    L.PENDING: "#1e88e5",
}


def _bar_chart(rows: Sequence[tuple[str, float]], *, unit: str = "", color: str = "#3949ab") -> str:
    """A horizontal bar chart as inline SVG (no JavaScript, no external assets)."""
    if not rows:
        return "<p><em>nothing to chart</em></p>"
    width, bar_h, label_w = 640, 22, 220
    peak = max(v for _, v in rows) or 1
    parts = [f'<svg role="img" width="{width}" height="{bar_h * len(rows) + 6}" xmlns="http://www.w3.org/2000/svg">']
    for i, (label, value) in enumerate(rows):
        y = i * bar_h + 3
        w = max(1.0, (width - label_w - 90) * value / peak)
        fill = _COLORS.get(label, color)
        shown = f"{int(value):,}" if float(value).is_integer() else f"{value:,.1f}"
        parts.append(
            f'<text x="0" y="{y + 15}" font-size="13">{html.escape(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h - 6}" fill="{fill}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 14}" font-size="12">{shown}{html.escape(unit)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: Mapping[str, Any]) -> str:
    c = report["conservation"]
    esc = html.escape
    verdict = '<span class="ok">holds</span>' if c["holds"] else '<span class="bad">BROKEN</span>'
    status_rows = [(s, float(n)) for s, n in report["status_counts"].items()]
    reason_rows = [(f"{r['status']}: {r['reason']}", float(r["count"])) for r in report["reasons"]]
    speed_rows = [(s["name"], float(s["users_per_s"])) for s in report["stages"] if s.get("users_per_s")]
    stage_table = "".join(
        f"<tr><td>{esc(s['name'])}</td><td class=n>{s['users']:,}</td>"
        f"<td class=n>{s['elapsed_s'] if s['elapsed_s'] is not None else '–'}</td>"
        f"<td class=n>{s['users_per_s'] if s['users_per_s'] is not None else '–'}</td></tr>"
        for s in report["stages"]
    )
    email_rows = "".join(
        f"<tr><td>{esc(str(k))}</td><td class=n>{esc(str(v))}</td></tr>" for k, v in sorted(report["email"].items())
    )
    links = "".join(
        f'<li><a href="{esc(href)}">{esc(label)}</a></li>' for label, href in sorted(report["links"].items())
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Cognito migration report {esc(report["user_pool_id"])}</title>
<style>{_CSS}</style></head><body>
<h1>Cognito → Avnology ID migration report</h1>
<p>Pool <code>{esc(report["user_pool_id"])}</code>, run <code>{esc(report["run_id"])}</code>,
stages up to <code>{esc(report["stop_after"])}</code>.</p>
<h2>Nobody is lost: the conservation check {verdict}</h2>
<p><code>{esc(c["equation"])}</code></p>
<h2>Status breakdown</h2>{_bar_chart(status_rows)}
<h2>Skipped, rejected and conflicts by reason</h2>{_bar_chart(reason_rows, color="#e53935")}
<h2>Throughput per stage (users per task-second; parallel copies finish sooner)</h2>{_bar_chart(speed_rows, unit=" users/s")}
<table><tr><th>stage</th><th>users</th><th>task-seconds</th><th>users per task-second</th></tr>{stage_table}</table>
<h2>Reset emails</h2><table>{email_rows or "<tr><td>no email stage in this run</td></tr>"}</table>
<h2>Files</h2><ul>{links}</ul>
</body></html>
"""
