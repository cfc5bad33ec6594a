"""Move an Amazon Cognito user pool to Avnology ID: the importable domain package behind the DAGs."""
