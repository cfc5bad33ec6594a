"""Reset emails: the "set your new password" campaign, at most one email per user per campaign.

Cognito exports no password hashes, so every imported user must set a new password, and this email is the
only part of the migration most users ever see. Sending it twice, or to the wrong person, is the worst visible
failure of the project, so the order of operations is fixed (see ``docs/email-guarantee.md``):

1. eligibility comes from the ledger, never from a file: imported, enabled, not federated, not migrated by the
   password hook, not already claimed in this campaign;
2. the user is *claimed* in the ledger (an atomic insert) before anything goes out;
3. the claim becomes ``sent`` only after the server accepted the message, or ``failed`` on a permanent refusal;
4. a claim whose outcome is not known (a crash, or a connection lost while waiting for the server's answer) stays
   ``claimed``, is reported as ``unknown`` and is never re-sent by the pipeline.

Modes: ``preview`` renders sample messages into the run folder and sends nothing; ``send`` emails over SMTP
(connection ``smtp_default``); ``avnology_recovery`` starts Avnology's public recovery flow per user, and
Avnology emails its own code. Recovery links and codes never reach a log: log lines carry subs and counts.
"""

from __future__ import annotations

import contextlib
import email.policy
import functools
import logging
import random
import re
import smtplib
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.charset import QP, Charset
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import formataddr, formatdate, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import quote

import jinja2

from cognito_migration import config
from cognito_migration import ledger as L
from cognito_migration.ratelimit import RateLimiter

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from cognito_migration.avnology import AvnologyClient
    from cognito_migration.params import MigrationParams

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).with_name("templates")
HTML_TEMPLATE = "reset_email.html.j2"
TEXT_TEMPLATE = "reset_email.txt.j2"

MODE_PREVIEW = "preview"
MODE_SEND = "send"
MODE_RECOVERY = "avnology_recovery"
MODE_OFF = "off"

# Message-IDs are derived from (pool, sub, campaign), so an operator can look an `unknown` user up in the
# provider's delivery logs and learn whether that one message really went out.
_MESSAGE_ID_NAMESPACE = uuid.UUID("6f1c43be-5a37-4c52-9a57-3cf0d6a0f0d4")
_BATCH_NAME = re.compile(r"^(?:batch-)?(\d+)$")


# -- errors -------------------------------------------------------------------------------------------------


class EmailError(RuntimeError):
    """Base class of the campaign's errors."""


class EmailConfigError(EmailError):
    """The campaign cannot start: no From address, no SMTP connection, credentials refused, bad link template."""


class SendError(EmailError):
    """One delivery attempt did not go through. ``reason`` (stored in the ledger) may quote the server's reply,
    which can name the recipient, so ``str()`` of the exception carries only the code and the SMTP step."""

    def __init__(self, code: int | None, step: str, reason: str, *, retry_after: float | None = None) -> None:
        self.code = code
        self.step = step
        self.reason = reason[:1000]
        self.retry_after = retry_after
        super().__init__(f"{type(self).__name__}: {code if code is not None else 'no reply'} at {step}")


class TransientSendError(SendError):
    """Certainly not delivered, worth retrying: a 4xx reply, or a connection failure before the end of the data."""


class PermanentSendError(SendError):
    """Certainly not delivered, and retrying will not help: a 5xx reply. Recorded as failed with the reason."""


class DeliveryUnknownError(SendError):
    """The whole message was handed over but the answer never came: the server may have accepted it."""


class CampaignAborted(EmailError):
    """The server refused several users in a row even after retries: it is down or throttling us hard."""


class CampaignIncomplete(EmailError):
    """Some users could not be sent for transient reasons; their claims were released for the next attempt."""


# -- recipients, content, rendering ----------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """An eligible user, as the ledger knows them. The address stays out of ``repr`` (it ends up in logs)."""

    user_pool_id: str
    sub: str
    email: str = field(repr=False)
    first_name: str | None = field(default=None, repr=False)
    avnology_id: str | None = None


