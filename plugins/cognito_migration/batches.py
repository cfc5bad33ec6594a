"""Stream a pool's raw Cognito users through :func:`convert_user` into batch files, rejects and a summary.

The I/O half of the convert stage (the mapping itself is pure, in :mod:`cognito_migration.convert`).

Memory stays flat however large the pool: each user is converted once and its serialized records are
spooled to local temporary files, bucketed by the first hex digits of its ``sub``. Three passes over
the spool then finish the job without holding the pool:

1. per sub bucket, resolve a sub fed more than once, and write one compact ``email, rank, sub`` line per
   surviving user into buckets keyed by a hash of the case-folded email (this pass reads only the small
   index files; the records themselves sit in payload files until pass 3);
2. per email bucket, pick the user to keep for each email (:func:`plan_keepers`), remembering only the
   losers (normally a handful);
3. per sub bucket in order, sort by sub and write batches, rejects and counts.

Output order is by sub, so the same users give byte-identical files and the same batch ids whatever order
the shards and pages arrived in. The spool is a private temporary folder (0700), removed at the end.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from itertools import pairwise
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from pydantic_core import from_json

from cognito_migration.convert import (
    ConvertPolicy,
    KeeperCandidate,
    PoolContext,
    choose_sub_version,
    convert_user,
    keeper_rank,
    plan_keepers,
)
from cognito_migration.models import (
    SUB_PATTERN,
    BatchInfo,
    Converted,
    ConvertResult,
    ConvertSummary,
    Outcome,
    Reason,
)

__all__ = ["REJECTS_COLUMNS", "OutputDir", "RawUser", "write_batches"]

RawUser = Mapping[str, Any] | str | bytes
REJECTS_COLUMNS = ("sub", "username", "email", "outcome", "reason", "detail")

# 64 buckets by the sub's first 6 bits: few enough that the open write buffers stay cache-friendly, many
# enough that one bucket read back (about 1/64 of the pool's records) stays small.
_SUB_BUCKETS = 64
_EMAIL_BUCKETS = 64
_INVALID_BUCKET = "invalid"
_SUB_LENGTH = 36
_CSV_FLUSH_ROWS = 2000


class OutputDir(Protocol):
    """What the output folder must offer: ``pathlib.Path`` and Airflow's ``ObjectStoragePath`` both do."""

    def __truediv__(self, key: str) -> OutputDir: ...

    def open(self, mode: str = ...) -> Any: ...

    def mkdir(self, parents: bool = ..., exist_ok: bool = ...) -> None: ...


_SUB_RE = re.compile(SUB_PATTERN)  # fullmatch only: a sub with a trailing newline would break an index line


def _is_sub(value: str) -> bool:
    return _SUB_RE.fullmatch(value) is not None


def _check_memberships(memberships: Mapping[str, Sequence[str]]) -> None:
    """Memberships come from the extractor; a str instead of a list would silently become letters."""
    for sub, groups in memberships.items():
        if not isinstance(sub, str) or isinstance(groups, str | bytes) or not isinstance(groups, Iterable):
            raise TypeError(f"memberships must map sub -> list of group names; bad entry for sub {sub!r}")
        for group in groups:
            if not isinstance(group, str):
                raise TypeError(f"memberships of sub {sub!r} hold a {type(group).__name__}, not a group name")


def _spool_writer(path: Path) -> BinaryIO:
    """A buffered writer for a spool bucket; callers register it with an ExitStack (over a hundred stay open)."""
    return open(path, "wb", buffering=1 << 15)


def _bucket_of(sub: str) -> int:
    return int(sub[:2], 16) >> 2


