"""``python -m emulators.avnology --port 8900 --staging-key K1 --production-key K2``: run in the foreground.

Keys can also come from AVNOLOGY_STAGING_KEY / AVNOLOGY_PRODUCTION_KEY / AVNOLOGY_READONLY_KEY, which keeps
them out of the process list.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading

from emulators.avnology.server import AvnologyEmulatorServer
from emulators.avnology.settings import EmulatorSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emulators.avnology", description="Run the Avnology ID emulator in the foreground."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900, help="0 picks a free port (default 8900)")
    parser.add_argument("--staging-key", default=os.environ.get("AVNOLOGY_STAGING_KEY"))
    parser.add_argument("--production-key", default=os.environ.get("AVNOLOGY_PRODUCTION_KEY"))
    parser.add_argument(
        "--readonly-key",
        default=os.environ.get("AVNOLOGY_READONLY_KEY"),
        help="a key for the production tenant without write scopes (writes get 403)",
    )
    parser.add_argument("--rate-limit-rps", type=float, default=50.0, help="per key; 0 means unlimited")
    parser.add_argument("--rate-limit-burst", type=int, default=50)
    args = parser.parse_args(argv)

    if not args.staging_key or not args.production_key:
        parser.error("give --staging-key and --production-key (or set AVNOLOGY_STAGING_KEY/AVNOLOGY_PRODUCTION_KEY)")
    try:
        settings = EmulatorSettings(
            api_keys={args.staging_key: "staging", args.production_key: "production"},
            readonly_keys={args.readonly_key: "production"} if args.readonly_key else {},
            rate_limit_rps=args.rate_limit_rps,
            rate_limit_burst=args.rate_limit_burst,
        )
        server = AvnologyEmulatorServer(settings, host=args.host, port=args.port).start()
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    print(f"Avnology ID emulator listening on {server.url} (tenants: {', '.join(settings.tenants)})", flush=True)
    print(f"Admin API: {server.url}/_emulator/state?tenant=production, /_emulator/reset, /_emulator/faults")
    print("Ctrl-C stops.", flush=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
