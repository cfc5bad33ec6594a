"""Benchmark of the password migration hook (issue 9): N concurrent signed verifications on loopback.

Three processes, as in a deployment: moto (Cognito) and the hook (``python -m password_hook``) each run as
their own server, and this process is the load generator (httpx, asyncio). The pool holds one user per
request, so no two requests share a body (identical signed bodies in the same second would be replays);
a quarter of them carry a wrong password. The hook's quota slice is raised for the run, so the figures
measure the service (signature, limits, AdminInitiateAuth on moto, the ledger write), not the pacing.

Checks, counted as errors: every answer is the expected ``password_match`` / ``password_mismatch``, and the
ledger ends with exactly one hook-migrated row per match. For scale, the same calls are first made straight
to moto (boto3, same concurrency): that floor is what Cognito-on-this-machine costs without the hook.
The last line is machine-readable:

    RESULT hook p50_ms=<v> p99_ms=<v> errors=<n>

    python bench/bench_hook.py [--requests 400] [--concurrency 16] [--no-record]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

import boto3  # noqa: E402
import httpx  # noqa: E402
from botocore.config import Config  # noqa: E402

from cognito_migration.ledger import Ledger, SeenUser  # noqa: E402
from password_hook.app import HOOK_PATH  # noqa: E402
from password_hook.core import compute_signature  # noqa: E402

PASSWORD = "Bench-pass-42!"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}  # moto's test values
RESULTS = ROOT / "bench" / "RESULTS.md"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(cmd: list[str], env: dict[str, str], ready_url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[2]} exited with {proc.returncode}; see {log}")
        try:
            httpx.get(ready_url, timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"{cmd[2]} did not answer at {ready_url} within 60 s; see {log}")


def seed(moto_url: str, users: int, ledger: Ledger) -> tuple[str, str, list[str]]:
    client = boto3.client(
        "cognito-idp", region_name="us-east-1", endpoint_url=moto_url, **{k.lower(): v for k, v in CREDENTIALS.items()}
    )
    pool = client.create_user_pool(PoolName="bench-hook", UsernameAttributes=["email"])["UserPool"]["Id"]
    client_id = client.create_user_pool_client(
        UserPoolId=pool,
        ClientName="hook",
        ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    emails, seen = [], []
    for n in range(users):
        email = f"user{n:06d}@example.com"
        created = client.admin_create_user(
            UserPoolId=pool,
            Username=email,
            UserAttributes=[{"Name": "email", "Value": email}],
            MessageAction="SUPPRESS",
        )
        client.admin_set_user_password(UserPoolId=pool, Username=email, Password=PASSWORD, Permanent=True)
        sub = next(a["Value"] for a in created["User"]["Attributes"] if a["Name"] == "sub")
        seen.append(SeenUser(sub, sub, email, "CONFIRMED", True, None))
        emails.append(email)
    ledger.record_seen(pool, seen, run_id="bench")
    return pool, client_id, emails


def floor(moto_url: str, pool: str, client_id: str, emails: list[str], concurrency: int) -> list[float]:
    """Latencies of AdminInitiateAuth made directly, without the hook: the floor the hook's figures sit on."""
    client = boto3.client(
        "cognito-idp",
        region_name="us-east-1",
        endpoint_url=moto_url,
        config=Config(max_pool_connections=concurrency),
        **{k.lower(): v for k, v in CREDENTIALS.items()},
    )

    def one(n: int) -> float:
        started = time.perf_counter()
        params = {"USERNAME": emails[n], "PASSWORD": PASSWORD + ("x" if n % 4 == 3 else "")}
        with contextlib.suppress(client.exceptions.NotAuthorizedException):  # the wrong-password quarter
            client.admin_initiate_auth(
                UserPoolId=pool, ClientId=client_id, AuthFlow="ADMIN_USER_PASSWORD_AUTH", AuthParameters=params
            )
        return (time.perf_counter() - started) * 1000

    with ThreadPoolExecutor(concurrency) as pool_:
        return list(pool_.map(one, range(len(emails))))