@dataclass(frozen=True)
class EmailContent:
    """What every message of a campaign shares, from the trigger form (plus the connection's From default)."""

    subject: str
    from_address: str
    reply_to: str
    link_template: str
    hosted_base_url: str

    def __post_init__(self) -> None:
        for name in ("subject", "from_address", "reply_to"):
            if any(c in getattr(self, name) for c in "\r\n"):
                raise EmailConfigError(f"the email's {name} may not contain line breaks (header injection)")
        for name in ("from_address", "reply_to"):
            value = getattr(self, name)
            if value and "@" not in parseaddr(value)[1]:
                raise EmailConfigError(f"the {name} {value!r} is not an email address")

    @property
    def envelope_from(self) -> str:
        """The bare address for SMTP's MAIL FROM (the header may carry a display name)."""
        return parseaddr(self.from_address)[1]

    @classmethod
    def from_params(cls, params: MigrationParams, *, default_from: str | None) -> EmailContent:
        from_address = params.email_from or default_from or ""
        if not from_address:
            raise EmailConfigError(
                f"no From address: set the form's email_from or the `from_email` extra of connection "
                f"{config.SMTP_CONN_ID!r}"
            )
        return cls(
            subject=params.email_subject,
            from_address=from_address,
            reply_to=params.email_reply_to or "",
            link_template=params.reset_link_template,
            hosted_base_url=params.hosted_base_url,
        )


def reset_link(content: EmailContent, recipient: Recipient) -> str:
    """The personal link to the tenant's hosted page, from the form's ``reset_link_template``."""
    if "{avnology_id}" in content.link_template and not recipient.avnology_id:
        raise EmailConfigError(f"reset_link_template uses {{avnology_id}} but user {recipient.sub} has no usr_ id")
    return content.link_template.format(
        hosted_base_url=content.hosted_base_url.rstrip("/"),
        email_urlencoded=quote(recipient.email, safe=""),
        avnology_id=quote(recipient.avnology_id or "", safe=""),
    )


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def message_id(recipient: Recipient, campaign: str, from_address: str) -> str:
    domain = parseaddr(from_address)[1].rpartition("@")[2] or "localhost"
    stable = uuid.uuid5(_MESSAGE_ID_NAMESPACE, f"{recipient.user_pool_id}:{recipient.sub}:{campaign}")
    return f"<{stable}@{domain}>"


def render_email(recipient: Recipient, content: EmailContent, campaign: str) -> bytes:
    """The full message as sent (plain text + HTML alternative, CRLF lines), personalised with the first name.

    Built with the classic ``email.mime`` classes rather than ``EmailMessage``: the modern header parser cost
    about 3 ms of CPU per message, most of the sender's budget at 100 messages/s. Header values are checked for
    line breaks in :class:`EmailContent` (the classic classes do not refuse them), and non-ASCII is encoded.
    """
    if any(c in recipient.email for c in "\r\n") or "@" not in recipient.email:
        raise PermanentSendError(None, "address", f"user {recipient.sub} has no usable email address")
    context = {
        "first_name": (recipient.first_name or "").strip() or None,
        "reset_link": reset_link(content, recipient),
        "subject": content.subject,
        "reply_to": content.reply_to or None,
    }
    env = _templates()
    msg = MIMEMultipart("alternative")
    msg["Subject"] = _header_text(content.subject)
    msg["From"] = _header_address(content.from_address)
    msg["To"] = recipient.email
    if content.reply_to:
        msg["Reply-To"] = _header_address(content.reply_to)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id(recipient, campaign, content.from_address)
    msg.attach(_text_part(env.get_template(TEXT_TEMPLATE).render(context), "plain"))
    msg.attach(_text_part(env.get_template(HTML_TEMPLATE).render(context), "html"))
    return msg.as_bytes(policy=_WIRE_POLICY)


def _utf8_quoted_printable() -> Charset:
    # Quoted-printable keeps non-ASCII names readable in the source and deliverable without 8BITMIME.
    charset = Charset("utf-8")
    charset.body_encoding = QP
    return charset


_UTF8_QP = _utf8_quoted_printable()
_WIRE_POLICY = email.policy.compat32.clone(linesep="\r\n")


def _text_part(text: str, subtype: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype)
    part.set_payload(text, _UTF8_QP)
    return part


def _header_text(value: str) -> str:
    return value if value.isascii() else Header(value, "utf-8").encode()


def _header_address(value: str) -> str:
    name, address = parseaddr(value)
    return formataddr((name, address), charset="utf-8")


# -- SMTP transport -------------------------------------------------------------------------------------------