class _Bucket:
    """One sub bucket read back: its index lines sorted (so by sub) and, on demand, its payload blob.

    Index lines are tab-separated and never hold a raw tab or newline (JSON escapes them):
    ``sub C modified_us email_key rank status warnings offset auth0_len line_len`` for a converted user (its
    two records sit in the payload file at ``offset``), ``sub R modified_us ["sub", …, "detail"]`` for an
    excluded one. Keeping the records out of the index keeps the de-dup pass to ~150 bytes a user.
    """

    def __init__(self, index: Path, payload: Path | None) -> None:
        lines = index.read_bytes().split(b"\n")
        lines.pop()  # the text after the last newline is empty
        lines.sort()
        self.lines = lines
        self._payload_path = payload
        self._payload: bytes | None = None

    def payload(self) -> bytes:
        if self._payload is None:
            self._payload = self._payload_path.read_bytes() if self._payload_path else b""
        return self._payload

    def records(self, fields: list[bytes]) -> tuple[bytes, bytes]:
        """The Auth0 record and the identity line of a split ``C`` index line."""
        offset, auth0_len, line_len = int(fields[7]), int(fields[8]), int(fields[9])
        blob = self.payload()
        return blob[offset : offset + auth0_len], blob[offset + auth0_len : offset + auth0_len + line_len]

    def resolve(self) -> tuple[list[bytes], dict[bytes, list[bytes]]]:
        """The index lines to keep, one per sub in sub order, and per kept sub (as bytes) the repeats dropped
        (see :meth:`pick`). A line without a valid sub stands alone. Only the lines of a repeated sub (a
        handful) take the slow path; the rest are kept as they are."""
        lines = self.lines
        if not lines or lines[0][:1] == b"\t":
            return lines, {}
        subs = [line[:_SUB_LENGTH] for line in lines]
        repeated = {a for a, b in pairwise(subs) if a == b}  # sorted, so a sub's lines are adjacent
        if not repeated:
            return lines, {}
        kept = [line for line, sub in zip(lines, subs, strict=True) if sub not in repeated]
        groups: dict[bytes, list[bytes]] = {}
        for line, sub in zip(lines, subs, strict=True):
            if sub in repeated:
                groups.setdefault(sub, []).append(line)
        repeats: dict[bytes, list[bytes]] = {}
        for sub, group in groups.items():
            keep, dropped = self.pick(group)
            kept.append(keep)
            repeats[sub] = dropped
        kept.sort()  # each sub now has one line, so the full-line order is the sub order
        return kept, repeats

    def pick(self, group: list[bytes]) -> tuple[bytes, list[bytes]]:
        """The version of a sub to keep, and the repeats (see :func:`choose_sub_version`). Compares content,
        not spool offsets, so the choice does not depend on input order."""
        if len(group) == 1:
            return group[0], []
        versions = []
        for line in group:
            fields = line.split(b"\t")
            content = b"".join(self.records(fields)) if fields[1] == b"C" else fields[3]
            versions.append((int(fields[2]), fields[1] + content))
        keep = choose_sub_version(versions)
        return group[keep], [line for i, line in enumerate(group) if i != keep]

    def describe(self, line: bytes) -> tuple[str, str, str, str]:
        """``(sub, username, email, status)`` of any index line (only on the rare reject paths)."""
        fields = line.split(b"\t")
        if fields[1] == b"C":
            identity_line = from_json(self.records(fields)[1])
            return identity_line["sub"], identity_line["username"], identity_line["email"], identity_line["status"]
        sub, username, email, status, *_ = json.loads(fields[3])
        return sub, username, email, status or "(unknown)"


class _Spool:
    """Private temporary bucket files (see :class:`_Bucket` for the line format)."""

    def __init__(self, parent: str | None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="convert-spool-", dir=parent)
        self.root = Path(self._tmp.name)
        self._writers = ExitStack()
        self._index = [self._open(f"sub-{i:02x}.idx") for i in range(_SUB_BUCKETS)]
        self._payload = [self._open(f"sub-{i:02x}.dat") for i in range(_SUB_BUCKETS)]
        self._offsets = [0] * _SUB_BUCKETS
        self._invalid = self._open(f"{_INVALID_BUCKET}.idx")

    def _open(self, name: str) -> BinaryIO:
        return self._writers.enter_context(_spool_writer(self.root / name))

    def add(self, result: ConvertResult) -> None:
        if isinstance(result, Converted):
            sub, _, _, email_key, status, modified_us, _, auth0_json, _, line_json, warnings = result
            bucket = _bucket_of(sub)
            offset = self._offsets[bucket]
            auth0_len, line_len = len(auth0_json), len(line_json)
            self._payload[bucket].write(auth0_json + line_json)
            self._offsets[bucket] = offset + auth0_len + line_len
            rank = keeper_rank(status, modified_us)
            self._index[bucket].write(
                f"{sub}\tC\t{modified_us}\t{email_key}\t{rank}\t{status}\t{','.join(warnings)}\t"
                f"{offset}\t{auth0_len}\t{line_len}\n".encode()
            )
            return
        row = [result.sub, result.username, result.email, result.status, result.outcome, result.reason, result.detail]
        payload = json.dumps(row, ensure_ascii=True)  # ASCII: survives lone surrogates in garbage input
        if _is_sub(result.sub):
            self._index[_bucket_of(result.sub)].write(
                f"{result.sub}\tR\t{result.last_modified_us}\t{payload}\n".encode()
            )
        else:
            self._invalid.write(f"\tR\t0\t{payload}\n".encode())

    def close_writers(self) -> None:
        self._writers.close()

    def buckets(self) -> Iterator[_Bucket]:
        """The sub buckets in order, then the bucket of records without a valid sub."""
        for i in range(_SUB_BUCKETS):
            yield _Bucket(self.root / f"sub-{i:02x}.idx", self.root / f"sub-{i:02x}.dat")
        yield _Bucket(self.root / f"{_INVALID_BUCKET}.idx", None)

    def cleanup(self) -> None:
        self._tmp.cleanup()


