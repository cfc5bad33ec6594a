"""Run storage: where a run's files (raw pages, batches, rejects, reports) live.

A local folder by default, ``s3://bucket/prefix`` when workers run on different machines. Everything goes
through ``ObjectStoragePath`` so the stage code never cares which. The files hold personal data: a local run
folder is created private (0700), and :func:`purge_personal_data` removes the per-user files after the window.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from airflow.sdk import ObjectStoragePath

from cognito_migration import config

_RUN_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

# Files and folders of a run that hold per-user data; reports and the cutover kit are aggregates and stay.
PERSONAL_DATA_ENTRIES = ("raw", "memberships.jsonl", "auth0", "identities", "rejects.csv", "emails")


def storage_root() -> ObjectStoragePath:
    """The configured storage root (``COGNITO_MIGRATION_STORAGE``), a local folder unless it names a scheme."""
    base = config.storage_url()
    conn_id = config.storage_conn_id()
    if "://" not in base:
        base = "file://" + str(Path(base).resolve())
    return ObjectStoragePath(base, conn_id=conn_id) if conn_id else ObjectStoragePath(base)


def safe_run_id(run_id: str) -> str:
    """Airflow run ids contain ``:`` and ``+``; keep folder names portable across file systems and S3."""
    cleaned = _RUN_ID_UNSAFE.sub("_", run_id).strip("._")
    if not cleaned:
        raise ValueError(f"run id {run_id!r} has no usable characters for a folder name")
    return cleaned


def run_dir(run_id: str, *, kind: str = "runs") -> ObjectStoragePath:
    """The folder of one run, created if needed; private when local."""
    path = storage_root() / kind / safe_run_id(run_id)
    make_private_dir(path)
    return path


def make_private_dir(path: ObjectStoragePath) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if path.protocol in ("file", "local", ""):
        os.chmod(path.path, 0o700)


def write_json(path: ObjectStoragePath, payload: Any, *, indent: int | None = 1) -> ObjectStoragePath:
    """Write JSON atomically enough for checkpoints: to a temp name, then rename (on local storage).

    ``indent=None`` writes compact JSON with the C encoder, several times faster for bulk files (raw pages).
    """
    return write_bytes(path, json.dumps(payload, indent=indent, sort_keys=True, default=str).encode())


def write_bytes(path: ObjectStoragePath, data: bytes) -> ObjectStoragePath:
    """Private (0600) and atomic (temp name, then rename) on local storage; a plain object write elsewhere."""
    if path.protocol in ("file", "local", ""):
        local = Path(path.path)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(local.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, local)
    else:
        with path.open("wb") as fh:
            fh.write(data)
    return path


def read_json(path: ObjectStoragePath) -> Any:
    with path.open("rb") as fh:
        return json.loads(fh.read())


def iter_jsonl(path: ObjectStoragePath) -> Iterator[dict[str, Any]]:
    with path.open("r") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def purge_personal_data(run_path: ObjectStoragePath) -> list[str]:
    """Delete a run's per-user files, keep its aggregate reports. Returns what was removed."""
    removed: list[str] = []
    for name in PERSONAL_DATA_ENTRIES:
        entry = run_path / name
        if not entry.exists():
            continue
        if entry.is_dir():
            _rmtree(entry)
        else:
            entry.unlink()
        removed.append(name)
    return removed


def _rmtree(path: ObjectStoragePath) -> None:
    for child in path.iterdir():
        if child.is_dir():
            _rmtree(child)
        else:
            child.unlink()
    if path.exists():  # an object store (S3) has no empty folders: the prefix went with its last object
        path.rmdir()
