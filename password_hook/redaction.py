"""Keep passwords, client secrets and Cognito tokens out of every log line, even at DEBUG.

botocore logs whole request and response bodies at DEBUG (``Making request ... with params``, ``Response
body``): the ``AdminInitiateAuth`` body holds the password and the SECRET_HASH, the response holds tokens.
Setting logger levels is not enough, because whoever runs the service may turn DEBUG on. So a filter sits on
the hook's logger and on every botocore/boto3/urllib3 logger, and rewrites any record that carries a secret
before a handler sees it:

- the secrets of the request in flight (the password, the SECRET_HASH) are held in a context variable, so a
  record logged in the worker thread of that request is scrubbed of them in every encoding botocore uses;
- the static secrets (webhook secrets, app client secret) are scrubbed always;
- token fields in JSON (``AccessToken``, ``IdToken``, ``RefreshToken``, ``Session``) are masked by pattern.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from urllib.parse import quote, quote_plus

MASK = "********"
GUARDED_LOGGER_PREFIXES = ("password_hook", "botocore", "boto3", "urllib3", "uvicorn")

_in_flight: ContextVar[tuple[str, ...]] = ContextVar("password_hook_in_flight_secrets", default=())
_TOKEN_FIELDS = re.compile(
    r"""(?P<key>["']?(?:AccessToken|IdToken|RefreshToken|Session|SECRET_HASH|PASSWORD)["']?\s*[:=]\s*)"""
    r"""(?P<quote>\\?["'])(?P<value>[A-Za-z0-9._~+/=-]*)"""
)


def encodings(value: str) -> set[str]:
    """Every way ``value`` can appear in a log line: raw, JSON-escaped, Python repr, bytes repr, URL-encoded."""
    forms = {value}
    for ensure_ascii in (True, False):
        forms.add(json.dumps(value, ensure_ascii=ensure_ascii)[1:-1])
    forms.add(repr(value)[1:-1])
    for form in list(forms):
        forms.add(repr(form.encode("utf-8"))[2:-1])
    forms.add(quote(value, safe=""))
    forms.add(quote_plus(value))
    return {f for f in forms if f}


@contextlib.contextmanager
def guarding(*values: str) -> Iterator[None]:
    """Scrub ``values`` from every record logged in this context (this request, its worker thread)."""
    extra = tuple(sorted({form for v in values if v for form in encodings(v)}, key=len, reverse=True))
    token = _in_flight.set(_in_flight.get() + extra)
    try:
        yield
    finally:
        _in_flight.reset(token)


class RedactingFilter(logging.Filter):
    """Rewrites records in place; never drops one (a missing log line hides an incident)."""

    def __init__(self) -> None:
        super().__init__()
        self._static: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add_static(self, values: Iterable[str]) -> None:
        with self._lock:
            forms = set(self._static) | {form for v in values if v for form in encodings(v)}
            self._static = tuple(sorted(forms, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in _in_flight.get() + self._static:
            if secret in text:
                text = text.replace(secret, MASK)
        return _TOKEN_FIELDS.sub(lambda m: f"{m['key']}{m['quote']}{MASK}" if m["value"] else m[0], text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not become a hole: keep only the template
            message = str(record.msg)
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            cleaned = self.redact(text)
            if cleaned != text:
                record.exc_info, record.exc_text = None, cleaned
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


FILTER = RedactingFilter()


def install(static_secrets: Iterable[str] = ()) -> None:
    """Put the filter on every existing logger under the guarded prefixes (idempotent; call after imports)."""
    FILTER.add_static(static_secrets)
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".", 1)[0] in GUARDED_LOGGER_PREFIXES]
    for name in {*names, *GUARDED_LOGGER_PREFIXES}:
        logger = logging.getLogger(name)
        if FILTER not in logger.filters:
            logger.addFilter(FILTER)
