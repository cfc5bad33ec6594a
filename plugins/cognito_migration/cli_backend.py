"""Optional import backend: Avnology's own CLI, ``avnology migrate auth0 --import <file.json> [--dry-run]``.

The seed's documented path. The CLI reads convert's Auth0 batch file (``auth0/batch-NNNN.json``); its output
format is not documented, so the backend keeps the output and the exit code as they are (``import/…cli.log``)
and then settles each user through the REST API, as the API backend would after a create: it looks the email
up, checks the ``admin_metadata.cognito`` provenance (the CLI maps ``app_metadata`` to the admin-only
metadata), records the result in the ledger and grants the group roles.

How the CLI gets its key is not documented beyond "an admin API key in .env": the backend runs it in a private
temporary folder holding a ``.env`` (mode 0600, deleted afterwards) and also passes ``AVNOLOGY_API_KEY`` and
``AVNOLOGY_API_URL`` in its environment. The key is never on the command line (visible in ``ps``) and the
kept output is redacted. The CLI path sets no ``organization_id``: the CLI documents no such option.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cognito_migration import config, storage
from cognito_migration.avnology import AvnologyHook
from cognito_migration.ledger import Ledger
from cognito_migration.load import (
    DRY_RUN_DIR,
    IMPORT_DIR,
    LoadError,
    Target,
    check_batch_id,
    finish_import,
    import_batch,
    read_batch,
)

log = logging.getLogger(__name__)

ENV_API_KEY = "AVNOLOGY_API_KEY"
ENV_API_URL = "AVNOLOGY_API_URL"
AUTH0_DIR = "auth0"
# Avnology's import jobs time out after 2 h; the CLI gets the same.
CLI_TIMEOUT_S = 2 * 3600
_OUTPUT_TAIL = 1500


class CliImportError(LoadError):
    """The CLI is missing, timed out or exited non-zero; the message has the exit code and the output's tail."""


@dataclass(frozen=True)
class CliRun:
    command: list[str]  # what ran, without any secret
    exit_code: int
    output: str  # stdout and stderr together, key redacted
    elapsed_s: float


def cli_command(cli_path: str, batch_file: Path, *, dry_run: bool) -> list[str]:
    """The documented invocation; only ``--import`` and ``--dry-run`` exist."""
    executable = shutil.which(cli_path)
    if executable is None:
        raise CliImportError(
            f"the avnology CLI {cli_path!r} is not installed or not executable; install it or set the form's "
            "cli_path (or use import_backend=api)"
        )
    return [executable, "migrate", "auth0", "--import", str(batch_file), *(["--dry-run"] if dry_run else [])]


def run_cli(
    cli_path: str, batch_file: Path, *, dry_run: bool, base_url: str, api_key: str, timeout_s: float = CLI_TIMEOUT_S
) -> CliRun:
    """Run the CLI on one batch file; returns its exit code and output (never raises for a non-zero exit)."""
    command = cli_command(cli_path, batch_file, dry_run=dry_run)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="avnology-cli-") as workdir:
        env_file = Path(workdir) / ".env"
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{ENV_API_KEY}={api_key}\n{ENV_API_URL}={base_url}\n")
        env = {**os.environ, ENV_API_KEY: api_key, ENV_API_URL: base_url}
        try:
            completed = subprocess.run(
                command,
                cwd=workdir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise CliImportError(f"{' '.join(command)} did not finish within {timeout_s:g} s") from None
    output = completed.stdout.decode("utf-8", errors="replace").replace(api_key, "[redacted]")
    return CliRun(command, completed.returncode, output, round(time.monotonic() - started, 3))


def _local_batch_file(run_path: Any, batch_id: str, workdir: Path) -> Path:
    """The Auth0 batch file on local disk (run storage may be s3://), private to this task."""
    source = run_path / AUTH0_DIR / f"{check_batch_id(batch_id)}.json"
    if not source.exists():
        raise CliImportError(f"{batch_id}: {AUTH0_DIR}/{batch_id}.json is missing from the run folder; re-run convert")
    target = workdir / f"{batch_id}.json"
    with source.open("rb") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.chmod(target, 0o600)
    return target


def _run_for_batch(
    run_path: Any, batch_id: str, hook: AvnologyHook, cli_path: str, *, dry_run: bool, log_dir: str
) -> CliRun:
    settings = hook.settings
    key = hook.api_key_for_subprocess()
    with tempfile.TemporaryDirectory(prefix="avnology-batch-") as workdir:
        batch_file = _local_batch_file(run_path, batch_id, Path(workdir))
        run = run_cli(cli_path, batch_file, dry_run=dry_run, base_url=settings.base_url, api_key=key)
    suffix = "cli-dry-run.log" if dry_run else "cli.log"
    _write_private_text(
        run_path / log_dir / f"{batch_id}.{suffix}",
        f"$ {' '.join(run.command)}\n{run.output}\n[exit code {run.exit_code}, {run.elapsed_s} s]\n",
    )
    log.info("%s: %s exited %d after %.1f s", batch_id, " ".join(run.command[1:3]), run.exit_code, run.elapsed_s)
    return run


def _write_private_text(path: Any, text: str) -> None:
    """The CLI's output may name users (per-user errors): keep it private like the other per-user files."""
    storage.make_private_dir(path.parent)
    if path.protocol in ("file", "local", ""):
        fd = os.open(path.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
    else:
        with path.open("w") as fh:
            fh.write(text)


def run_cli_dry_run(params: Any, run_id: str, batch_id: str) -> dict[str, Any]:
    """``--dry-run`` of one batch against staging; the exit code joins the batch's dry-run result."""
    run_path = storage.run_dir(run_id)
    hook = AvnologyHook(config.AVNOLOGY_STAGING_CONN_ID)
    try:
        run = _run_for_batch(run_path, batch_id, hook, params.cli_path, dry_run=True, log_dir=DRY_RUN_DIR)
    finally:
        hook.close()
    return {"cli_exit_code": run.exit_code, "cli_log": f"{DRY_RUN_DIR}/{batch_id}.cli-dry-run.log"}


def run_cli_import_batch(params: Any, run_id: str, batch_id: str) -> dict[str, Any]:
    """Import one batch with the CLI into production, then settle every user of it through the API."""
    started = time.monotonic()
    run_path = storage.run_dir(run_id)
    lines = read_batch(run_path, batch_id)
    ledger = Ledger().create_schema()
    hook = AvnologyHook(config.AVNOLOGY_PRODUCTION_CONN_ID)
    try:
        run = _run_for_batch(run_path, batch_id, hook, params.cli_path, dry_run=False, log_dir=IMPORT_DIR)
        cli_log = f"{IMPORT_DIR}/{batch_id}.cli.log"
        if run.exit_code != 0:
            storage.write_json(
                run_path / IMPORT_DIR / f"{batch_id}.json",
                {"batch_id": batch_id, "backend": "cli", "cli_exit_code": run.exit_code, "cli_log": cli_log},
            )
            tail = run.output[-_OUTPUT_TAIL:]
            raise CliImportError(
                f"import {batch_id}: `avnology migrate auth0 --import` exited {run.exit_code}; output kept in "
                f"{cli_log}. Last lines:\n{tail}"
            )
        target = Target(
            hook.client,
            params.user_pool_id,
            None,
            verify_only=True,
            role_namespace=hook.settings.role_namespace,
            role_relation=hook.settings.role_relation,
        )
        tally = import_batch(target, ledger, lines, run_id=run_id)
    finally:
        hook.close()
    return finish_import(run_path, batch_id, tally, started, backend="cli", cli_exit_code=0, cli_log=cli_log)
