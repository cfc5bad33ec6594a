"""Create the ledger's database (when the server lacks it) and its tables, before any task writes to it.

docker-compose's airflow-init runs this, and so does the real-scheduler end-to-end test, so the deployment's
path is the tested one. The ledger lives on the deployment's PostgreSQL server in a database of its own
(``cognito_migration`` by default): it is not Airflow's metadata database, which tasks cannot touch.

    python deploy/ledger_init.py                   # COGNITO_MIGRATION_LEDGER_URL, or the embedded default
    python deploy/ledger_init.py postgresql+psycopg2://user:pw@host/db
"""

from __future__ import annotations

import argparse
import sys

import sqlalchemy as sa


def ensure_database(url: str) -> bool:
    """Create a PostgreSQL ledger database that does not exist yet; True if it was created.

    Connects to the server's ``postgres`` database with the same credentials; other backends (the SQLite
    default) create their file on first use and need nothing here.
    """
    target = sa.make_url(url)
    if target.get_backend_name() != "postgresql" or not target.database:
        return False
    if target.drivername == "postgresql":  # SQLAlchemy 2.1 would pick psycopg 3; the project ships psycopg2
        target = target.set(drivername="postgresql+psycopg2")
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}
            ).scalar()
            if exists:
                return False
            quoted = admin.dialect.identifier_preparer.quote(target.database)
            conn.execute(sa.text(f"CREATE DATABASE {quoted}"))
            return True
    finally:
        admin.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", help="ledger URL (default: COGNITO_MIGRATION_LEDGER_URL)")
    args = parser.parse_args(argv)

    from cognito_migration import config
    from cognito_migration.ledger import Ledger

    url = args.url or config.ledger_url()
    shown = sa.make_url(url).render_as_string(hide_password=True)
    try:
        created = ensure_database(url)
        ledger = Ledger(url).create_schema()
        ledger.engine.dispose()
    except sa.exc.SQLAlchemyError as exc:
        # The driver's message can echo the URL; print only its class and the URL without the password.
        print(f"error: the ledger at {shown} is not reachable or not writable ({type(exc).__name__})", file=sys.stderr)
        return 2
    print(f"ledger ready at {shown}" + (" (database created)" if created else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
