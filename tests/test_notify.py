"""Reset emails against the real SMTP sink (aiosmtpd), counting what the server received.

The ledger is seeded directly (record_seen + record_import), so these tests do not depend on the import stage.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from cognito_migration import ledger as L
from cognito_migration import notify
from cognito_migration.params import MigrationParams, parse_params
from cognito_migration.storage import run_dir
from emulators.ports import free_port
from emulators.smtp_sink import SmtpSink
from emulators.stack import FROM_ADDRESS

POOL = "us-east-1_Notify1"
RUN = "manual__2026-11-26T10:00:00+00:00"
FAST = notify.RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.05)


@pytest.fixture(autouse=True)
def quiet_sink_log() -> None:
    """The sink's own server log (aiosmtpd's ``mail.log``) is the provider side, not the pipeline: keep it quiet."""
    logging.getLogger("mail.log").setLevel(logging.WARNING)


def params(**overrides: Any) -> MigrationParams:
    return parse_params({"user_pool_id": POOL, "email_mode": "send", "emails_per_second": 500, **overrides})


def seed(ledger: L.Ledger, *users: dict[str, Any]) -> None:
    """Users as the import stage leaves them. Keys: sub, and optionally email, first_name, enabled, federated,
    status (imported | already_present | failed | rejected | pending), hook (bool), deleted (bool)."""
    ledger.record_seen(
        POOL,
        [
            L.SeenUser(
                sub=u["sub"],
                username=u["sub"],
                email=u.get("email", f"{u['sub']}@example.com"),
                cognito_status="CONFIRMED",
                enabled=u.get("enabled", True),
                last_modified=None,
                federated=u.get("federated", False),
                first_name=u.get("first_name"),
            )
            for u in users
        ],
        run_id=RUN,
    )
    for u in users:
        status = u.get("status", L.IMPORTED)
        if status in L.SUCCESS_STATUSES:
            ledger.record_import(
                POOL,
                u["sub"],
                avnology_id=f"usr_{u['sub']}",
                already_present=status == L.ALREADY_PRESENT,
                cognito_last_modified=None,
                run_id=RUN,
            )
        elif status != L.PENDING:
            ledger.record_outcomes(POOL, [L.Outcome(u["sub"], status, "test_reason")])
        if u.get("hook"):
            ledger.mark_hook_migrated(POOL, u.get("email", f"{u['sub']}@example.com"))
        if u.get("deleted"):
            ledger.mark_deleted_in_cognito(POOL, [u["sub"]])


def received(sink: SmtpSink) -> Counter[str]:
    return Counter(r.lower() for m in sink.messages for r in m.recipients)


def parsed(raw: bytes) -> EmailMessage:
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # SMTP wants CRLF lines
    return message_from_bytes(raw, policy=email_policy.default)  # type: ignore[return-value]


def body(msg: EmailMessage, subtype: str) -> str:
    part = msg.get_body(preferencelist=(subtype,))
    assert part is not None, f"no text/{subtype} part"
    return str(part.get_content())


def content(**overrides: Any) -> notify.EmailContent:
    values = {
        "subject": "Set a new password",
        "from_address": "Migration <migration@example.com>",
        "reply_to": "help@example.com",
        "link_template": "{hosted_base_url}/sign-in?recovery=1&email={email_urlencoded}",
        "hosted_base_url": "https://id.example.com/",
        **overrides,
    }
    return notify.EmailContent(**values)


# -- rendering --------------------------------------------------------------------------------------------------


def test_message_is_personalised_and_links_to_the_hosted_page() -> None:
    who = notify.Recipient(POOL, "sub-1", "ana+tag@example.com", "Zoë <b>&", "usr_1")
    raw = notify.render_email(who, content(), "cutover-reset")
    msg = parsed(raw)

    assert msg["Subject"] == "Set a new password"
    assert msg["From"] == "Migration <migration@example.com>"
    assert msg["To"] == "ana+tag@example.com"
    assert msg["Reply-To"] == "help@example.com"
    text = body(msg, "plain")
    html = body(msg, "html")
    link = "https://id.example.com/sign-in?recovery=1&email=ana%2Btag%40example.com"
    assert "Hello Zoë <b>&," in text and link in text
    assert "Hello Zoë &lt;b&gt;&amp;," in html and "<b>&" not in html
    assert f'href="{link.replace("&", "&amp;")}"' in html
    assert "help@example.com" in text

    again = parsed(notify.render_email(who, content(), "cutover-reset"))
    other_campaign = parsed(notify.render_email(who, content(), "second-try"))
    assert msg["Message-ID"] == again["Message-ID"] != other_campaign["Message-ID"]
    assert msg["Message-ID"].endswith("@example.com>")


def test_non_ascii_subject_and_sender_name_are_encoded() -> None:
    who = notify.Recipient(POOL, "sub-9", "dee@example.com", "Dee")
    raw = notify.render_email(
        who, content(subject="Réglez votre mot de passe", from_address="Équipe <it@example.com>"), "c"
    )
    assert raw.isascii()  # encoded words and quoted-printable: no 8BITMIME needed
    msg = parsed(raw)
    assert msg["Subject"] == "Réglez votre mot de passe"
    (sender,) = msg["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Équipe", "it@example.com")


@pytest.mark.parametrize("field", ["subject", "from_address", "reply_to"])
def test_line_breaks_in_headers_are_refused(field: str) -> None:
    with pytest.raises(notify.EmailConfigError, match="line breaks"):
        content(**{field: "Hi <a@example.com>\r\nBcc: all@example.com"})


def test_greeting_without_a_name_and_a_link_by_avnology_id() -> None:
    who = notify.Recipient(POOL, "sub-2", "bo@example.com", "  ", "usr_2")
    msg = parsed(
        notify.render_email(who, content(link_template="{hosted_base_url}/recover/{avnology_id}", reply_to=""), "c")
    )
    text = body(msg, "plain")
    assert text.startswith("Hello there,")
    assert "https://id.example.com/recover/usr_2" in text
    assert msg["Reply-To"] is None and "Questions?" not in text

    with pytest.raises(notify.EmailConfigError, match="avnology_id"):
        notify.reset_link(content(link_template="{hosted_base_url}/r/{avnology_id}"), who.__class__(POOL, "s", "x@y.z"))


def test_header_injection_through_the_subject_stops_the_campaign_before_anything_is_sent(
    clean_stack: Any, ledger_url: str
) -> None:
    ledger = L.Ledger(ledger_url).create_schema()
    seed(ledger, {"sub": "cy"})
    form = params(email_subject="Hi\r\nBcc: all@example.com")
    with pytest.raises(notify.EmailConfigError, match="may not contain line breaks"):
        notify.send_emails_for_subs(form, RUN, ["cy"], label="t", ledger=ledger, retry=FAST)
    assert clean_stack.smtp.messages == []
    assert ledger.email_sends(POOL) == []


def test_from_address_comes_from_the_form_then_the_connection(clean_stack: Any) -> None:
    assert notify.EmailContent.from_params(params(), default_from=notify.connection_from_email()).from_address == (
        FROM_ADDRESS
    )
    form = notify.EmailContent.from_params(params(email_from="it@corp.example"), default_from=FROM_ADDRESS)
    assert form.from_address == "it@corp.example"
    with pytest.raises(notify.EmailConfigError, match="from_email"):
        notify.EmailContent.from_params(params(), default_from=None)


# -- eligibility ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "send_status", "reason"),
    [
        (None, None, "not_in_ledger"),
        ({"status": L.FAILED}, None, "not_imported"),
        ({"status": L.REJECTED}, None, "not_imported"),
        ({"deleted_in_cognito_at": "x"}, None, "deleted_in_cognito"),
        ({"federated": True}, None, "federated"),
        ({"cognito_enabled": False}, None, "disabled"),
        ({"cognito_enabled": None}, None, "disabled"),
        ({"email": None}, None, "no_email"),
        ({"hook_migrated_at": "x"}, None, "hook_migrated"),
        ({}, L.EMAIL_SENT, "already_sent"),
        ({}, L.EMAIL_FAILED, "already_failed"),
        ({}, L.EMAIL_CLAIMED, "unknown"),
        ({"cognito_enabled": False}, L.EMAIL_SENT, "already_sent"),
        ({}, None, None),
        ({"status": L.ALREADY_PRESENT}, None, None),
    ],
)
def test_ineligibility_reasons(user: dict[str, Any] | None, send_status: str | None, reason: str | None) -> None:
    base = {"status": L.IMPORTED, "cognito_enabled": True, "federated": False, "email": "a@example.com"}
    row = None if user is None else {**base, **user}
    assert notify.ineligibility(row, send_status) == reason


# -- sending ----------------------------------------------------------------------------------------------------


def test_exactly_one_message_per_eligible_user_and_none_for_the_ineligible(clean_stack: Any, ledger_url: str) -> None:
    ledger = L.Ledger(ledger_url).create_schema()
    seed(
        ledger,
        {"sub": "ok-1", "first_name": "Ana"},
        {"sub": "ok-2"},
        {"sub": "present", "status": L.ALREADY_PRESENT},
        {"sub": "disabled", "enabled": False},
        {"sub": "federated", "federated": True},
        {"sub": "failed-import", "status": L.FAILED},
        {"sub": "rejected", "status": L.REJECTED},
        {"sub": "pending", "status": L.PENDING},
        {"sub": "hooked", "hook": True},
        {"sub": "deleted", "deleted": True},
        {"sub": "sent-before"},
    )
    assert ledger.claim_email(POOL, "sent-before", "cutover-reset", run_id="earlier")
    ledger.mark_email(POOL, "sent-before", "cutover-reset", status=L.EMAIL_SENT)
    subs = [
        "ok-1",
        "ok-2",
        "present",
        "disabled",
        "federated",
        "failed-import",
        "rejected",
        "pending",
        "hooked",
        "deleted",
        "sent-before",
        "ghost",
        "ok-1",
    ]

    out = notify.send_emails_for_subs(params(), RUN, subs, label="t", ledger=ledger, retry=FAST)

    sink = clean_stack.smtp
    assert received(sink) == Counter({"ok-1@example.com": 1, "ok-2@example.com": 1, "present@example.com": 1})
    assert {k: out[k] for k in ("considered", "eligible", "sent", "failed", "deferred", "unknown")} == {
        "considered": 12,
        "eligible": 3,
        "sent": 3,
        "failed": 0,
        "deferred": 0,
        "unknown": 0,
    }
    assert out["ineligible"] == {
        "already_sent": 1,
        "deleted_in_cognito": 1,
        "disabled": 1,
        "federated": 1,
        "hook_migrated": 1,
        "not_imported": 3,
        "not_in_ledger": 1,
    }
    greeting = next(m for m in sink.messages if m.recipients == ["ok-1@example.com"]).text()
    assert greeting.startswith("Hello Ana,")
    assert {r["sub"]: r["status"] for r in ledger.email_sends(POOL, "cutover-reset")} == {
        "ok-1": L.EMAIL_SENT,
        "ok-2": L.EMAIL_SENT,
        "present": L.EMAIL_SENT,
        "sent-before": L.EMAIL_SENT,
    }

    again = notify.send_emails_for_subs(params(), RUN, subs, label="t", ledger=ledger, retry=FAST)
    assert again["sent"] == 0 and again["ineligible"]["already_sent"] == 4
    assert sum(received(sink).values()) == 3

    # At most one per user *per campaign*: a new campaign is a deliberate new send.
    notify.send_emails_for_subs(params(campaign="reminder"), RUN, ["ok-2"], label="t", ledger=ledger, retry=FAST)
    assert received(sink)["ok-2@example.com"] == 2
    assert notify.campaign_status(ledger, POOL, "cutover-reset") == {"sent": 4, "failed": 0, "unknown": 0}


def test_server_refuses_the_first_attempts_then_retries_succeed_without_duplicates(
    clean_stack: Any, ledger_url: str
) -> None:
    ledger = L.Ledger(ledger_url).create_schema()
    seed(ledger, *({"sub": f"u{i}"} for i in range(4)))
    clean_stack.smtp.refuse_next(3, code=451)

    out = notify.send_emails_for_subs(params(), RUN, [f"u{i}" for i in range(4)], label="t", ledger=ledger, retry=FAST)

    assert out["sent"] == 4 and out["retries"] == 3 and out["deferred"] == 0
    assert received(clean_stack.smtp) == Counter({f"u{i}@example.com": 1 for i in range(4)})


def test_permanent_refusal_is_recorded_as_failed_with_the_reason_and_not_retried(
    clean_stack: Any, ledger_url: str
) -> None:
    ledger = L.Ledger(ledger_url).create_schema()
    seed(ledger, {"sub": "good"}, {"sub": "bounce"})
    clean_stack.smtp.reject_recipient("bounce@example.com", code=550)

    out = notify.send_emails_for_subs(params(), RUN, ["bounce", "good"], label="t", ledger=ledger, retry=FAST)

    assert (out["sent"], out["failed"], out["retries"]) == (1, 1, 0)
    rows = {r["sub"]: r for r in ledger.email_sends(POOL, "cutover-reset")}
    assert rows["bounce"]["status"] == L.EMAIL_FAILED
    assert rows["bounce"]["error"].startswith("550 ") and "RCPT TO" in rows["bounce"]["error"]
    assert received(clean_stack.smtp) == Counter({"good@example.com": 1})

    again = notify.send_emails_for_subs(params(), RUN, ["bounce"], label="t", ledger=ledger, retry=FAST)
    assert again["ineligible"] == {"already_failed": 1} and again["sent"] == 0


def test_transient_refusals_beyond_the_retries_defer_the_user_and_the_retry_sends_once(
    clean_stack: Any, ledger_url: str
) -> None:
    ledger = L.Ledger(ledger_url).create_schema()
    seed(ledger, {"sub": "a"}, {"sub": "b"})
    clean_stack.smtp.refuse_next(2, code=452)
    policy = notify.RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.02)

    with pytest.raises(notify.CampaignIncomplete, match="1 users were deferred"):
        notify.send_emails_for_subs(params(), RUN, ["a", "b"], label="t", ledger=ledger, retry=policy)

    assert received(clean_stack.smtp) == Counter({"b@example.com": 1})
    assert {r["sub"] for r in ledger.email_sends(POOL, "cutover-reset")} == {"b"}  # a's claim was released

    out = notify.send_emails_for_subs(params(), RUN, ["a", "b"], label="t", ledger=ledger, retry=policy)
    assert out["sent"] == 1 and out["ineligible"] == {"already_sent": 1}
    assert received(clean_stack.smtp) == Counter({"a@example.com": 1, "b@example.com": 1})


def test_server_down_aborts_the_batch_and_leaves_no_claims(
    clean_stack: Any, ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = free_port()
    extra = {"disable_ssl": True, "disable_tls": True, "from_email": FROM_ADDRESS, "timeout": 2, "retry_limit": 0}
    conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": closed, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(conn))
    ledger = L.Ledger(ledger_url).create_schema()
    seed(ledger, *({"sub": f"u{i}"} for i in range(6)))
    policy = notify.RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.02, abort_after_deferred=3)

    with pytest.raises(notify.CampaignAborted, match="3 users in a row"):
        notify.send_emails_for_subs(params(), RUN, [f"u{i}" for i in range(6)], label="t", ledger=ledger, retry=policy)

    assert ledger.email_sends(POOL, "cutover-reset") == []


def _hold_reply(sink: SmtpSink, monkeypatch: pytest.MonkeyPatch, recipient: str, seconds: float) -> None:
    """Make the sink store ``recipient``'s message, then sit on its 250 for ``seconds``: accepted, answer late."""
    store = sink._store

    def slow_store(message: Any) -> None:
        store(message)
        if recipient in message.recipients:
            time.sleep(seconds)

    monkeypatch.setattr(sink, "_store", slow_store)


