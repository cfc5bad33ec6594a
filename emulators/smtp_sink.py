"""A real SMTP server (aiosmtpd) that keeps every message it accepts, for the demo and the tests to read.

It can also refuse on purpose, the way a real provider does under load: ``refuse_next(n, code=451)`` answers
the next ``n`` DATA commands with a transient error, and ``reject_recipient(addr, code=550)`` answers one
address with a permanent one. That is how the email campaign's retry and failure paths are tested.
"""

from __future__ import annotations

import email
import email.policy
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from emulators.ports import ensure_port_free, free_port


@dataclass
class ReceivedMessage:
    envelope_from: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    def text(self) -> str:
        """The plain-text body (or the HTML one when there is no text part)."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        return part.get_content() if part is not None else ""

    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return part.get_content() if part is not None else ""


@dataclass
class _Faults:
    refuse_remaining: int = 0
    refuse_code: int = 451
    rejected_recipients: dict[str, int] = field(default_factory=dict)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        code = self._sink._recipient_code(address)
        if code:
            return f"{code} 5.1.1 mailbox unavailable (sink rejects {address} on purpose)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        refused = self._sink._take_refusal()
        if refused:
            return f"{refused} 4.3.2 try again later (sink refuses on purpose)"
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        self._sink._store(ReceivedMessage(envelope.mail_from, list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


class SmtpSink:
    """``with SmtpSink() as sink: ...`` — an SMTP server on a free loopback port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._lock = threading.Lock()
        self._messages: list[ReceivedMessage] = []
        self._faults = _Faults()
        self._controller: Controller | None = None

    def start(self) -> SmtpSink:
        ensure_port_free(self.host, self.port, "SMTP sink")
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port, ready_timeout=10)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    def messages_to(self, address: str) -> list[ReceivedMessage]:
        return [m for m in self.messages if address.lower() in (r.lower() for r in m.recipients)]

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._faults = _Faults()

    def refuse_next(self, count: int, code: int = 451) -> None:
        with self._lock:
            self._faults.refuse_remaining = count
            self._faults.refuse_code = code

    def reject_recipient(self, address: str, code: int = 550) -> None:
        with self._lock:
            self._faults.rejected_recipients[address.lower()] = code

    def _take_refusal(self) -> int:
        with self._lock:
            if self._faults.refuse_remaining > 0:
                self._faults.refuse_remaining -= 1
                return self._faults.refuse_code
            return 0

    def _recipient_code(self, address: str) -> int:
        with self._lock:
            return self._faults.rejected_recipients.get(address.lower(), 0)

    def _store(self, message: ReceivedMessage) -> None:
        with self._lock:
            self._messages.append(message)
