"""Benchmark: export a 30,000-user pool through a Cognito-like quota, with awscli and with our extractor.

What runs, each in its own process as the real systems are (so none measures another's interpreter lock):

- **moto** holding the pool, seeded through its in-process backend (``python -m emulators.cognito_seed --serve
  --fast --fastpath``). ``emulators.moto_fastpath`` makes its ListUsers cheap (~50 ms of CPU a page otherwise),
  so that moto's CPU is not what gets measured; it answers exactly what moto answers.
- **the throttling proxy** in front of it (``python -m emulators.throttle_proxy``), modelling Cognito's quota
  categories: UserList (ListUsers + ListUsersInGroup) at **30 RPS** per account, a token bucket holding one second
  of quota, over-quota requests answered at once with ``TooManyRequestsException`` and never queued.
- **Latency assumption:** every forwarded request takes **150 ms ± 30 ms** in total (uniform), our assumption for
  a ListUsers round trip carrying a 60-user page to a client in the pool's Region. moto's own time counts toward it.

Runs:

1. ``aws cognito-idp list-users`` (the guide's method; awscli from PyPI, ``--endpoint-url`` to the proxy, its
   defaults, so it pages itself at 60 users). Timed from process start to exit, output checked.
2. Our extractor (``cognito_migration.extract.extract_shard``, the code the ``extract`` task runs) at budget
   30: 16 ``sub`` shards, 8 at a time (the ``cognito_userlist`` pool's slots), each paced at 30/8 req/s.
   Bound: budget × 60 users/s.
3. Contention: a simulated production app spends a steady 8 RPS of the same UserList quota (user lookups,
   ``ListUsers Filter='sub = "…"'``, no retries so every throttle shows) while our extractor runs at its default
   budget of 20. We count the app's throttles during the export.
4. (information) the same contention with no budget at all: 16 shards at once, unpaced.

Prints ``RESULT extract_contention prod_throttled=<n> users_per_s=<v> ratio=<v/(20*60)>`` and then
``RESULT extract users_per_s=<v> bound=<budget*60> ratio=<v/bound> vs_awscli=<v/awscli>``. Targets: ratio ≥ 0.85,
vs_awscli ≥ 3, 0 users lost or duplicated, prod_throttled = 0; exits 1 when one is missed. Appends the figures
to bench/RESULTS.md unless ``--no-record``.

    python bench/bench_extract.py [--users 30000] [--latency-ms 150] [--jitter-ms 30] [--skip-unbudgeted]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

import boto3  # noqa: E402
import httpx  # noqa: E402
from botocore.config import Config  # noqa: E402

from cognito_migration import storage  # noqa: E402
from cognito_migration.cognito import DEFAULT_RETRIES  # noqa: E402
from cognito_migration.extract import (  # noqa: E402
    USERLIST_SLOTS,
    extract_shard,
    iter_extracted_users,
    shard_prefixes,
    slot_limiter,
)
from cognito_migration.preflight import snapshot_pool  # noqa: E402
from cognito_migration.ratelimit import RateLimiter  # noqa: E402
from emulators.moto_cognito import REGION, TEST_CREDENTIALS  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
USERLIST_QUOTA = 30
PROD_RPS = 8.0
CONTENTION_BUDGET = 20.0
MAIN_BUDGET = 30.0
AWS = Path(sys.executable).with_name("aws")


class Service:
    """A child process that prints one JSON line when ready and runs until stdin closes or it is terminated."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"{args[:2]} exited before it was ready; see {log_path}")
        self.info: dict[str, Any] = json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


def cognito_client(endpoint: str, caller: str, retries: dict[str, Any] | None = None) -> Any:
    config = Config(retries=retries or DEFAULT_RETRIES, user_agent_extra=f"app/{caller}", max_pool_connections=4)
    return boto3.client("cognito-idp", region_name=REGION, endpoint_url=endpoint, config=config, **TEST_CREDENTIALS)


def check_export(subs: list[str], truth: set[str]) -> tuple[int, int]:
    """(lost, duplicated) of an export against the seeded pool."""
    return len(truth - set(subs)), len(subs) - len(set(subs))


def run_awscli(endpoint: str, pool_id: str, workdir: Path) -> tuple[float, list[str]]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_ACCESS_KEY_ID": TEST_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(workdir / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-aws-credentials"),
    }
    out = workdir / "awscli_users.json"
    cmd = [
        str(AWS),
        "cognito-idp",
        "list-users",
        "--user-pool-id",
        pool_id,
        "--endpoint-url",
        endpoint,
        "--output",
        "json",
    ]
    started = time.perf_counter()
    with out.open("w") as fh:
        result = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.PIPE, text=True, timeout=1800, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"awscli failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    users = json.loads(out.read_text())["Users"]
    return elapsed, [next(a["Value"] for a in u["Attributes"] if a["Name"] == "sub") for u in users]