def test_an_answer_lost_after_the_data_is_unknown_and_never_resent(
    clean_stack: Any, ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = clean_stack.smtp
    conn = {"conn_type": "smtp", "host": sink.host, "port": sink.port}
    conn["extra"] = {"disable_ssl": True, "disable_tls": True, "from_email": FROM_ADDRESS, "timeout": 1}
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(conn))
    ledger = L.Ledger(ledger_url).create_schema()
    seed(ledger, {"sub": "a"}, {"sub": "slow"}, {"sub": "c"})
    _hold_reply(sink, monkeypatch, "slow@example.com", 2.0)

    out = notify.send_emails_for_subs(params(), RUN, ["a", "slow", "c"], label="t", ledger=ledger, retry=FAST)

    # The sink did receive it; we could not know, so it stays claimed and is reported unknown.
    assert (out["sent"], out["unknown"], out["retries"]) == (2, 1, 0)
    assert received(sink) == Counter({"a@example.com": 1, "slow@example.com": 1, "c@example.com": 1})
    rows = {r["sub"]: r["status"] for r in ledger.email_sends(POOL, "cutover-reset")}
    assert rows == {"a": L.EMAIL_SENT, "slow": L.EMAIL_CLAIMED, "c": L.EMAIL_SENT}

    again = notify.send_emails_for_subs(params(), RUN, ["a", "slow", "c"], label="t", ledger=ledger, retry=FAST)
    assert again["unknown"] == 1 and again["sent"] == 0
    assert received(sink)["slow@example.com"] == 1
    assert notify.campaign_status(ledger, POOL, "cutover-reset") == {"sent": 2, "failed": 0, "unknown": 1}


