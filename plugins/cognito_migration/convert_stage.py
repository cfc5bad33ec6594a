"""The convert stage's glue: extracted pages in, batch files and ledger rows out.

The mapping is pure (:mod:`cognito_migration.convert`), the streaming writer is :mod:`cognito_migration.batches`;
this module wires them to run storage and records every user in the ledger: each one seen, each one left out with
its reason, each converted one queued (``pending``) for the import.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import islice
from pathlib import PurePosixPath
from typing import Any

from cognito_migration import ledger as L
from cognito_migration import storage
from cognito_migration.batches import write_batches
from cognito_migration.convert import ConvertPolicy, PoolContext
from cognito_migration.extract import iter_extracted_users, read_memberships

log = logging.getLogger(__name__)

_CHUNK = 1000


def seen_user(raw: dict[str, Any]) -> L.SeenUser | None:
    """The ledger's view of one raw ListUsers record; None when it has no ``sub`` (it stays in rejects.csv)."""
    attrs = {a.get("Name"): a.get("Value") for a in raw.get("Attributes") or () if isinstance(a, dict)}
    sub = attrs.get("sub")
    if not isinstance(sub, str) or not sub:
        return None
    modified = raw.get("UserLastModifiedDate")
    if isinstance(modified, str):
        modified = datetime.fromisoformat(modified)
    status = raw.get("UserStatus")
    return L.SeenUser(
        sub=sub,
        username=str(raw.get("Username") or ""),
        email=attrs.get("email") or None,
        cognito_status=status,
        enabled=raw.get("Enabled"),
        last_modified=modified if isinstance(modified, datetime) else None,
        # A native user merely linked to a provider still has a password, so only EXTERNAL_PROVIDER is federated.
        federated=status == "EXTERNAL_PROVIDER",
        first_name=attrs.get("given_name") or None,
    )


def _chunks(items: Iterable[Any], size: int = _CHUNK) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def read_rejects(run_path: Any) -> Iterator[L.Outcome]:
    """Skipped and rejected users from ``rejects.csv`` as ledger outcomes (rows without a sub are not ledger rows)."""
    with (run_path / "rejects.csv").open("r") as fh:
        for row in csv.DictReader(io.StringIO(fh.read())):
            # A duplicate_sub row names a sub whose kept copy was converted: that user is not left out.
            if row["sub"] and row["reason"] != "duplicate_sub":
                status = L.SKIPPED if row["outcome"] == "skipped" else L.REJECTED
                yield L.Outcome(sub=row["sub"], status=status, reason=row["reason"], detail=row["detail"])


def converted_subs(run_path: Any, batch_ids: Iterable[str]) -> Iterator[str]:
    for batch_id in batch_ids:
        for line in storage.iter_jsonl(run_path / "identities" / f"{batch_id}.jsonl"):
            yield line["sub"]


def convert_users(
    run_path: Any,
    *,
    user_pool_id: str,
    users: Iterable[dict[str, Any]] | None,
    policy: ConvertPolicy,
    ledger: L.Ledger,
    run_id: str,
) -> dict[str, Any]:
    """Convert extracted users (all of the run's, or the given ones) into ``run_path`` and record the ledger.

    The reconciliation uses this too, with only the users it carries over.
    """
    started = time.monotonic()
    snapshot = storage.read_json(run_path / "snapshot.json")
    pool = PoolContext.from_describe_user_pool(snapshot["UserPool"])
    memberships = read_memberships(run_path)

    def source() -> Iterable[dict[str, Any]]:
        return iter_extracted_users(run_path) if users is None else users

    summary = write_batches(source, memberships, pool, policy, run_path)
    batch_ids = [PurePosixPath(b.identities_file).stem for b in summary.batches]

    for chunk in _chunks(filter(None, map(seen_user, source()))):
        ledger.record_seen(user_pool_id, chunk, run_id=run_id)
    requeued = sum(ledger.mark_pending(user_pool_id, chunk) for chunk in _chunks(converted_subs(run_path, batch_ids)))
    left_out = sum(ledger.record_outcomes(user_pool_id, chunk) for chunk in _chunks(read_rejects(run_path)))
    elapsed = time.monotonic() - started
    log.info(
        "convert: %d seen, %d converted into %d batches, %d skipped, %d rejected (%d requeued from earlier runs) in %.1f s",
        summary.seen,
        summary.converted,
        len(batch_ids),
        summary.skipped,
        summary.rejected,
        requeued,
        elapsed,
    )
    return {
        "seen": summary.seen,
        "converted": summary.converted,
        "skipped": summary.skipped,
        "rejected": summary.rejected,
        "left_out_recorded": left_out,
        "batches": batch_ids,
        "elapsed_s": round(elapsed, 3),
    }


def run_convert(params: Any, run_id: str) -> dict[str, Any]:
    """The ``convert`` task: every extracted user of the run."""
    return convert_users(
        storage.run_dir(run_id),
        user_pool_id=params.user_pool_id,
        users=None,
        policy=ConvertPolicy.from_params(params),
        ledger=L.Ledger().create_schema(),
        run_id=run_id,
    )