def run_extractor(
    endpoint: str, pool_id: str, run_dir: Path, *, budget: float | None, slots: int = USERLIST_SLOTS
) -> tuple[float, list[str], int]:
    """Extract every shard as the mapped task does; returns (seconds, subs, throttles our requests met)."""
    from airflow.sdk import ObjectStoragePath

    run_path = ObjectStoragePath(f"file://{run_dir}")
    shards = shard_prefixes(16)
    snapshot = snapshot_pool(cognito_client(endpoint, "migration"), pool_id, REGION)
    storage.write_json(run_path / "snapshot.json", {**snapshot, "shards": shards})
    clients = [cognito_client(endpoint, "migration") for _ in shards]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=slots) as workers:
        futures = [
            workers.submit(
                extract_shard,
                client,
                pool_id,
                prefix,
                run_path,
                limiter=slot_limiter(budget, slots) if budget else RateLimiter(1e6),
                budget_rps=budget,
            )
            for client, prefix in zip(clients, shards, strict=True)
        ]
        summaries = [f.result() for f in futures]
    elapsed = time.perf_counter() - started
    subs = [next(a["Value"] for a in u["Attributes"] if a["Name"] == "sub") for u in iter_extracted_users(run_path)]
    return elapsed, subs, sum(s["throttles"] for s in summaries)


class ProductionApp:
    """A steady ``rps`` of UserList calls (sub lookups), like an app still signing users in on Cognito."""

    def __init__(self, endpoint: str, pool_id: str, subs: list[str], rps: float) -> None:
        # No retries: every throttle the app meets is visible to it, and counted.
        self._client = cognito_client(endpoint, "production", retries={"mode": "standard", "total_max_attempts": 1})
        self._pool_id, self._subs, self._rps = pool_id, subs, rps
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._rng = random.Random(7)
        self.ok = self.throttled = self.errors = 0
        self._workers = ThreadPoolExecutor(max_workers=4)
        self._thread = threading.Thread(target=self._pace, daemon=True)

    def _call(self, sub: str) -> None:
        try:
            self._client.list_users(UserPoolId=self._pool_id, Filter=f'sub = "{sub}"', Limit=1)
            outcome = "ok"
        except self._client.exceptions.TooManyRequestsException:
            outcome = "throttled"
        except Exception:
            outcome = "errors"
        with self._lock:
            setattr(self, outcome, getattr(self, outcome) + 1)

    def _pace(self) -> None:
        started, sent = time.monotonic(), 0
        while not self._stop.is_set():
            due = started + sent / self._rps
            pause = due - time.monotonic()
            if pause > 0 and self._stop.wait(pause):
                return
            self._workers.submit(self._call, self._rng.choice(self._subs))
            sent += 1

    def counts(self) -> tuple[int, int, int]:
        with self._lock:
            return self.ok, self.throttled, self.errors

    def __enter__(self) -> ProductionApp:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._workers.shutdown(wait=True)


