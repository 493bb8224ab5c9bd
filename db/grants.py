"""The GRANTs that make a PostgreSQL role read-only on the ledger: what the dashboard (and
``spendlog export`` / ``summary``) need, and nothing that writes.

``readonly_grants(conn, role)`` returns them for the connection's database and current schema:
CONNECT on the database, USAGE on the schema, SELECT on every table in it, and default privileges
so tables a later migration creates are readable too. ``ALTER DEFAULT PRIVILEGES`` covers tables
created by the role that runs it, so run the statements as the role that runs
``spendlog db upgrade``. Roles are quoted as identifiers, never pasted into SQL as given.

``budget_webhooks`` holds secrets (webhook URLs, issue 16): the role's SELECT on it is revoked
again, so a dashboard reader never holds them. A table made by a later upgrade is readable by the
default privileges, so run the grants again after upgrading a ledger to revision 0005.
"""

from __future__ import annotations

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

__all__ = ["readonly_grants", "SECRET_TABLE"]

SECRET_TABLE = "budget_webhooks"


def readonly_grants(conn: Connection, role: str) -> list[str]:
    """The statements granting ``role`` read-only access (PostgreSQL only)."""
    if conn.dialect.name != "postgresql":
        raise ValueError("read-only roles are a PostgreSQL feature (a SQLite reader opens the file read-only)")
    if not role or "\x00" in role:
        raise ValueError(f"{role!r} is not a role name")
    database, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
    if schema is None:
        raise ValueError("the connection has no current schema (check the URL's search_path)")
    quote = conn.dialect.identifier_preparer.quote_identifier
    who, db, sch = quote(role), quote(database), quote(schema)
    statements = [
        f"GRANT CONNECT ON DATABASE {db} TO {who}",
        f"GRANT USAGE ON SCHEMA {sch} TO {who}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {sch} TO {who}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {sch} GRANT SELECT ON TABLES TO {who}",
    ]
    if inspect(conn).has_table(SECRET_TABLE):
        statements.append(f"REVOKE ALL ON TABLE {sch}.{quote(SECRET_TABLE)} FROM {who}")
    return statements