def _duplicate_email_losers(spool: _Spool, policy: ConvertPolicy) -> dict[bytes, str | None]:
    """Passes 1 and 2: sub → the sub kept instead (None under ``reject_all``), for users that lose."""
    with ExitStack() as stack:
        email_files = [stack.enter_context(_spool_writer(spool.root / f"email-{i:02d}")) for i in range(_EMAIL_BUCKETS)]
        for bucket in spool.buckets():
            for line in bucket.resolve()[0]:
                fields = line.split(b"\t", 5)
                if fields[1] == b"C":
                    email_key, rank = fields[3], fields[4]
                    email_files[zlib.crc32(email_key) % _EMAIL_BUCKETS].write(
                        email_key + b"\t" + rank + b"\t" + fields[0] + b"\n"
                    )
    losers: dict[bytes, str | None] = {}
    for i in range(_EMAIL_BUCKETS):
        rows = (spool.root / f"email-{i:02d}").read_bytes().split(b"\n")
        rows.pop()  # the text after the last newline is empty
        counts = Counter([row.partition(b"\t")[0] for row in rows])
        if len(counts) == len(rows):  # no email shared in this bucket: every user keeps its own
            continue
        candidates = [
            KeeperCandidate(email_key.decode(), int(rank), sub.decode())
            for email_key, rank, sub in (row.split(b"\t") for row in rows if counts[row.partition(b"\t")[0]] > 1)
        ]
        keepers = plan_keepers(candidates, policy.duplicate_email)
        for candidate in candidates:
            kept = keepers[candidate.email_key]
            if kept != candidate.sub:
                losers[candidate.sub.encode()] = kept
    return losers


class _BatchWriter:
    """Cuts converted users into batches: ≤ ``batch_max_users`` users and ≤ ``batch_max_bytes`` bytes of
    Auth0 JSON exactly as written (``[\\n`` + records joined by ``,\\n`` + ``\\n]\\n``)."""

    _FRAME = len(b"[\n") + len(b"\n]\n")

    def __init__(self, out_dir: OutputDir, policy: ConvertPolicy) -> None:
        self._auth0_dir = out_dir / "auth0"
        self._identities_dir = out_dir / "identities"
        self._auth0_dir.mkdir(parents=True, exist_ok=True)
        self._identities_dir.mkdir(parents=True, exist_ok=True)
        self._max_users = policy.batch_max_users
        self._max_bytes = policy.batch_max_bytes
        self._records: list[bytes] = []
        self._lines: list[bytes] = []
        self._size = self._FRAME
        self.batches: list[BatchInfo] = []

    def add(self, auth0_json: bytes, line_json: bytes) -> None:
        grows = len(auth0_json) + (2 if self._records else 0)
        if self._records and (len(self._records) >= self._max_users or self._size + grows > self._max_bytes):
            self.flush()
            grows = len(auth0_json)
        if self._size + grows > self._max_bytes:  # cannot happen: profiles are capped far below the batch size
            raise ValueError(f"one Auth0 record of {len(auth0_json)} bytes exceeds the batch limit")
        self._records.append(auth0_json)
        self._lines.append(line_json)
        self._size += grows

    def flush(self) -> None:
        if not self._records:
            return
        batch_id = f"batch-{len(self.batches) + 1:04d}"
        data = b"[\n" + b",\n".join(self._records) + b"\n]\n"
        if len(data) != self._size or len(data) > self._max_bytes:
            raise AssertionError(f"batch {batch_id} is {len(data)} bytes, expected {self._size}")
        auth0_name, identities_name = f"{batch_id}.json", f"{batch_id}.jsonl"
        with (self._auth0_dir / auth0_name).open("wb") as handle:
            handle.write(data)
        with (self._identities_dir / identities_name).open("wb") as handle:
            handle.write(b"\n".join(self._lines) + b"\n")
        self.batches.append(
            BatchInfo(
                id=batch_id,
                auth0_file=f"auth0/{auth0_name}",
                identities_file=f"identities/{identities_name}",
                users=len(self._records),
                bytes=len(data),
            )
        )
        self._records, self._lines, self._size = [], [], self._FRAME


