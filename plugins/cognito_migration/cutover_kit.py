"""The cutover stage: read the run's snapshot and memberships, write ``cutover/kit.md`` and ``cutover/kit.json``.

Thin I/O around :mod:`cognito_migration.cutover`. It logs counts only: the snapshot is never echoed, and the
plan never holds a client secret (the pure code strips any that slipped into the snapshot).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from cognito_migration import storage
from cognito_migration.cutover import CutoverError, build_kit, count_members
from cognito_migration.cutover_markdown import render_markdown

log = logging.getLogger(__name__)

SNAPSHOT = "snapshot.json"
MEMBERSHIPS = "memberships.jsonl"
KIT_FOLDER = "cutover"


def build_cutover_kit(params: Any, run_id: str) -> dict[str, Any]:
    """Build the kit for this run from its preflight snapshot; member counts only when memberships were read."""
    run_path = storage.run_dir(run_id)
    snapshot_path = run_path / SNAPSHOT
    if not snapshot_path.exists():
        raise CutoverError(f"{snapshot_path} does not exist: the cutover kit needs the preflight snapshot")
    try:
        snapshot = storage.read_json(snapshot_path)
    except json.JSONDecodeError as exc:
        raise CutoverError(f"{snapshot_path} is not valid JSON (line {exc.lineno}): rerun preflight") from None

    memberships_path = run_path / MEMBERSHIPS
    member_counts = count_members(storage.iter_jsonl(memberships_path)) if memberships_path.exists() else None

    kit = build_kit(snapshot, member_counts, params.avnology_api_domain)
    folder = run_path / KIT_FOLDER
    storage.make_private_dir(folder)
    kit_json = storage.write_json(folder / "kit.json", kit.to_dict())
    kit_md = folder / "kit.md"
    storage.write_bytes(kit_md, render_markdown(kit).encode())

    warnings = len(kit.warnings)
    log.info(
        "Cutover kit for %s: %d app clients, %d triggers, %d groups, %d warnings → %s",
        kit.user_pool_id,
        len(kit.clients),
        len(kit.triggers),
        len(kit.roles),
        warnings,
        folder,
    )
    return {"kit_md": str(kit_md), "kit_json": str(kit_json), "clients": len(kit.clients), "warnings": warnings}
