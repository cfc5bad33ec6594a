"""Benchmark: the production import against the Avnology emulator at its rate limit.

Imports ``--users`` identities (default 20,000) in batches of 1,000 through the real stage path
(``run_import_batch``: Airflow connection → hook → client → ledger), into an emulator that allows R = ``--rate``
requests/s per key (default 200, burst 20) and adds ``--latency-ms`` (default 20) to every request. The
server's limit is the bound: one create per user, so identities/s can at best equal R. The client is
configured as an operator would: its own limit at R, 16 requests in flight.

The emulator runs in its own process, as the real service would: in the client's process it would compete
for the interpreter lock, and the benchmark would measure that instead of the import.

    python bench/bench_load.py [--users 20000] [--rate 200] [--latency-ms 20]

Ends with ``RESULT load identities_per_s=<v> bound=<R> ratio=<v/R> duplicates=<n>``; exits 1 when a target
(ratio ≥ 0.85, duplicates = 0, every user imported) is missed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

POOL = "us-east-1_BenchLoad"
RUN = "bench_load"
BATCH_SIZE = 1000


class _EmulatorProcess:
    """``python -m emulators.avnology`` in a child process, on a free port."""

    def __init__(self, rate: float, burst: int, production_key: str) -> None:
        self.rate, self.burst, self.production_key = rate, burst, production_key

    def __enter__(self) -> _EmulatorProcess:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "AVNOLOGY_STAGING_KEY": "ak_test_bench_stg_" + secrets.token_hex(8),
            "AVNOLOGY_PRODUCTION_KEY": self.production_key,
        }
        command = [sys.executable, "-m", "emulators.avnology", "--port", "0"]
        command += ["--rate-limit-rps", str(self.rate), "--rate-limit-burst", str(self.burst)]
        self._proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if match is None:
            self._proc.kill()
            raise RuntimeError(f"the Avnology emulator did not start (said {line!r})")
        self.url = match.group(1)
        return self

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=200.0, help="the emulator's limit R, requests/s per key")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    if args.users < 1 or args.rate <= 0 or args.latency_ms < 0:
        parser.error("--users must be >= 1, --rate > 0 and --latency-ms >= 0")

    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    from emulators.airflow_home import airflow_env

    os.environ.update(airflow_env(workdir / "airflow"))
    os.environ["COGNITO_MIGRATION_HOME"] = str(workdir)
    os.environ["COGNITO_MIGRATION_LEDGER_URL"] = f"sqlite:///{workdir / 'ledger.db'}"
    key = "ak_test_bench_prd_" + secrets.token_hex(8)

    with _EmulatorProcess(args.rate, 20, key) as emulator:
        import httpx

        httpx.post(
            f"{emulator.url}/_emulator/faults", json={"latency_ms": args.latency_ms}, timeout=10
        ).raise_for_status()
        extra = {"timeout": 30, "max_concurrency": 16, "rate_limit_rps": args.rate}
        os.environ["AIRFLOW_CONN_AVNOLOGY_PRODUCTION"] = json.dumps(
            {"conn_type": "avnology", "host": emulator.url, "password": key, "extra": extra}
        )

        from cognito_migration import storage
        from cognito_migration.ledger import Ledger, SeenUser
        from cognito_migration.load import run_import_batch
        from cognito_migration.params import parse_params
        from tests.identity_lines import make_line, write_batches

        logging.getLogger("cognito_migration").setLevel(logging.WARNING)
        lines = [make_line(POOL, n, seed="bench") for n in range(args.users)]
        chunks = [lines[i : i + BATCH_SIZE] for i in range(0, len(lines), BATCH_SIZE)]
        batches = write_batches(storage.run_dir(RUN), chunks, organization_name="bench-load")
        params = parse_params({"user_pool_id": POOL})
        # Convert records every user as seen before the import (untimed here, as it is a stage of its own).
        Ledger().create_schema().record_seen(
            POOL,
            [SeenUser(x["sub"], x["username"], x["email"], x["status"], x["enabled"], None) for x in lines],
            run_id=RUN,
        )

        print(
            f"importing {args.users} users in {len(batches)} batches into {emulator.url} "
            f"(R={args.rate:g} req/s, +{args.latency_ms:g} ms per request) ..."
        )
        started = time.perf_counter()
        cpu_started = time.process_time()
        results = [run_import_batch(params, RUN, batch) for batch in batches]
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        state = httpx.get(f"{emulator.url}/_emulator/state", params={"tenant": "production"}, timeout=120).json()

    subs = Counter(i["admin_metadata"]["cognito"]["sub"] for i in state["identities"])
    duplicates = sum(n - 1 for n in subs.values())
    missing = len({line["sub"] for line in lines} - set(subs))
    imported = sum(r["imported"] + r["already_present"] for r in results)
    ledger_counts = Ledger().counts(POOL)
    counters = state["counters"]
    identities_per_s = imported / elapsed
    ratio = identities_per_s / args.rate
    print(
        f"imported {imported} in {elapsed:.2f} s; emulator holds {len(state['identities'])} identities "
        f"({missing} missing), {counters['requests_total']} requests, {counters['rate_limited']} answered 429; "
        f"ledger {ledger_counts}; client CPU {cpu / max(1, imported) * 1000:.2f} ms/identity"
    )
    print(
        f"RESULT load identities_per_s={identities_per_s:.2f} bound={args.rate:g} ratio={ratio:.3f} "
        f"duplicates={duplicates}"
    )
    ok = ratio >= 0.85 and duplicates == 0 and missing == 0 and imported == args.users
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