class SmtpTransport:
    """One SMTP connection, opened through the smtp provider's ``SmtpHook``, kept for a batch, re-opened after a drop.

    The hook owns the connection (host, port, SSL/STARTTLS, login or OAuth2, timeout, all from ``smtp_default``).
    Its ``send_email_smtp`` is not used: it retries every exception, 5xx included, inside one call, and cannot
    tell "refused" from "maybe delivered"; both break at-most-once. So the transaction is driven step by step on
    the hook's smtplib client (reached as ``_smtp_client``, as the hook's own ``test_connection`` does), and each
    reply is classified: 4xx → transient, 5xx → permanent, lost after the end of the data → unknown.
    """

    def __init__(self, conn_id: str = config.SMTP_CONN_ID) -> None:
        self.conn_id = conn_id
        self._hook: Any = None
        self._client: smtplib.SMTP | None = None

    def __repr__(self) -> str:
        return f"SmtpTransport(conn_id={self.conn_id!r}, connected={self._client is not None})"

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        client, self._client, self._hook = self._client, None, None
        if client is None:
            return
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()

    def send(self, sender: str, recipient: str, message: bytes) -> None:
        """Deliver one message or raise a :class:`SendError` subclass saying whether it may have arrived."""
        data = _smtp_data(message)
        client = self._connect()
        step = "MAIL FROM"
        try:
            self._expect(client, client.mail(sender), (250,), step)
            step = "RCPT TO"
            self._expect(client, client.rcpt(recipient), (250, 251), step)
            step = "DATA"
            self._expect(client, client.docmd("DATA"), (354,), step)
            step = "message"
            client.send(data)
        except OSError as exc:  # smtplib's errors are OSErrors too; a SendError is not
            self.close()
            raise TransientSendError(None, step, f"connection lost before the end of the message: {exc!r}") from None
        try:
            code, reply = client.getreply()
        except OSError as exc:
            self.close()
            raise DeliveryUnknownError(
                None, "end of DATA", f"connection lost waiting for the answer to the message: {exc!r}"
            ) from None
        if code != 250:
            self._refused(client, code, reply, "end of DATA")

    def _connect(self) -> smtplib.SMTP:
        if self._client is not None:
            return self._client
        from airflow.providers.common.compat.sdk import AirflowException, AirflowNotFoundException
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        hook = SmtpHook(smtp_conn_id=self.conn_id)
        try:
            hook.get_connection(self.conn_id)
        except AirflowNotFoundException:
            raise EmailConfigError(f"Airflow connection {self.conn_id!r} is not defined") from None
        try:
            hook.get_conn()
            client = cast("smtplib.SMTP", hook._smtp_client)  # the sync client, as after get_conn()
            client.ehlo_or_helo_if_needed()
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise TransientSendError(exc.smtp_code, "connect", f"server busy at connect: {exc!r}") from None
            raise EmailConfigError(
                f"SMTP server of {self.conn_id!r} refused the session ({exc.smtp_code}): check host, TLS and login"
            ) from None
        except (OSError, AirflowException) as exc:
            raise TransientSendError(None, "connect", f"cannot connect to {self.conn_id!r}: {exc!r}") from None
        self._hook, self._client = hook, client
        return client

    def _expect(self, client: smtplib.SMTP, reply: tuple[int, bytes], ok: tuple[int, ...], step: str) -> None:
        code, text = reply
        if code not in ok:
            self._refused(client, code, text, step)

    def _refused(self, client: smtplib.SMTP, code: int, text: bytes, step: str) -> None:
        reason = f"{code} {text.decode('utf-8', 'replace')} (at {step})"
        if code == 421 or not 400 <= code < 600:  # closing, or a reply out of protocol: start over
            self.close()
        else:
            try:
                client.rset()
            except (OSError, smtplib.SMTPException):
                self.close()
        if 500 <= code < 600 and step == "MAIL FROM":
            # A refused sender is refused for every user: stop, rather than mark the whole pool failed.
            raise EmailConfigError(f"the SMTP server of {self.conn_id!r} refuses our From address ({code})")
        if 500 <= code < 600:
            raise PermanentSendError(code, step, reason)
        raise TransientSendError(code, step, reason)


def _smtp_data(message: bytes) -> bytes:
    """The DATA payload: leading dots doubled, ended by ``.``: what smtplib's ``data()`` sends."""
    raw = re.sub(rb"(?m)^\.", b"..", message)
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    return raw + b".\r\n"


def connection_from_email(conn_id: str = config.SMTP_CONN_ID) -> str | None:
    """The connection's ``from_email`` extra (the From default), read without opening an SMTP session."""
    from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook

    try:
        return BaseHook.get_connection(conn_id).extra_dejson.get("from_email") or None
    except AirflowNotFoundException:
        return None