def test_the_transport_reconnects_after_the_server_drops_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": port}
    conn["extra"] = {"disable_ssl": True, "disable_tls": True, "from_email": FROM_ADDRESS, "timeout": 5}
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_RESTART", json.dumps(conn))
    who = [notify.Recipient(POOL, f"s{i}", f"s{i}@example.com") for i in range(3)]
    with notify.SmtpTransport("smtp_restart") as transport:
        with SmtpSink(port=port) as first:
            transport.send(FROM_ADDRESS, who[0].email, notify.render_email(who[0], content(), "c"))
            assert len(first.messages) == 1
        with SmtpSink(port=port) as second:
            with pytest.raises(notify.TransientSendError) as lost:
                transport.send(FROM_ADDRESS, who[1].email, notify.render_email(who[1], content(), "c"))
            assert lost.value.code is None
            for user in who[1:]:
                transport.send(FROM_ADDRESS, user.email, notify.render_email(user, content(), "c"))
            assert [m.recipients for m in second.messages] == [["s1@example.com"], ["s2@example.com"]]


class _RefusingSender:
    """An aiosmtpd handler for a server that does not let us send as our From address (a 5xx on MAIL FROM)."""

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        return "553 5.7.1 sender address not allowed"


def test_a_refused_sender_stops_the_campaign_instead_of_failing_every_user(
    ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiosmtpd.controller import Controller

    server = Controller(_RefusingSender(), hostname="127.0.0.1", port=free_port())
    server.start()
    try:
        conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": server.port}
        conn["extra"] = {"disable_ssl": True, "disable_tls": True, "from_email": FROM_ADDRESS, "timeout": 5}
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(conn))
        ledger = L.Ledger(ledger_url).create_schema()
        seed(ledger, {"sub": "a"}, {"sub": "b"})
        with pytest.raises(notify.EmailConfigError, match="refuses our From address"):
            notify.send_emails_for_subs(params(), RUN, ["a", "b"], label="t", ledger=ledger, retry=FAST)
    finally:
        server.stop()
    assert ledger.email_sends(POOL, "cutover-reset") == []  # the claim was given back: nothing went out


