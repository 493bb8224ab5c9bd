"""Alembic environment. The connection is injected by ``spendlog.db.migrate`` through
``config.attributes["connection"]`` (Alembic cookbook: "Sharing a Connection")."""

from __future__ import annotations

from alembic import context

from spendlog.db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from spendlog.db.engine import make_engine

        engine = make_engine(config.get_main_option("sqlalchemy.url"), pool=False)
        with engine.connect() as connection:
            _run(connection)
        engine.dispose()
    else:
        _run(connection)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("spendlog migrations run online only: use `spendlog db upgrade`")
run_migrations_online()