# -- senders: how one user is reached ---------------------------------------------------------------------------


class Sender(Protocol):
    def deliver(self, recipient: Recipient) -> None:
        """Reach the user once, or raise a :class:`SendError` subclass."""


class SmtpSender:
    """Our own email over SMTP, rendered from the templates."""

    def __init__(self, transport: SmtpTransport, content: EmailContent, campaign: str) -> None:
        self.transport = transport
        self.content = content
        self.campaign = campaign

    def deliver(self, recipient: Recipient) -> None:
        message = render_email(recipient, self.content, self.campaign)
        self.transport.send(self.content.envelope_from, recipient.email, message)


class RecoverySender:
    """Avnology's public recovery flow per user: Avnology emails its own 6-digit code, we never see it.

    The submit is the delivery. Its answers are classified like SMTP replies: 429 (throttled) and 503 → retry
    later; a 4xx on the submit → failed for this user; 401/403 → stop the campaign; no answer or another 5xx
    after the submit went out → unknown, since Avnology may have sent the code. A failure while creating the flow
    sent nothing and is retried.
    """

    def __init__(self, client: AvnologyClient) -> None:
        self.client = client

    def deliver(self, recipient: Recipient) -> None:
        from cognito_migration.avnology import AvnologyAuthError, AvnologyError, AvnologyRateLimited

        try:
            self.client.start_recovery(recipient.email)
        except AvnologyAuthError as exc:
            raise EmailConfigError(f"Avnology refused the recovery flow ({exc.status} {exc.code})") from None
        except AvnologyRateLimited as exc:
            raise TransientSendError(429, "recovery", str(exc), retry_after=exc.retry_after) from None
        except AvnologyError as exc:
            step = "recovery submit" if exc.path.endswith(":submit") else "recovery flow"
            if step == "recovery flow" or exc.status == 503:
                raise TransientSendError(exc.status, step, str(exc)) from None
            if exc.status is None or exc.status >= 500:
                raise DeliveryUnknownError(exc.status, step, str(exc)) from None
            raise PermanentSendError(exc.status, step, str(exc)) from None


@contextlib.contextmanager
def recovery_sender(conn_id: str = config.AVNOLOGY_PRODUCTION_CONN_ID) -> Iterator[RecoverySender]:
    """A :class:`RecoverySender` on the production tenant's connection, closed afterwards."""
    from cognito_migration.avnology import AvnologyHook

    hook = AvnologyHook(conn_id)
    try:
        yield RecoverySender(hook.client)
    finally:
        hook.close()


# -- the campaign ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for transient refusals (4xx, connection errors), and when to give up on the whole batch."""

    attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    abort_after_deferred: int = 3

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential backoff with jitter (parallel workers do not retry in lockstep), at least the server's
        ``retry_after`` when it gave one, never more than ``max_delay_s``."""
        backoff = self.base_delay_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
        return min(self.max_delay_s, max(backoff, retry_after or 0.0))


@dataclass
class CampaignResult:
    """Counts for one batch (or one reconciliation list): small enough for XCom, no personal data."""

    label: str
    mode: str
    campaign: str
    considered: int = 0
    eligible: int = 0
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    unknown: int = 0
    previewed: int = 0
    retries: int = 0
    ineligible: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    def as_xcom(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "mode": self.mode,
            "campaign": self.campaign,
            "considered": self.considered,
            "eligible": self.eligible,
            "sent": self.sent,
            "failed": self.failed,
            "deferred": self.deferred,
            "unknown": self.unknown,
            "previewed": self.previewed,
            "retries": self.retries,
            "ineligible": dict(sorted(self.ineligible.items())),
            "elapsed_s": round(self.elapsed_s, 3),
        }


COUNT_KEYS = ("considered", "eligible", "sent", "failed", "deferred", "unknown", "previewed", "retries")


def summarize(outputs: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Add up the XCom dicts of the mapped copies, ineligibility reasons included (for the report)."""
    total: dict[str, Any] = dict.fromkeys(COUNT_KEYS, 0)
    reasons: Counter[str] = Counter()
    for out in outputs:
        if not out:
            continue
        for key in COUNT_KEYS:
            total[key] += int(out.get(key, 0) or 0)
        reasons.update(out.get("ineligible") or {})
    total["ineligible"] = dict(sorted(reasons.items()))
    return total