def test_a_from_address_that_is_not_an_address_is_refused_before_sending() -> None:
    with pytest.raises(notify.EmailConfigError, match="not an email address"):
        notify.EmailContent.from_params(params(email_from="IT department"), default_from=None)


# -- preview, skip, batches -------------------------------------------------------------------------------------


def test_preview_renders_samples_into_the_run_folder_and_sends_nothing(clean_stack: Any, ledger_url: str) -> None:
    ledger = L.Ledger(ledger_url).create_schema()
    seed(ledger, *({"sub": f"p{i}", "first_name": f"P{i}"} for i in range(5)), {"sub": "off", "enabled": False})
    run_id = "preview_run_1"

    form = params(email_mode="preview", preview_count=3)
    subs = [f"p{i}" for i in range(5)] + ["off"]

    out = notify.send_emails_for_subs(form, run_id, subs, label="batch-0000", ledger=ledger)

    assert (out["previewed"], out["eligible"], out["sent"]) == (3, 5, 0)
    assert out["ineligible"] == {"disabled": 1}
    assert clean_stack.smtp.messages == []
    assert ledger.email_sends(POOL) == []
    files = sorted((run_dir(run_id) / "emails" / "preview").iterdir(), key=lambda p: p.name)
    assert [f.name for f in files] == ["batch-0000-000.eml", "batch-0000-001.eml", "batch-0000-002.eml"]
    msg = message_from_bytes(files[0].read_bytes(), policy=email_policy.default)
    assert msg["To"] == "p0@example.com" and msg["From"] == FROM_ADDRESS
    assert "Hello P0," in body(msg, "plain")


