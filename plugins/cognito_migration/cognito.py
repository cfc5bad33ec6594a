"""Cognito reader: a thin hook around the ``cognito-idp`` client (the amazon provider has no Cognito hook).

The paging, checkpointing and budget logic live in :mod:`cognito_migration.extract`; this module only builds the
client, with botocore's adaptive retries unless the connection chose its own retry settings.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.config import Config

from cognito_migration import config

# Adaptive mode retries TooManyRequestsException with backoff *and* slows the client's own sending rate after a
# throttle; the legacy default mode does not treat Cognito's throttle as retryable.
DEFAULT_RETRIES = {"mode": "adaptive", "max_attempts": 10}


class CognitoHook(AwsBaseHook):
    """``cognito-idp`` client from an Airflow AWS connection (endpoint and retry mode come from its extra)."""

    def __init__(self, aws_conn_id: str = config.COGNITO_CONN_ID, region_name: str | None = None, **kwargs: Any):
        super().__init__(aws_conn_id=aws_conn_id, region_name=region_name, client_type="cognito-idp", **kwargs)

    @cached_property
    def client(self) -> Any:  # type: ignore[override]
        botocore_config = self.config
        if not (botocore_config.retries or {}).get("mode"):
            botocore_config = botocore_config.merge(Config(retries=DEFAULT_RETRIES))
        return self.get_client_type(region_name=self.region_name, config=botocore_config)
