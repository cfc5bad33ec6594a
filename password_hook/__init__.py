"""Password migration hook: Avnology ID asks it, at sign-in, whether a password is the user's Cognito password.

Two entry points share :class:`password_hook.core.PasswordHook`: an ASGI app (``password_hook.app.create_app``)
and an AWS Lambda handler (``password_hook.lambda_handler.handler``). It needs no Airflow; it records matches in
the pipeline's ledger (``cognito_migration.ledger``), which a checkout keeps under ``plugins/``.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _find_ledger_package() -> None:
    """In a checkout, make ``plugins/`` importable; a container or Lambda bundle ships the package alongside."""
    try:
        import cognito_migration  # noqa: F401
    except ImportError:
        plugins = Path(__file__).resolve().parents[1] / "plugins"
        if (plugins / "cognito_migration").is_dir():
            sys.path.append(str(plugins))


_find_ledger_package()
