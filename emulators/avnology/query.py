"""List queries: the AIP-160 filter subset, ``order_by``, ``page_size`` and opaque page tokens.

Page tokens are keyset cursors (the last item's sort key), bound to the query that produced them, so paging
stays correct while identities are created concurrently and a token cannot be replayed against another
filter.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from emulators.avnology.errors import invalid

DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100

FILTER_FIELDS = ("email", "state", "organization_id")
ORDER_FIELDS = ("create_time", "update_time", "email", "last_login_at")

_CLAUSE = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*')
_AND = re.compile(r"AND(?=\s)")
_ORDER = re.compile(r"^\s*([a-z_]+)(?:\s+(asc|desc))?\s*$")


def parse_filter(text: str | None) -> list[tuple[str, str]]:
    """``email = "x" AND state = "active"`` -> [("email", "x"), ("state", "active")].

    Only equality on the supported fields, joined with ``AND``; anything else is a 400, never silently
    ignored (an ignored filter would return the wrong identities).
    """
    if text is None or not text.strip():
        return []
    clauses: list[tuple[str, str]] = []
    pos = 0
    while True:
        match = _CLAUSE.match(text, pos)
        if match is None:
            raise _bad_filter(text, 'expected a clause of the form field = "value"')
        field, raw = match.group(1), match.group(2)
        if field not in FILTER_FIELDS:
            raise _bad_filter(text, f"cannot filter on {field!r}; supported fields: {', '.join(FILTER_FIELDS)}")
        clauses.append((field, re.sub(r"\\(.)", r"\1", raw)))
        pos = match.end()
        if pos == len(text):
            return clauses
        joiner = _AND.match(text, pos)
        if joiner is None:
            raise _bad_filter(text, "clauses must be joined with AND (the only supported operator)")
        pos = joiner.end()


def _bad_filter(text: str, why: str) -> Exception:
    return invalid("filter", "invalid_filter", f"invalid filter: {why}", filter=text)


@dataclass(frozen=True)
class Order:
    field: str
    descending: bool

    @property
    def text(self) -> str:
        return f"{self.field} {'desc' if self.descending else 'asc'}"


def parse_order_by(text: str | None) -> Order:
    if text is None or not text.strip():
        return Order("create_time", False)
    match = _ORDER.match(text)
    if match is None or match.group(1) not in ORDER_FIELDS:
        raise invalid("order_by", "invalid_order_by", f"order_by must be one of {', '.join(ORDER_FIELDS)} [asc|desc]")
    return Order(match.group(1), match.group(2) == "desc")


def parse_page_size(text: str | None) -> int:
    """Default 25; values above 100 are coerced to 100 (AIP-158); negative or non-numeric is a 400."""
    if text is None or text == "":
        return DEFAULT_PAGE_SIZE
    try:
        size = int(text)
    except ValueError:
        raise invalid("page_size", "not_an_integer", "page_size must be an integer") from None
    if size < 0:
        raise invalid("page_size", "out_of_range", "page_size must not be negative")
    if size == 0:
        return DEFAULT_PAGE_SIZE
    return min(size, MAX_PAGE_SIZE)


def query_fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def encode_page_token(fingerprint: str, last_key: list[Any]) -> str:
    raw = json.dumps({"q": fingerprint, "k": last_key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str | None, fingerprint: str) -> list[Any] | None:
    """The cursor in ``token``, or None for the first page; a foreign or damaged token is a 400."""
    if token is None or token == "":
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        key = data["k"]
        matches = data["q"] == fingerprint
    except (ValueError, KeyError, TypeError):
        raise invalid("page_token", "invalid_page_token", "page_token is not a token this API issued") from None
    if not matches or not isinstance(key, list):
        raise invalid("page_token", "page_token_mismatch", "page_token was issued for a different filter or order_by")
    return key