def campaign_status(ledger: L.Ledger, user_pool_id: str, campaign: str) -> dict[str, int]:
    """Ledger-wide outcome of a campaign across all runs: sent, failed, and ``unknown`` (claimed, no outcome)."""
    counts = Counter(row["status"] for row in ledger.email_sends(user_pool_id, campaign))
    return {"sent": counts[L.EMAIL_SENT], "failed": counts[L.EMAIL_FAILED], "unknown": counts[L.EMAIL_CLAIMED]}


_SEND_STATE_REASON = {L.EMAIL_SENT: "already_sent", L.EMAIL_FAILED: "already_failed", L.EMAIL_CLAIMED: "unknown"}


def ineligibility(user: Mapping[str, Any] | None, send_status: str | None) -> str | None:
    """Why this user gets no email in this campaign, or None if they should get one.

    The campaign's own record comes first: a user already reached (or possibly reached) is reported as such
    even if they have since been disabled.
    """
    if send_status is not None:
        return _SEND_STATE_REASON.get(send_status, "unknown")
    if user is None:
        return "not_in_ledger"
    if user["status"] not in L.SUCCESS_STATUSES:
        return "not_imported"
    if user.get("deleted_in_cognito_at"):
        return "deleted_in_cognito"
    if user.get("federated"):
        return "federated"
    if not user.get("cognito_enabled"):  # None (never seen enabled) counts as not enabled: no email on a guess
        return "disabled"
    if not user.get("email"):
        return "no_email"
    if user.get("hook_migrated_at"):
        return "hook_migrated"
    return None


def eligible_recipients(
    ledger: L.Ledger, user_pool_id: str, subs: Iterable[str], campaign: str
) -> tuple[list[Recipient], Counter[str]]:
    """Split ``subs`` into the users to email and a count of the others by reason (see :func:`ineligibility`)."""
    wanted = list(dict.fromkeys(subs))
    users = ledger.get_many(user_pool_id, wanted)
    sends = {row["sub"]: row["status"] for row in ledger.email_sends(user_pool_id, campaign, subs=wanted)}
    recipients: list[Recipient] = []
    reasons: Counter[str] = Counter()
    for sub in wanted:
        user = users.get(sub)
        reason = ineligibility(user, sends.get(sub))
        if reason:
            reasons[reason] += 1
            continue
        assert user is not None
        recipients.append(Recipient(user_pool_id, sub, user["email"], user.get("first_name"), user.get("avnology_id")))
    return recipients, reasons


def run_campaign(
    ledger: L.Ledger,
    recipients: Sequence[Recipient],
    *,
    campaign: str,
    run_id: str,
    sender: Sender,
    limiter: RateLimiter,
    result: CampaignResult,
    retry: RetryPolicy | None = None,
) -> CampaignResult:
    """Claim, send, record, one user at a time, throttled; see the module docstring for the guarantee.

    The outcome of one email is written in the same transaction as the claim of the next (one commit per
    email). Until then a sent email is known only in memory: a ``kill -9`` in that gap leaves its claim open,
    so it reports as unknown and is never re-sent, which errs on the safe side.
    """
    retry = retry or RetryPolicy()
    pools = {r.user_pool_id for r in recipients}
    if len(pools) > 1:
        raise ValueError(f"one campaign run covers one user pool, got {sorted(pools)}")
    pool = next(iter(pools), "")
    deferred_in_a_row = 0
    pending: list[L.EmailOutcome] = []
    try:
        for recipient in recipients:
            limiter.acquire()
            claimed = ledger.settle_and_claim_email(pool, campaign, settle=pending, claim=recipient.sub, run_id=run_id)
            pending = []
            if not claimed:
                result.ineligible["claimed_concurrently"] += 1  # another worker took them after our eligibility read
                continue
            outcome, deferred = _deliver_claimed(ledger, recipient, campaign, sender, limiter, retry, result)
            if outcome is not None:
                pending.append(outcome)
            if deferred is None:
                deferred_in_a_row = 0
                continue
            deferred_in_a_row += 1
            if deferred_in_a_row >= retry.abort_after_deferred:
                raise CampaignAborted(
                    f"campaign {campaign!r} ({result.label}): {deferred_in_a_row} users in a row were still refused "
                    f"after {retry.attempts} attempts each (last: {deferred}); stopped after {result.sent} sent. "
                    f"Nothing of the rest was claimed, so a retry of this task picks up where this one stopped."
                )
    finally:
        if pending:
            try:
                ledger.settle_and_claim_email(pool, campaign, settle=pending)
            except Exception as exc:  # the claims stay open and report as unknown: never re-sent
                log.error("could not record %d email outcomes (%s); they will show as unknown", len(pending), exc)
    return result


