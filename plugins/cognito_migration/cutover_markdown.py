"""The cutover kit as Markdown: one page an operator works through in the Avnology dashboard.

Pure rendering of :class:`~cognito_migration.cutover.CutoverKit`; every value from the pool (client names, group
names, URLs) is escaped for table cells, so an odd name cannot break the page's layout.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cognito_migration.cutover import ClientPlan, CutoverKit

_CLIENT_TYPE_LABEL = {
    "public": "public + PKCE (SPA / mobile)",
    "confidential": "confidential",
    "machine_to_machine": "machine-to-machine (client_credentials)",
}


def _cell(value: Any) -> str:
    """A Markdown table cell: pipes escaped, newlines folded, None shown as a dash."""
    if value is None or value == "":
        return "—"
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _code(value: str | None) -> str:
    return "—" if not value else "`" + _cell(value).replace("`", "'") + "`"


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _bullets(items: Iterable[str], empty: str = "none") -> list[str]:
    items = list(items)
    return [f"- {_cell(i)}" for i in items] + [""] if items else [f"- {empty}", ""]


def _client_section(plan: ClientPlan) -> list[str]:
    out = [f"### {_cell(plan.name)} (Cognito client {_code(plan.cognito_client_id)})", ""]
    out += _table(
        ("Setting", "Value"),
        [
            ("Client type", _CLIENT_TYPE_LABEL[plan.client_type]),
            ("PKCE", plan.pkce.replace("_", " ")),
            ("Grant types", ", ".join(map(_code, plan.grant_types)) or "—"),
            ("Scopes", ", ".join(map(_code, plan.scopes)) or "—"),
            ("Identity providers", ", ".join(map(_cell, plan.identity_providers)) or "—"),
        ],
    )
    out += ["**Redirect URIs** (from CallbackURLs)", "", *_bullets(map(_code, plan.redirect_uris))]
    out += ["**Logout URLs**", "", *_bullets(map(_code, plan.logout_urls))]
    out += ["**Flows mapped**", ""]
    out += _table(
        ("Cognito", "Avnology ID", "Note"),
        [(_code(f.cognito), _code(f.avnology) if f.avnology else "dropped", _cell(f.note)) for f in plan.flow_mapping],
    )
    if plan.warnings:
        out += ["**Warnings**", "", *[f"- ⚠ {_cell(w)}" for w in plan.warnings], ""]
    if plan.notes:
        out += ["**Notes**", "", *_bullets(plan.notes)]
    if plan.secret_rotation:
        out += ["**Secret rotation** (the secret itself is never written here)", ""]
        out += [f"{n}. {_cell(step)}" for n, step in enumerate(plan.secret_rotation, 1)] + [""]
    out += ["**Environment variables**", ""]
    out += _table(("Variable", "Old", "New"), [(_code(e.variable), _code(e.old), _code(e.new)) for e in plan.env])
    return out


def render_markdown(kit: CutoverKit) -> str:
    """The whole kit as one Markdown page."""
    warnings = kit.warnings
    out = [
        f"# Cutover kit: {_cell(kit.pool_name or kit.user_pool_id)}",
        "",
        f"User pool {_code(kit.user_pool_id)} in {_code(kit.region)} → Avnology ID at {_code(kit.avnology_base_url)}.",
        "",
        "Avnology ID documents no API for OAuth clients or hooks, so this kit is a plan to apply in the Avnology "
        "dashboard, following the seed guide. No client secret appears in it. `kit.json` holds the same plan for tools.",
        "",
    ]
    out += [f"## Warnings ({len(warnings)})", ""]
    out += _bullets((f"{w.area} {w.subject}: {w.message}" for w in warnings), empty="none")
    if kit.notes:
        out += ["## Notes", "", *_bullets(kit.notes)]

    out += [f"## 1. App clients → OAuth 2.1 clients ({len(kit.clients)})", ""]
    out += [
        "For each: register a new OAuth client, copy the redirect URIs and logout URLs, copy the scopes, enable "
        "PKCE for public clients, rotate confidential clients to a new secret.",
        "",
    ]
    if not kit.clients:
        out += ["The pool has no app clients.", ""]
    for plan in kit.clients:
        out += _client_section(plan)

    out += ["## 2. Redirect URL mapping", ""]
    out += _table(
        ("Endpoint", "Cognito URL", "Avnology ID URL"),
        [(_cell(u.endpoint), _code(u.cognito), _code(u.avnology)) for u in kit.url_mapping],
    )
    out += ["The hosted UI's pages (`/login`, `/signup`) become the hosted sign-in page (`/sign-in`).", ""]
    out += ["### Environment variables an app changes", ""]
    out += ["Names vary per app; apply the same old → new values to whatever yours are called.", ""]
    out += _table(
        ("Variable", "Old", "New", "Note"),
        [
            (_code(e.variable), _code(e.old), _code(e.new) if e.new else "remove", _cell(e.note))
            for e in kit.env_changes
        ],
    )

    out += [f"## 3. Lambda triggers → Avnology hooks ({len(kit.triggers)})", ""]
    if kit.triggers:
        out += _table(
            ("Trigger", "Lambda", "Avnology event", "Status", "What to do"),
            [
                (
                    _cell(t.trigger) + (f" ({_cell(t.lambda_version)})" if t.lambda_version else ""),
                    _code(t.lambda_arn),
                    _code(t.avnology_event),
                    ("⚠ " if t.flagged else "") + t.status.replace("_", " "),
                    _cell(t.action),
                )
                for t in kit.triggers
            ],
        )
    else:
        out += ["The pool has no Lambda triggers.", ""]

    out += [f"## 4. Groups → roles ({len(kit.roles)})", ""]
    if kit.roles:
        out += ["Each member of a group gets this permission tuple at import (`POST /v1/permissions`).", ""]
        out += _table(
            ("Group", "Members", "Role tuple", "Notes"),
            [
                (
                    _cell(r.group),
                    "unknown" if r.member_count is None else f"{r.member_count:,}",
                    _code(", ".join(f"{k}={v}" for k, v in r.role_tuple.items())),
                    _cell(" ".join([*("⚠ " + w for w in r.warnings), *r.notes])),
                )
                for r in kit.roles
            ],
        )
    else:
        out += ["The pool has no groups.", ""]
    return "\n".join(out).rstrip() + "\n"