def contention_run(
    proxy: Service, pool_id: str, subs: list[str], run_dir: Path, budget: float | None
) -> dict[str, Any]:
    """The production app alone for a second, then our export alongside it; the app's throttles during the export."""
    httpx.post(proxy.info["admin"] + "/reset", timeout=10).raise_for_status()
    with ProductionApp(proxy.info["url"], pool_id, subs, PROD_RPS) as app:
        time.sleep(1.5)
        before = app.counts()
        elapsed, got, ours = run_extractor(
            proxy.info["url"], pool_id, run_dir, budget=budget, slots=USERLIST_SLOTS if budget else 16
        )
        after = app.counts()
    calls = sum(after) - sum(before)
    throttled = after[1] - before[1]
    return {
        "elapsed": elapsed,
        "subs": got,
        "prod_calls": calls,
        "prod_throttled": throttled,
        "our_throttles": ours,
        "prod_errors": after[2] - before[2],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=30000)
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--jitter-ms", type=float, default=30.0)
    parser.add_argument("--skip-unbudgeted", action="store_true", help="skip run 4 (information only)")
    parser.add_argument("--no-record", action="store_true", help=f"do not append the figures to {RESULTS.name}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("cognito_migration").setLevel(logging.ERROR)  # absorbed throttles are counted, not logged

    workdir = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    services: list[Service] = []
    try:
        started = time.perf_counter()
        moto = Service(
            [
                "-m",
                "emulators.cognito_seed",
                "--serve",
                "--fast",
                "--fastpath",
                "--users",
                str(args.users),
                "--pool-name",
                "bench-pool",
                "--subs-file",
                str(workdir / "subs.txt"),
            ],
            workdir / "moto.log",
        )
        services.append(moto)
        pool_id = moto.info["user_pool_id"]
        truth = set((workdir / "subs.txt").read_text().split())
        print(
            f"moto: {len(truth)} users seeded through its in-process backend in {time.perf_counter() - started:.1f} s"
        )
        proxy = Service(
            [
                "-m",
                "emulators.throttle_proxy",
                "--upstream",
                moto.info["endpoint_url"],
                "--latency-ms",
                str(args.latency_ms),
                "--jitter-ms",
                str(args.jitter_ms),
                "--seed",
                "1",
            ],
            workdir / "proxy.log",
        )
        services.append(proxy)
        print(f"proxy: UserList {USERLIST_QUOTA} RPS, latency {args.latency_ms:g} ± {args.jitter_ms:g} ms")

        aws_s, aws_subs = run_awscli(proxy.info["url"], pool_id, workdir)
        aws_rate = len(set(aws_subs)) / aws_s
        aws_lost, aws_dup = check_export(aws_subs, truth)
        print(
            f"awscli list-users: {len(aws_subs)} users in {aws_s:.1f} s = {aws_rate:.0f} users/s "
            f"(lost {aws_lost}, duplicated {aws_dup})"
        )

        httpx.post(proxy.info["admin"] + "/reset", timeout=10).raise_for_status()
        main_s, main_subs, main_thr = run_extractor(proxy.info["url"], pool_id, workdir / "main", budget=MAIN_BUDGET)
        main_lost, main_dup = check_export(main_subs, truth)
        main_rate = len(set(main_subs)) / main_s
        bound = MAIN_BUDGET * 60
        print(
            f"extractor, budget {MAIN_BUDGET:g}: {len(main_subs)} users in {main_s:.1f} s = {main_rate:.0f} users/s "
            f"(lost {main_lost}, duplicated {main_dup}, throttles met {main_thr})"
        )

        sample = sorted(truth)
        cont = contention_run(proxy, pool_id, sample, workdir / "contention", CONTENTION_BUDGET)
        cont_lost, cont_dup = check_export(cont["subs"], truth)
        cont_rate = len(set(cont["subs"])) / cont["elapsed"]
        print(
            f"contention, budget {CONTENTION_BUDGET:g} + app at {PROD_RPS:g} RPS: {cont_rate:.0f} users/s, "
            f"app throttled {cont['prod_throttled']} of {cont['prod_calls']} calls, our throttles "
            f"{cont['our_throttles']} (lost {cont_lost}, duplicated {cont_dup})"
        )

        unbudgeted = ""
        if not args.skip_unbudgeted:
            free = contention_run(proxy, pool_id, sample, workdir / "unbudgeted", None)
            share = free["prod_throttled"] / max(1, free["prod_calls"])
            unbudgeted = (
                f"; with no budget (16 shards, unpaced) the app had {free['prod_throttled']} of "
                f"{free['prod_calls']} calls throttled ({share:.1%})"
            )
            print(
                f"contention, no budget: {len(set(free['subs'])) / free['elapsed']:.0f} users/s, app throttled "
                f"{free['prod_throttled']} of {free['prod_calls']} calls ({share:.1%})"
            )
    finally:
        for service in reversed(services):
            service.stop()

    ratio = main_rate / bound
    vs_awscli = main_rate / aws_rate
    cont_ratio = cont_rate / (CONTENTION_BUDGET * 60)
    missed = [
        name
        for name, ok in (
            ("ratio", ratio >= 0.85),
            ("vs_awscli", vs_awscli >= 3),
            ("lost/duplicated", main_lost == main_dup == cont_lost == cont_dup == 0),
            ("prod_throttled", cont["prod_throttled"] == 0),
        )
        if not ok
    ]
    if not args.no_record:
        with RESULTS.open("a") as fh:
            fh.write(
                f"\n## extract — {dt.date.today().isoformat()}, {os.cpu_count()} cores\n"
                f"`python bench/bench_extract.py` ({args.users} users; proxy: UserList {USERLIST_QUOTA} RPS, "
                f"{args.latency_ms:g} ± {args.jitter_ms:g} ms per request, assumed): awscli list-users "
                f"{aws_rate:.0f} users/s; extractor at budget {MAIN_BUDGET:g} {main_rate:.0f} users/s = "
                f"{ratio:.2f} of {bound:.0f}, {vs_awscli:.1f}× awscli, lost {main_lost}, duplicated {main_dup}. "
                f"Contention (app at {PROD_RPS:g} RPS, budget {CONTENTION_BUDGET:g}): app throttled "
                f"{cont['prod_throttled']} of {cont['prod_calls']}, {cont_rate:.0f} users/s = {cont_ratio:.2f} of "
                f"{CONTENTION_BUDGET * 60:.0f}{unbudgeted}.\n"
            )
    print(
        f"RESULT extract_contention prod_throttled={cont['prod_throttled']} users_per_s={cont_rate:.1f} "
        f"ratio={cont_ratio:.3f}"
    )
    print(f"RESULT extract users_per_s={main_rate:.1f} bound={bound:.0f} ratio={ratio:.3f} vs_awscli={vs_awscli:.2f}")
    if missed:
        print(f"missed targets: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