def _write_batch(run_id: str, batch: int, subs: list[str]) -> None:
    folder = run_dir(run_id) / "identities"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"batch-{batch:04d}.jsonl").open("w") as fh:
        for sub in subs:
            fh.write(json.dumps({"sub": sub, "email": f"{sub}@example.com"}) + "\n")


def test_the_mapped_stage_sends_to_its_batch_only(clean_stack: Any, ledger_url: str) -> None:
    ledger = L.Ledger(ledger_url).create_schema()
    seed(ledger, *({"sub": f"b{i}"} for i in range(6)))
    run_id = "batch_run_1"
    _write_batch(run_id, 0, ["b0", "b1"])
    _write_batch(run_id, 1, ["b2", "b3", "b4"])
    _write_batch(run_id, 2, ["b5"])

    out = notify.send_batch_emails(params(), run_id, 1)

    assert out["label"] == "batch-0001" and out["sent"] == 3
    assert received(clean_stack.smtp) == Counter({f"b{i}@example.com": 1 for i in (2, 3, 4)})

    with pytest.raises(FileNotFoundError, match="batch 0007"):
        notify.send_batch_emails(params(), run_id, "batch-0007")


def test_preview_samples_are_shared_over_the_batches(clean_stack: Any, ledger_url: str) -> None:
    ledger = L.Ledger(ledger_url).create_schema()
    seed(ledger, *({"sub": f"s{i}"} for i in range(9)))
    run_id = "preview_share_1"
    for batch in range(3):
        _write_batch(run_id, batch, [f"s{3 * batch + i}" for i in range(3)])
    form = params(email_mode="preview", preview_count=5)

    previewed = [notify.send_batch_emails(form, run_id, b)["previewed"] for b in range(3)]

    assert previewed == [2, 2, 1]
    assert len(list((run_dir(run_id) / "emails" / "preview").iterdir())) == 5
    assert clean_stack.smtp.messages == []


