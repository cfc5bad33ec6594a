"""The report stage: gather the run's figures, write report.json and report.html, record the cutover."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from cognito_migration import storage
from cognito_migration.ledger import Ledger, utcnow
from cognito_migration.report import aggregate_stage, build_report, check_conservation, render_html

log = logging.getLogger(__name__)

# Which XCom key counts the users a stage handled.
_STAGE_USER_KEYS = {
    "extract": "users",
    "convert": "seen",
    "dry_run": "users",
    "import": "users",
    "emails": "eligible",
}

# The DAG task behind each stage.
STAGE_TASKS = {
    "extract": "extract",
    "convert": "convert",
    "dry_run": "dry_run",
    "import": "import_batch",
    "emails": "send_emails",
}

_LINKS = {
    "report.json": "report.json",
    "rejects.csv": "rejects.csv",
    "cutover kit": "cutover/kit.md",
    "convert summary": "convert_summary.json",
    "pool snapshot": "snapshot.json",
}


def collect_stage_outputs(ti: Any) -> dict[str, Any]:
    """Each stage's small XCom results (a list for mapped stages); None where the stage did not run."""
    outputs: dict[str, Any] = {}
    for stage, task_id in STAGE_TASKS.items():
        value = ti.xcom_pull(task_ids=task_id)
        if isinstance(value, list):
            value = [v for v in value if v] or None
        outputs[stage] = value or None
    return outputs


def last_stage_run(params: Any, stage_outputs: Mapping[str, Any]) -> str:
    """The last stage that produced results: a run whose gate stopped it is judged as stopped after the dry run."""
    ran = [stage for stage in STAGE_TASKS if params.runs(stage) and stage_outputs.get(stage)]
    return ran[-1] if ran else "extract"


class RunIncomplete(RuntimeError):
    """A stage the form asked for did not finish (a failed gate, a failed import): the run must not look done."""


def _count(outputs: Any) -> int:
    if not outputs:
        return 0
    return 1 if isinstance(outputs, Mapping) else len(outputs)


def incomplete_stages(params: Any, stage_outputs: Mapping[str, Any]) -> list[str]:
    """Stages inside ``stop_after`` with missing results: every shard, then every batch, must report back."""
    expected: dict[str, int] = {"extract": 1, "convert": 1}
    convert = stage_outputs.get("convert")
    batches = len(convert.get("batches", [])) if isinstance(convert, Mapping) else None
    for stage in ("dry_run", "import", "emails"):
        if stage == "emails" and params.email_mode == "off":
            continue
        expected[stage] = batches if batches is not None else 1
    missing = []
    for stage, wanted in expected.items():
        if params.runs(stage) and _count(stage_outputs.get(stage)) < wanted:
            missing.append(stage)
    return missing


def write_report(
    params: Any,
    run_id: str,
    stage_outputs: Mapping[str, Sequence[Mapping[str, Any]] | Mapping[str, Any] | None],
) -> dict[str, Any]:
    """Write the run report; raise when users are unaccounted for or a stage asked for did not finish.

    The report is written first in every case, so a failed run still explains itself.
    """
    ledger = Ledger().create_schema()
    run_path = storage.run_dir(run_id)
    stages = [
        stats
        for name in _STAGE_USER_KEYS
        if (stats := aggregate_stage(name, stage_outputs.get(name), _STAGE_USER_KEYS[name])) is not None
    ]
    email_totals: dict[str, Any] = {}
    if emails := stage_outputs.get("emails"):
        from cognito_migration.notify import campaign_status, summarize

        this_run = summarize([emails] if isinstance(emails, Mapping) else emails)
        ineligible = this_run.pop("ineligible", {})
        email_totals = {f"this run: {k}": v for k, v in this_run.items() if v}
        email_totals.update({f"not emailed: {reason}": n for reason, n in ineligible.items()})
        campaign = campaign_status(ledger, params.user_pool_id, params.campaign)
        email_totals.update({f"campaign {params.campaign!r} to date: {k}": v for k, v in campaign.items()})
    report = build_report(
        run_id=run_id,
        user_pool_id=params.user_pool_id,
        stop_after=last_stage_run(params, stage_outputs),
        status_counts=ledger.counts(params.user_pool_id, run_id=run_id),
        reason_counts=ledger.reason_counts(params.user_pool_id, run_id=run_id),
        stages=stages,
        email=email_totals,
        links={label: rel for label, rel in _LINKS.items() if (run_path / rel).exists()},
    )
    missing = incomplete_stages(params, stage_outputs)
    report["incomplete_stages"] = missing
    storage.write_json(run_path / "report.json", report)
    storage.write_bytes(run_path / "report.html", render_html(report).encode())
    log.info("Report: %s (%s)", run_path / "report.html", report["conservation"]["equation"])
    check_conservation(report)
    if missing:
        raise RunIncomplete(
            f"the run did not finish: no complete result from {', '.join(missing)} (see those tasks' logs); "
            f"the report is at {run_path / 'report.html'}"
        )

    cutover = None
    if stage_outputs.get("import"):
        cutover_at = utcnow()
        ledger.record_cutover(
            params.user_pool_id,
            run_id,
            cutover_at=cutover_at,
            window_days=params.window_days,
            organization_id=None,
            summary=report["conservation"],
        )
        first = ledger.first_cutover(params.user_pool_id)
        cutover = (first or {}).get("cutover_at", cutover_at).isoformat()
    return {
        "report_json": str(run_path / "report.json"),
        "report_html": str(run_path / "report.html"),
        "seen": report["conservation"]["seen"],
        "holds": report["conservation"]["holds"],
        "cutover_at": cutover,
        "window_days": params.window_days,
        "user_pool_id": params.user_pool_id,
    }