class _RejectsWriter:
    """``rejects.csv``, written in chunks; text that is not valid UTF-8 (lone surrogates) is escaped."""

    def __init__(self, out_dir: OutputDir) -> None:
        self._handle = (out_dir / "rejects.csv").open("wb")
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\n")
        self._pending = 0
        self._csv.writerow(REJECTS_COLUMNS)

    def add(self, sub: str, username: str, email: str, outcome: str, reason: str, detail: str) -> None:
        self._csv.writerow((sub, username, email, outcome, reason, detail))
        self._pending += 1
        if self._pending >= _CSV_FLUSH_ROWS:
            self._drain()

    def _drain(self) -> None:
        self._handle.write(self._buffer.getvalue().encode("utf-8", "backslashreplace"))
        self._buffer.seek(0)
        self._buffer.truncate()
        self._pending = 0

    def close(self) -> None:
        self._drain()
        self._handle.close()


def write_batches(
    raw_users: Iterable[RawUser] | Callable[[], Iterable[RawUser]],
    memberships: Mapping[str, Sequence[str]],
    pool: PoolContext,
    policy: ConvertPolicy,
    out_dir: OutputDir,
    *,
    spool_dir: str | None = None,
) -> ConvertSummary:
    """Convert every raw user and write ``auth0/batch-NNNN.json``, ``identities/batch-NNNN.jsonl``,
    ``rejects.csv`` and ``convert_summary.json`` (last, so its presence means the stage finished).

    ``raw_users`` yields ListUsers user dicts or their JSON text (bytes/str: parsed and validated in one
    step, the fast path); a callable returning such an iterable is called once. ``spool_dir`` is the local
    folder for the temporary spool (default: the system temp dir); it needs about 2 KB per user.
    Raises :class:`~cognito_migration.models.ConservationError` if any user would be lost or counted twice.
    """
    _check_memberships(memberships)
    users = raw_users() if callable(raw_users) else raw_users
    spool = _Spool(spool_dir)
    try:
        seen = 0
        try:
            for raw in users:
                seen += 1
                spool.add(convert_user(raw, memberships, pool, policy))
        finally:
            spool.close_writers()
        losers = _duplicate_email_losers(spool, policy)
        out_dir.mkdir(parents=True, exist_ok=True)
        return _emit(spool, losers, memberships, pool, policy, out_dir, seen)
    finally:
        spool.cleanup()