def test_a_dry_run_or_emails_off_sends_nothing(clean_stack: Any, ledger_url: str) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    ledger = L.Ledger(ledger_url).create_schema()
    seed(ledger, {"sub": "x"})
    _write_batch("skip_run", 0, ["x"])
    for form in (params(stop_after="dry_run"), params(stop_after="import"), params(email_mode="off")):
        with pytest.raises(AirflowSkipException):
            notify.send_batch_emails(form, "skip_run", 0)
    off = notify.send_emails_for_subs(params(email_mode="off"), "skip_run", ["x"], label="r", ledger=ledger)
    assert off["sent"] == 0 and off["ineligible"] == {"email_mode_off": 1}
    assert clean_stack.smtp.messages == []
    assert ledger.email_sends(POOL) == []


def test_batch_ids_and_summaries() -> None:
    assert [notify.batch_number(b) for b in (3, "0003", "batch-0003", " 12 ")] == [3, 3, 3, 12]
    with pytest.raises(ValueError, match="not a batch id"):
        notify.batch_number("batch-x")
    total = notify.summarize(
        [
            {"sent": 2, "eligible": 3, "ineligible": {"disabled": 1}},
            None,
            {"sent": 1, "unknown": 1, "ineligible": {"disabled": 2, "federated": 1}},
        ]
    )
    assert total["sent"] == 3 and total["unknown"] == 1 and total["eligible"] == 3
    assert total["ineligible"] == {"disabled": 3, "federated": 1}


