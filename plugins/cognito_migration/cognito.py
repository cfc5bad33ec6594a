"""Cognito reader: a thin hook around the ``cognito-idp`` client (the amazon provider has no Cognito hook)."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from cognito_migration import config


class CognitoHook(AwsBaseHook):
    """``cognito-idp`` client from an Airflow AWS connection (endpoint and retry mode come from its extra)."""

    def __init__(self, aws_conn_id: str = config.COGNITO_CONN_ID, region_name: str | None = None, **kwargs: Any):
        super().__init__(aws_conn_id=aws_conn_id, region_name=region_name, client_type="cognito-idp", **kwargs)

    @cached_property
    def client(self) -> Any:  # type: ignore[override]
        return self.get_conn()
