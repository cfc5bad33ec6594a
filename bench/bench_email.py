"""Benchmark: the reset-email campaign against the local SMTP sink at a configured sending rate.

Sends ``--users`` emails (default 5,000) at ``--rate`` messages/s (default 100) through the real path (ledger
claim → render → SMTP through SmtpHook → mark sent), then counts what the server received. The rate is a
ceiling the provider imposes, so the target is to use it (ratio ≥ 0.9) without exceeding it, and never to send
a user two messages (duplicates = 0).

The SMTP sink runs in its own process, as a provider does: in the sender's process it would compete with the
campaign for the interpreter lock, and the benchmark would measure that instead of the campaign.

    python bench/bench_email.py [--users 5000] [--rate 100]

Ends with ``RESULT email sent_per_s=<v> bound=<configured> ratio=<v/bound> duplicates=<n>``; exits 1 when a
target is missed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

POOL = "us-east-1_BenchMail"
RUN = "bench_email"


# The sink process: serve until a line arrives on stdin, then print what was received as JSON.
SINK = """
import json, logging, sys
from collections import Counter
from emulators.smtp_sink import SmtpSink
logging.getLogger("mail.log").setLevel(logging.WARNING)
with SmtpSink() as sink:
    print(sink.port, flush=True)
    sys.stdin.readline()
    print(json.dumps(Counter(r for m in sink.messages for r in m.recipients)), flush=True)
"""


class _SinkProcess:
    """``emulators.smtp_sink.SmtpSink`` in a child process; :meth:`received` stops it and returns its inbox."""

    def __enter__(self) -> _SinkProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self._proc = subprocess.Popen(
            [sys.executable, "-c", SINK], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.strip().isdigit():
            self._proc.kill()
            raise RuntimeError(f"the SMTP sink process did not start (said {line!r})")
        self.port = int(line)
        return self

    def received(self) -> Counter[str]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write("stop\n")
        self._proc.stdin.flush()
        return Counter(json.loads(self._proc.stdout.readline()))

    def __exit__(self, *exc: object) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=100.0, help="configured emails_per_second")
    args = parser.parse_args(argv)
    if args.users < 1 or args.rate <= 0:
        parser.error("--users must be >= 1 and --rate > 0")

    workdir = Path(tempfile.mkdtemp(prefix="bench-email-"))
    os.environ["COGNITO_MIGRATION_HOME"] = str(workdir)
    os.environ.setdefault("AIRFLOW_HOME", str(workdir / "airflow"))

    from emulators.stack import FROM_ADDRESS

    with _SinkProcess() as sink:
        conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": sink.port}
        conn["extra"] = {"disable_ssl": True, "disable_tls": True, "from_email": FROM_ADDRESS, "timeout": 10}
        os.environ["AIRFLOW_CONN_SMTP_DEFAULT"] = json.dumps(conn)

        from cognito_migration import ledger as L
        from cognito_migration import notify
        from cognito_migration.params import parse_params

        logging.getLogger("cognito_migration").setLevel(logging.WARNING)
        ledger = L.Ledger(f"sqlite:///{workdir / 'ledger.db'}").create_schema()
        subs = [f"bench-{i:06d}" for i in range(args.users)]
        ledger.record_seen(
            POOL,
            [L.SeenUser(s, s, f"{s}@example.com", "CONFIRMED", True, None, first_name="Bench") for s in subs],
            run_id=RUN,
        )
        for sub in subs:
            ledger.record_import(
                POOL, sub, avnology_id=f"usr_{sub}", already_present=False, cognito_last_modified=None, run_id=RUN
            )
        form = parse_params({"user_pool_id": POOL, "email_mode": "send", "emails_per_second": args.rate})
        notify.connection_from_email()  # warm Airflow's import and config outside the timed part

        print(f"sending {args.users} emails at a configured {args.rate:g}/s to 127.0.0.1:{sink.port} ...")
        started = time.perf_counter()
        cpu_started = time.process_time()
        out = notify.send_emails_for_subs(form, RUN, subs, label="bench", ledger=ledger)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        received = sink.received()
        recorded = notify.campaign_status(ledger, POOL, form.campaign)

    expected = {f"{s}@example.com" for s in subs}
    duplicates = sum(n - 1 for n in received.values()) + sum(n for r, n in received.items() if r not in expected)
    missing = len(expected - set(received))
    sent_per_s = out["sent"] / elapsed
    ratio = sent_per_s / args.rate
    print(
        f"sent {out['sent']} in {elapsed:.2f} s; server received {sum(received.values())} "
        f"({missing} missing); ledger {recorded}; retries {out['retries']}; "
        f"sender CPU {cpu / max(1, out['sent']) * 1000:.2f} ms/email"
    )
    print(f"RESULT email sent_per_s={sent_per_s:.2f} bound={args.rate:g} ratio={ratio:.3f} duplicates={duplicates}")
    ok = ratio >= 0.9 and ratio <= 1.02 and duplicates == 0 and missing == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