async def load(url: str, secret: str, emails: list[str], concurrency: int) -> tuple[list[float], int, int]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors = matches = 0

    async def one(client: httpx.AsyncClient, n: int, email: str) -> None:
        nonlocal errors, matches
        wrong = n % 4 == 3
        body = json.dumps({"identifier": email, "password": PASSWORD + ("x" if wrong else "")}).encode()
        async with gate:
            timestamp = str(int(time.time()))
            headers = {
                "content-type": "application/json",
                "X-Avnology-Timestamp": timestamp,
                "X-Avnology-Signature": compute_signature(secret, timestamp, body),
            }
            started = time.perf_counter()
            try:
                response = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError:
                errors += 1
                return
            latencies.append((time.perf_counter() - started) * 1000)
        expected = {"status": "password_mismatch" if wrong else "password_match"}
        if response.status_code != 200 or response.json() != expected:
            errors += 1
        elif not wrong:
            matches += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await asyncio.gather(*(one(client, n, email) for n, email in enumerate(emails)))
    return latencies, errors, matches


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-record", action="store_true", help=f"do not append the figures to {RESULTS.name}")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")

    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="bench-hook-"))
    ledger_url = f"sqlite:///{workdir / 'ledger.db'}"
    ledger = Ledger(ledger_url).create_schema()
    env = {**os.environ, **CREDENTIALS, "PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}"}
    moto_port, hook_port = free_port(), free_port()
    moto_url, hook_url = f"http://127.0.0.1:{moto_port}", f"http://127.0.0.1:{hook_port}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        moto_cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)]
        procs.append(start(moto_cmd, env, f"{moto_url}/moto-api/", workdir / "moto.log"))
        seed_started = time.perf_counter()
        pool, client_id, emails = seed(moto_url, args.requests, ledger)
        print(f"seeded {len(emails)} users in {time.perf_counter() - seed_started:.1f} s")
        direct = floor(moto_url, pool, client_id, emails, args.concurrency)
        floor_p50, floor_p99 = statistics.median(direct), percentile(direct, 0.99)
        print(f"floor (AdminInitiateAuth straight to moto): p50 {floor_p50:.1f} ms, p99 {floor_p99:.1f} ms")

        secret = "whsec_" + secrets.token_urlsafe(24)
        hook_env = {
            **env,
            "PASSWORD_HOOK_WEBHOOK_SECRET": secret,
            "PASSWORD_HOOK_USER_POOL_ID": pool,
            "PASSWORD_HOOK_CLIENT_ID": client_id,
            "PASSWORD_HOOK_COGNITO_ENDPOINT_URL": moto_url,
            "PASSWORD_HOOK_COGNITO_RPS": "10000",
            "PASSWORD_HOOK_SOURCE_LIMIT": f"{args.requests * 2}/60",
            "COGNITO_MIGRATION_LEDGER_URL": ledger_url,
        }
        hook_cmd = [sys.executable, "-m", "password_hook", "--port", str(hook_port), "--log-level", "warning"]
        procs.append(start(hook_cmd, hook_env, f"{hook_url}/healthz", workdir / "hook.log"))

        started = time.perf_counter()
        latencies, errors, matches = asyncio.run(load(hook_url + HOOK_PATH, secret, emails, args.concurrency))
        elapsed = time.perf_counter() - started
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    marked = sum(1 for row in ledger.users(pool) if row["hook_migrated_at"] is not None)
    if marked != matches:
        print(f"ledger: {marked} users marked hook-migrated, but {matches} passwords matched")
        errors += abs(marked - matches)
    p50, p99 = statistics.median(latencies) if latencies else float("nan"), percentile(latencies, 0.99)
    rate = len(latencies) / elapsed
    print(f"{args.requests} verifications, concurrency {args.concurrency}: {rate:.0f}/s, {matches} matches marked")
    if not args.no_record:
        with RESULTS.open("a") as fh:
            fh.write(
                f"\n## hook — {dt.date.today().isoformat()}, {os.cpu_count()} cores\n"
                f"`python bench/bench_hook.py --requests {args.requests} --concurrency {args.concurrency}`: "
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, {rate:.0f} verifications/s, errors {errors}; "
                f"floor (the same AdminInitiateAuth calls straight to moto) p50 {floor_p50:.1f} ms, p99 {floor_p99:.1f} ms. "
                "moto, the hook and the load generator share the machine "
                f"(1-min load average {load_before:.1f} at the start); quota slice raised to 10,000/s.\n"
            )
    if errors:
        print(f"the servers' logs and the ledger are kept in {workdir}")
    else:
        ledger.engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"RESULT hook p50_ms={p50:.1f} p99_ms={p99:.1f} errors={errors}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