def _deliver_claimed(
    ledger: L.Ledger,
    recipient: Recipient,
    campaign: str,
    sender: Sender,
    limiter: RateLimiter,
    retry: RetryPolicy,
    result: CampaignResult,
) -> tuple[L.EmailOutcome | None, TransientSendError | None]:
    """Deliver to a claimed user, with retries. Returns the outcome to record (sent or failed; None when the
    claim stays open as unknown or was released), and the last error when the user had to be deferred."""
    pool, sub = recipient.user_pool_id, recipient.sub
    may_have_arrived = False
    try:
        for attempt in range(1, retry.attempts + 1):
            try:
                may_have_arrived = True
                sender.deliver(recipient)
            except EmailConfigError:
                may_have_arrived = False
                raise
            except TransientSendError as exc:
                may_have_arrived = False
                if attempt == retry.attempts:
                    ledger.release_email(pool, sub, campaign)
                    result.deferred += 1
                    log.warning("user %s deferred after %d attempts (%s)", sub, attempt, exc)
                    return None, exc
                result.retries += 1
                time.sleep(retry.delay(attempt, exc.retry_after))
                limiter.acquire()
            except PermanentSendError as exc:
                result.failed += 1
                log.warning("user %s failed permanently (%s)", sub, exc)
                return L.EmailOutcome(sub, L.EMAIL_FAILED, exc.reason), None
            except DeliveryUnknownError as exc:
                result.unknown += 1  # the claim stays: never re-sent without a person deciding
                log.error("user %s: delivery unknown (%s); left claimed, will not be re-sent", sub, exc)
                return None, None
            else:
                result.sent += 1
                return L.EmailOutcome(sub, L.EMAIL_SENT), None
    except BaseException:
        # Killed or crashed mid-user. A claim whose message certainly did not go out is given back; one whose
        # message may have gone out stays claimed: unknown.
        if not may_have_arrived:
            try:
                ledger.release_email(pool, sub, campaign)
            except Exception as exc:  # the original error matters more; the claim then shows as unknown
                log.error("user %s: could not release the claim after an error (%s)", sub, type(exc).__name__)
        raise
    raise AssertionError("unreachable: the retry loop always returns")


def sending_limiter(rate_per_s: float) -> RateLimiter:
    """The provider's sending rate as a token bucket holding a tenth of a second of messages.

    With a bucket of one, every slow message (a busy worker, a slow server answer) is time lost for good and the
    campaign ends well under the rate; a tenth of a second lets it catch up, and bounds any one-second window
    at 1.1 x the rate, right after a stall, never more.
    """
    return RateLimiter(rate_per_s, max(1.0, rate_per_s / 10))


def write_previews(
    recipients: Sequence[Recipient],
    content: EmailContent,
    campaign: str,
    out_dir: ObjectStoragePath,
    *,
    limit: int,
    prefix: str,
) -> int:
    """Render up to ``limit`` real messages as ``.eml`` files (they hold addresses and links: private folder)."""
    from cognito_migration.storage import make_private_dir

    chosen = list(recipients)[: max(0, limit)]
    if not chosen:
        return 0
    make_private_dir(out_dir)
    for index, recipient in enumerate(chosen):
        with (out_dir / f"{prefix}-{index:03d}.eml").open("wb") as fh:
            fh.write(render_email(recipient, content, campaign))
    return len(chosen)


# -- the stage, as the DAGs call it ---------------------------------------------------------------------------


def batch_number(batch_id: int | str) -> int:
    """Batch ids travel as ints (``3``) or names (``"0003"``, ``"batch-0003"``)."""
    match = _BATCH_NAME.match(str(batch_id).strip())
    if not match:
        raise ValueError(f"not a batch id: {batch_id!r} (expected 3, '0003' or 'batch-0003')")
    return int(match.group(1))