def _emit(
    spool: _Spool,
    losers: Mapping[bytes, str | None],
    memberships: Mapping[str, Sequence[str]],
    pool: PoolContext,
    policy: ConvertPolicy,
    out_dir: OutputDir,
    seen: int,
) -> ConvertSummary:
    """Pass 3: in sub order, write each user to a batch or to rejects, counting as it goes."""
    counts: Counter[tuple[str, str, str]] = Counter()  # (status, outcome, reason) → users
    converted_by_status: Counter[bytes] = Counter()  # the hot path counts raw index fields, decoded at the end
    warning_sets: Counter[bytes] = Counter()
    unique_subs = members_seen = 0
    member_subs = {sub.encode() for sub in memberships}  # the hot loop keeps subs as bytes
    batches = _BatchWriter(out_dir, policy)
    rejects = _RejectsWriter(out_dir)
    try:
        for bucket in spool.buckets():
            blob = bucket.payload()
            survivors, repeated = bucket.resolve()
            for line in survivors:
                fields = line.split(b"\t")
                sub = fields[0]
                if sub:
                    unique_subs += 1
                    members_seen += sub in member_subs
                if repeated and sub in repeated:
                    repeats = repeated[sub]
                    for repeat in repeats:
                        r_sub, username, email, status = bucket.describe(repeat)
                        detail = f"sub fed {len(repeats) + 1} times; kept the version modified last"
                        rejects.add(r_sub, username, email, Outcome.SKIPPED, Reason.DUPLICATE_SUB, detail)
                        counts[status, Outcome.SKIPPED, Reason.DUPLICATE_SUB] += 1
                if fields[1] == b"R":
                    r_sub, username, email, status, outcome, reason, detail = json.loads(fields[3])
                    rejects.add(r_sub, username, email, outcome, reason, detail)
                    counts[status or "(unknown)", outcome, reason] += 1
                elif sub in losers:
                    r_sub, username, email, status = bucket.describe(line)
                    kept = losers[sub]
                    detail = f"kept {kept}" if kept else "policy reject_all: other users share this email (any case)"
                    rejects.add(r_sub, username, email, Outcome.REJECTED, Reason.DUPLICATE_EMAIL, detail)
                    counts[status, Outcome.REJECTED, Reason.DUPLICATE_EMAIL] += 1
                else:  # converted: its two records sit in the payload blob (inlined: the hot path)
                    start = int(fields[7])
                    middle = start + int(fields[8])
                    batches.add(blob[start:middle], blob[middle : middle + int(fields[9])])
                    converted_by_status[fields[5]] += 1
                    warning_sets[fields[6]] += 1
        batches.flush()
    finally:
        rejects.close()
    for raw_status, n in converted_by_status.items():
        counts[raw_status.decode(), Outcome.CONVERTED, ""] += n
    warnings: Counter[str] = Counter()
    for warning_set, n in warning_sets.items():
        for warning in filter(None, warning_set.decode().split(",")):
            warnings[warning] += n
    summary = _summarize(
        counts, warnings, batches.batches, pool, policy, seen, unique_subs, len(memberships) - members_seen
    )
    with (out_dir / "convert_summary.json").open("wb") as handle:
        handle.write(json.dumps(summary.model_dump(mode="json"), indent=2, sort_keys=True).encode() + b"\n")
    return summary


def _summarize(
    counts: Counter[tuple[str, str, str]],
    warnings: Counter[str],
    batches: list[BatchInfo],
    pool: PoolContext,
    policy: ConvertPolicy,
    seen: int,
    unique_subs: int,
    memberships_without_user: int,
) -> ConvertSummary:
    """Counts by status and outcome, and by reason, tabulated with pandas; validated for conservation."""
    import pandas as pd

    if not counts:
        return ConvertSummary(
            user_pool_id=pool.user_pool_id,
            organization_name=pool.organization_name,
            policy=policy.model_dump(),
            seen=seen,
            unique_subs=unique_subs,
            converted=0,
            skipped=0,
            rejected=0,
            by_reason={},
            by_status={},
            warnings={},
            memberships_without_user=memberships_without_user,
            batches=batches,
        )
    frame = pd.DataFrame(
        [(status, str(outcome), str(reason), n) for (status, outcome, reason), n in counts.items()],
        columns=["status", "outcome", "reason", "users"],
    )
    by_outcome = frame.groupby("outcome")["users"].sum()
    left_out = frame[frame["reason"] != ""]
    by_reason = left_out.groupby("reason")["users"].sum()
    table = frame.pivot_table(index="status", columns="outcome", values="users", aggfunc="sum", fill_value=0)
    table = table.reindex(columns=[o.value for o in Outcome], fill_value=0)
    return ConvertSummary(
        user_pool_id=pool.user_pool_id,
        organization_name=pool.organization_name,
        policy=policy.model_dump(),
        seen=seen,
        unique_subs=unique_subs,
        converted=int(by_outcome.get(Outcome.CONVERTED.value, 0)),
        skipped=int(by_outcome.get(Outcome.SKIPPED.value, 0)),
        rejected=int(by_outcome.get(Outcome.REJECTED.value, 0)),
        by_reason={str(reason): int(n) for reason, n in by_reason.items()},
        by_status={
            str(status): {str(outcome): int(n) for outcome, n in row.items()} for status, row in table.iterrows()
        },
        warnings=dict(sorted(warnings.items())),
        memberships_without_user=memberships_without_user,
        batches=batches,
    )