# -- Avnology recovery mode -------------------------------------------------------------------------------------


def _production_state(stack: Any) -> dict[str, Any]:
    response = httpx.get(f"{stack.avnology_url}/_emulator/state", params={"tenant": "production"}, timeout=10)
    response.raise_for_status()
    return response.json()


def _create_identities(stack: Any, emails: list[str]) -> dict[str, str]:
    from cognito_migration.avnology import AvnologyHook

    hook = AvnologyHook("avnology_production")
    try:
        create = hook.client.create_identity
        return {e: create({"email": e}, idempotency_key=f"test-{e}")["id"] for e in emails}
    finally:
        hook.close()


def test_avnology_recovery_mode_starts_one_flow_per_eligible_user(clean_stack: Any, ledger_url: str) -> None:
    ids = _create_identities(clean_stack, ["r1@example.com", "r2@example.com", "r3@example.com"])
    ledger = L.Ledger(ledger_url).create_schema()
    seed(ledger, {"sub": "r1"}, {"sub": "r2"}, {"sub": "r3", "federated": True})
    form = params(email_mode="avnology_recovery", emails_per_second=20)

    out = notify.send_emails_for_subs(form, RUN, ["r1", "r2", "r3"], label="t", ledger=ledger, retry=FAST)
    again = notify.send_emails_for_subs(form, RUN, ["r1", "r2", "r3"], label="t", ledger=ledger, retry=FAST)

    assert out["sent"] == 2 and out["ineligible"] == {"federated": 1}
    assert again["sent"] == 0 and again["ineligible"] == {"already_sent": 2, "federated": 1}
    codes = _production_state(clean_stack)["recovery_codes_sent"]
    assert Counter(c["email"] for c in codes) == Counter({"r1@example.com": 1, "r2@example.com": 1})
    assert {c["identity_id"] for c in codes} == {ids["r1@example.com"], ids["r2@example.com"]}
    assert clean_stack.smtp.messages == []


# -- secrets stay out of logs -----------------------------------------------------------------------------------


