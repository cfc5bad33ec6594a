"""The local stack: Cognito (moto), Avnology ID (our emulator) and SMTP (aiosmtpd), each a real server on loopback.

One entry point for the demo, ``make stack``, ``make ui`` and the pytest fixtures, so they all run the same
servers. ``connection_env()`` gives the ``AIRFLOW_CONN_*`` variables that point Airflow's connections at them.

    python -m emulators.stack                 # foreground, prints the connections; Ctrl-C stops
    python -m emulators.stack --seed-users 2000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulators.airflow_home import PROJECT_ROOT
from emulators.moto_cognito import REGION, TEST_CREDENTIALS, MotoServer
from emulators.smtp_sink import SmtpSink

FROM_ADDRESS = "migration@example.com"


@dataclass
class StackConfig:
    moto_port: int = 0
    avnology_port: int = 0
    smtp_port: int = 0
    region: str = REGION
    avnology_rate_limit_rps: float = 0.0  # 0: unlimited; the client's own limit is what the demo exercises
    avnology_rate_limit_burst: int = 0


class LocalStack:
    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        # Fresh test keys per stack; they look like real ones (ak_test_) so the client's key handling is exercised.
        self.staging_key = "ak_test_stg_" + secrets.token_hex(16)
        self.production_key = "ak_test_prd_" + secrets.token_hex(16)
        self.readonly_key = "ak_test_ro_" + secrets.token_hex(16)
        self.moto = MotoServer(port=self.config.moto_port, region=self.config.region)
        self.smtp = SmtpSink(port=self.config.smtp_port)
        self.avnology: Any = None
        self._started: list[Any] = []

    def start(self) -> LocalStack:
        from emulators.avnology import AvnologyEmulatorServer, EmulatorSettings

        try:
            self._started.append(self.moto.start())
            settings = EmulatorSettings(
                api_keys={self.staging_key: "staging", self.production_key: "production"},
                readonly_keys={self.readonly_key: "production"},
                rate_limit_rps=self.config.avnology_rate_limit_rps,
                rate_limit_burst=self.config.avnology_rate_limit_burst,
            )
            self.avnology = AvnologyEmulatorServer(settings, host="127.0.0.1", port=self.config.avnology_port)
            self.avnology.start()
            self._started.append(self.avnology)
            self._started.append(self.smtp.start())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        while self._started:
            server = self._started.pop()
            try:
                server.stop()
            except Exception as exc:  # keep stopping the others; report, do not mask the original error
                print(f"warning: stopping {type(server).__name__} failed: {exc}", file=sys.stderr)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def avnology_url(self) -> str:
        return str(self.avnology.url)

    def cognito_client(self) -> Any:
        return self.moto.client("cognito-idp")

    def connection_env(self) -> dict[str, str]:
        """``AIRFLOW_CONN_*`` JSON for the four connections the DAGs use (see cognito_migration.config)."""
        aws = {
            "conn_type": "aws",
            "login": TEST_CREDENTIALS["aws_access_key_id"],
            "password": TEST_CREDENTIALS["aws_secret_access_key"],
            "extra": {
                "region_name": self.config.region,
                "service_config": {
                    "cognito-idp": {"endpoint_url": self.moto.url},
                    "s3": {"endpoint_url": self.moto.url},
                },
                "config_kwargs": {"retries": {"mode": "adaptive", "max_attempts": 10}},
            },
        }

        def avnology(key: str) -> dict[str, Any]:
            return {
                "conn_type": "avnology",
                "host": self.avnology_url,
                "password": key,
                "extra": {"timeout": 30, "max_concurrency": 8, "rate_limit_rps": 100},
            }

        smtp = {
            "conn_type": "smtp",
            "host": self.smtp.host,
            "port": self.smtp.port,
            "extra": {"disable_ssl": True, "disable_tls": True, "from_email": FROM_ADDRESS, "timeout": 10},
        }
        return {
            "AIRFLOW_CONN_AWS_COGNITO": json.dumps(aws),
            "AIRFLOW_CONN_AWS_STORAGE": json.dumps(aws),
            "AIRFLOW_CONN_AVNOLOGY_STAGING": json.dumps(avnology(self.staging_key)),
            "AIRFLOW_CONN_AVNOLOGY_PRODUCTION": json.dumps(avnology(self.production_key)),
            "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(smtp),
        }

    def apply_env(self) -> None:
        os.environ.update(self.connection_env())


def write_env_file(stack: LocalStack, path: Path | None = None) -> Path:
    """Write the connection variables to a private file, so keys never go to the terminal or a log."""
    path = path or PROJECT_ROOT / "var" / "stack.env"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        for key, value in stack.connection_env().items():
            fh.write(f"export {key}={shlex.quote(value)}\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moto-port", type=int, default=5055)
    parser.add_argument("--avnology-port", type=int, default=8900)
    parser.add_argument("--smtp-port", type=int, default=8025)
    parser.add_argument("--seed-users", type=int, default=2000, help="users to seed into a new pool (0: none)")
    args = parser.parse_args(argv)

    stack = LocalStack(
        StackConfig(moto_port=args.moto_port, avnology_port=args.avnology_port, smtp_port=args.smtp_port)
    )
    try:
        stack.start()
    except Exception as exc:
        print(f"error: the local stack could not start: {exc}", file=sys.stderr)
        return 2
    try:
        print(f"Cognito (moto):       {stack.moto.url}")
        print(f"Avnology emulator:    {stack.avnology_url}   (admin: {stack.avnology_url}/_emulator/state)")
        print(f"SMTP sink:            {stack.smtp.host}:{stack.smtp.port}")
        if args.seed_users:
            from emulators.cognito_seed import seed_pool

            pool = seed_pool(stack.cognito_client(), users=args.seed_users)
            print(f"Seeded user pool:     {pool.user_pool_id} ({args.seed_users} users)")
        env_file = write_env_file(stack)
        print(f"\nAirflow connections (they hold the emulator's API keys): source {env_file}")
        print("\nRunning; Ctrl-C stops.")
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