def send_batch_emails(params: MigrationParams, run_id: str, batch_id: int | str) -> dict[str, Any]:
    """The mapped stage of ``cognito_migration``: the users of one import batch (``identities/batch-NNNN.jsonl``).

    Skipped when the run stops before emails or the form says ``off``. In preview mode, the form's
    ``preview_count`` samples are shared out over the run's batches, so the whole run renders about that many.
    """
    from airflow.sdk.exceptions import AirflowSkipException

    from cognito_migration.params import skip_unless_stage
    from cognito_migration.storage import iter_jsonl, run_dir

    skip_unless_stage(params, "emails")
    if params.email_mode == MODE_OFF:
        raise AirflowSkipException("email_mode is 'off'")
    batch = batch_number(batch_id)
    identities = run_dir(run_id) / "identities"
    path = identities / f"batch-{batch:04d}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"batch {batch:04d} of run {run_id}: {path} is missing (did convert run?)")
    subs = [line["sub"] for line in iter_jsonl(path)]
    preview_limit = _preview_share(params.preview_count, identities, batch)
    return send_emails_for_subs(params, run_id, subs, label=f"batch-{batch:04d}", preview_limit=preview_limit)


def send_emails_for_subs(
    params: MigrationParams,
    run_id: str,
    subs: Iterable[str],
    *,
    label: str,
    preview_limit: int | None = None,
    ledger: L.Ledger | None = None,
    retry: RetryPolicy | None = None,
) -> dict[str, Any]:
    """Eligibility, then preview or claim-and-send, for an explicit list of subs (the reconciliation DAG's entry).

    Returns the XCom counts. Raises :class:`CampaignIncomplete` when users had to be deferred, so that Airflow
    retries the task; only the deferred users (and none already sent) are attempted again.
    """
    started = time.monotonic()
    ledger = ledger or L.Ledger().create_schema()
    result = CampaignResult(label=label, mode=params.email_mode, campaign=params.campaign)
    sub_list = list(subs)
    result.considered = len(set(sub_list))
    if params.email_mode == MODE_OFF:
        result.ineligible["email_mode_off"] = result.considered
        return result.as_xcom()
    recipients, reasons = eligible_recipients(ledger, params.user_pool_id, sub_list, params.campaign)
    result.unknown = reasons.pop("unknown", 0)
    result.ineligible.update(reasons)
    result.eligible = len(recipients)

    if params.email_mode == MODE_PREVIEW:
        from cognito_migration.storage import run_dir

        content = EmailContent.from_params(params, default_from=connection_from_email())
        limit = params.preview_count if preview_limit is None else preview_limit
        out_dir = run_dir(run_id) / "emails" / "preview"
        result.previewed = write_previews(recipients, content, params.campaign, out_dir, limit=limit, prefix=label)
    else:
        with _open_sender(params) as sender:
            run_campaign(
                ledger,
                recipients,
                campaign=params.campaign,
                run_id=run_id,
                sender=sender,
                limiter=sending_limiter(params.emails_per_second),
                result=result,
                retry=retry,
            )

    result.elapsed_s = time.monotonic() - started
    summary = result.as_xcom()
    log.info("emails %s: %s", label, {k: v for k, v in summary.items() if k != "label"})
    if result.deferred:
        raise CampaignIncomplete(
            f"{label}: {result.deferred} users were deferred after transient refusals; their claims were released "
            f"and a retry sends them (already sent: {result.sent}, none will be sent twice)"
        )
    return summary


@contextlib.contextmanager
def _open_sender(params: MigrationParams) -> Iterator[Sender]:
    """The sender of a sending mode, with its connection open for the whole batch."""
    if params.email_mode == MODE_SEND:
        with SmtpTransport() as transport:
            content = EmailContent.from_params(params, default_from=connection_from_email())
            yield SmtpSender(transport, content, params.campaign)
    elif params.email_mode == MODE_RECOVERY:
        with recovery_sender() as sender:
            yield sender
    else:
        raise EmailConfigError(f"email_mode {params.email_mode!r} does not send")


def _preview_share(total: int, identities_dir: ObjectStoragePath, batch: int) -> int:
    """This batch's share of the run's preview samples: spread evenly over the batches, lowest first."""
    batches = sorted(n for p in identities_dir.iterdir() if (n := _batch_of_file(p.name)) is not None)
    if batch not in batches:
        return 0
    base, extra = divmod(total, len(batches))
    return base + (1 if batches.index(batch) < extra else 0)


def _batch_of_file(name: str) -> int | None:
    match = re.fullmatch(r"batch-(\d+)\.jsonl", name)
    return int(match.group(1)) if match else None