def test_links_addresses_and_codes_never_reach_the_logs(
    clean_stack: Any, ledger_url: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    _create_identities(clean_stack, ["rc1@example.com", "rc2@example.com"])
    ledger = L.Ledger(ledger_url).create_schema()
    seed(ledger, *({"sub": f"lg{i}"} for i in range(4)), {"sub": "rc1"}, {"sub": "rc2"}, {"sub": "bad"})
    clean_stack.smtp.reject_recipient("bad@example.com", code=550)
    clean_stack.smtp.refuse_next(1)
    caplog.set_level(logging.DEBUG)

    send_subs = ["lg0", "lg1", "bad"]
    notify.send_emails_for_subs(params(), RUN, send_subs, label="t", ledger=ledger, retry=FAST)
    notify.send_emails_for_subs(
        params(email_mode="preview"), "log_run", ["lg2", "lg3"], label="batch-0000", ledger=ledger
    )
    notify.send_emails_for_subs(
        params(email_mode="avnology_recovery"), RUN, ["rc1", "rc2"], label="t", ledger=ledger, retry=FAST
    )

    sent = clean_stack.smtp.messages
    codes = [c["code"] for c in _production_state(clean_stack)["recovery_codes_sent"]]
    assert len(sent) == 2 and len(codes) == 2
    form = notify.EmailContent.from_params(params(), default_from=FROM_ADDRESS)
    mailed = ("lg0", "lg1", "lg2", "lg3", "bad")
    secrets = [notify.reset_link(form, notify.Recipient(POOL, s, f"{s}@example.com")) for s in mailed]
    secrets += codes + [f"{s}@example.com" for s in (*mailed, "rc1", "rc2")]
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name != "mail.log")
    captured = capfd.readouterr()
    output = ours + captured.out + captured.err
    assert "user bad failed permanently" in ours  # the log names the sub, and only the sub
    leaked = [s for s in secrets if s in output]
    assert leaked == []
    assert "recovery=1" not in output


def test_sending_keeps_to_the_configured_rate(clean_stack: Any, ledger_url: str) -> None:
    ledger = L.Ledger(ledger_url).create_schema()
    subs = [f"rate{i}" for i in range(45)]
    seed(ledger, *({"sub": s} for s in subs))
    rate = 50.0  # a bucket of rate/10 = 5 tokens: the first 5 go at once, the next 40 at 50/s

    started = time.monotonic()
    out = notify.send_emails_for_subs(params(emails_per_second=rate), RUN, subs, label="t", ledger=ledger)
    elapsed = time.monotonic() - started

    assert out["sent"] == 45 and len(clean_stack.smtp.messages) == 45
    assert elapsed >= (45 - 5) / rate * 0.95
    assert elapsed < 45 / rate * 3  # and not far slower than the rate either


def test_concurrent_campaigns_on_the_same_users_send_each_email_once(clean_stack: Any, ledger_url: str) -> None:
    """Two workers (say the migration and the reconciliation) racing over the same users: the claim decides."""
    ledger = L.Ledger(ledger_url).create_schema()
    subs = [f"race{i}" for i in range(20)]
    seed(ledger, *({"sub": s} for s in subs))
    results: list[dict[str, Any]] = []

    def worker() -> None:
        results.append(notify.send_emails_for_subs(params(), RUN, subs, label="t", ledger=ledger, retry=FAST))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert received(clean_stack.smtp) == Counter({f"{s}@example.com": 1 for s in subs})
    assert sum(r["sent"] for r in results) == 20


def test_an_outcome_is_recorded_even_when_the_claim_it_travels_with_loses_a_race(ledger_url: str) -> None:
    ledger = L.Ledger(ledger_url).create_schema()
    seed(ledger, {"sub": "a"}, {"sub": "b"})
    assert ledger.settle_and_claim_email(POOL, "c", claim="a", run_id=RUN)
    assert ledger.claim_email(POOL, "b", "c", run_id="another-worker")

    won = ledger.settle_and_claim_email(POOL, "c", settle=[L.EmailOutcome("a", L.EMAIL_SENT)], claim="b")

    assert won is False
    rows = {r["sub"]: r for r in ledger.email_sends(POOL, "c")}
    assert rows["a"]["status"] == L.EMAIL_SENT and rows["a"]["sent_at"] is not None
    assert rows["b"]["status"] == L.EMAIL_CLAIMED and rows["b"]["run_id"] == "another-worker"
    with pytest.raises(ValueError, match="sent or failed"):
        L.EmailOutcome("a", L.EMAIL_CLAIMED)
