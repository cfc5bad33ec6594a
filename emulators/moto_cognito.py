"""Cognito for local runs: moto as a real HTTP server that boto3 reaches over the network."""

from __future__ import annotations

import logging
from typing import Any

import boto3
import httpx
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from emulators.ports import ensure_port_free, free_port

REGION = "us-east-1"
# moto accepts any credentials; these are its documented test values, not secrets.
TEST_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class MotoServer:
    """``with MotoServer() as moto: moto.client("cognito-idp")`` — moto on a free loopback port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, region: str = REGION) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.region = region
        self._server: ThreadedMotoServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoServer:
        ensure_port_free(self.host, self.port, "moto (Cognito)")
        # One access-log line per request would drown the task logs.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        httpx.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def client(self, service: str = "cognito-idp", **kwargs: Any) -> Any:
        return boto3.client(service, region_name=self.region, endpoint_url=self.url, **TEST_CREDENTIALS, **kwargs)
