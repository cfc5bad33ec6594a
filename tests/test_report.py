from __future__ import annotations

import pytest

from cognito_migration import ledger as L
from cognito_migration.report import (
    ConservationError,
    StageStats,
    aggregate_stage,
    build_report,
    check_conservation,
    render_html,
)


def _report(status_counts: dict[str, int], stop_after: str = "emails", **kw: object) -> dict:
    return build_report(
        run_id="r1",
        user_pool_id="us-east-1_X",
        stop_after=stop_after,
        status_counts=status_counts,
        reason_counts={(L.SKIPPED, "unconfirmed"): 3, (L.REJECTED, "no_email"): 2},
        stages=[StageStats("import", 10, 2.0)],
        **kw,  # type: ignore[arg-type]
    )


def test_conservation_holds_when_every_user_is_terminal() -> None:
    report = _report({L.IMPORTED: 5, L.ALREADY_PRESENT: 1, L.SKIPPED: 3, L.REJECTED: 2, L.CONFLICT: 1})
    assert report["conservation"]["holds"]
    assert report["conservation"]["seen"] == 12
    assert "imported 5" in report["conservation"]["equation"]
    check_conservation(report)


@pytest.mark.parametrize("leftover", [L.PENDING, L.FAILED])
def test_conservation_breaks_on_pending_or_failed_after_import(leftover: str) -> None:
    report = _report({L.IMPORTED: 5, leftover: 1})
    assert not report["conservation"]["holds"]
    with pytest.raises(ConservationError, match=f"{leftover} 1"):
        check_conservation(report)


def test_unknown_status_breaks_conservation() -> None:
    assert not _report({L.IMPORTED: 5, "mystery": 1})["conservation"]["holds"]


def test_run_stopped_before_import_counts_pending_as_ready() -> None:
    report = _report({L.PENDING: 7, L.SKIPPED: 3}, stop_after="dry_run")
    assert report["conservation"]["holds"]
    assert "ready to import 7" in report["conservation"]["equation"]
    assert not _report({L.PENDING: 7, L.FAILED: 1}, stop_after="dry_run")["conservation"]["holds"]


def test_aggregate_mapped_stage_sums_counts_and_task_seconds() -> None:
    stats = aggregate_stage(
        "import",
        [{"users": 10, "created": 9, "elapsed_s": 2.0}, {"users": 5, "created": 5, "elapsed_s": 4.0}, None],
        "users",
    )
    assert stats is not None
    assert stats.users == 15 and stats.details["created"] == 14 and stats.elapsed_s == 6.0
    assert stats.users_per_s == pytest.approx(2.5)
    assert aggregate_stage("import", [], "users") is None


def test_html_shows_equation_charts_and_escapes() -> None:
    report = _report({L.IMPORTED: 5, L.REJECTED: 2}, links={"<b>kit</b>": "cutover/kit.md"})
    page = render_html(report)
    assert "<svg" in page and "conservation check" in page
    assert "imported 5" in page
    assert "&lt;b&gt;kit&lt;/b&gt;" in page and "<b>kit</b>" not in page
    assert "BROKEN" not in page
    assert "BROKEN" in render_html(_report({L.IMPORTED: 5, L.FAILED: 1}))


def _params(**kw: object) -> object:
    from cognito_migration.params import MigrationParams

    return MigrationParams(user_pool_id="us-east-1_Abc123", **kw)  # type: ignore[arg-type]


def test_a_failed_gate_leaves_import_and_emails_incomplete() -> None:
    from cognito_migration.run_report import incomplete_stages

    outputs = {
        "extract": [{"users": 5}],
        "convert": {"batches": ["batch-0001", "batch-0002"]},
        "dry_run": [{"users": 3}, {"users": 2}],
        "import": None,
        "emails": None,
    }
    assert incomplete_stages(_params(), outputs) == ["import", "emails"]
    assert incomplete_stages(_params(stop_after="dry_run"), outputs) == []


def test_one_missing_batch_is_incomplete_and_no_batches_is_complete() -> None:
    from cognito_migration.run_report import incomplete_stages

    two = {"batches": ["batch-0001", "batch-0002"]}
    partial = {
        "extract": [{}],
        "convert": two,
        "dry_run": [{"a": 1}, {"a": 1}],
        "import": [{"a": 1}],
        "emails": [{"a": 1}],
    }
    assert incomplete_stages(_params(), partial) == ["import", "emails"]
    empty = {"extract": [{"users": 0}], "convert": {"batches": []}, "dry_run": None, "import": None, "emails": None}
    assert incomplete_stages(_params(), empty) == []
    assert incomplete_stages(_params(email_mode="off"), {**partial, "import": partial["dry_run"]}) == []
