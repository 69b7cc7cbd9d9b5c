"""Migrations on an empty database, on each backend: they build exactly what the models declare."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from bandits.config import load_settings
from bandits.store import migrate
from bandits.store.db import Database
from bandits.store.models import Base
from tests.conftest import _postgres_database

TABLES = {"loops", "loop_config_versions", "api_keys", "decisions", "outcomes"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database(request, tmp_path) -> Iterator[Database]:
    """A brand-new, unmigrated database (Postgres: its own, not the session's, dropped after)."""
    if request.param == "sqlite":
        database = Database(load_settings(database_url=f"sqlite:///{tmp_path / 'migrations.db'}"))
        yield database
        database.dispose()
        return
    # Skips like conftest when Postgres is unreachable, and fails instead under CI=true.
    postgres = _postgres_database()
    url = next(postgres)
    database = Database(load_settings(database_url=url), pool_size=1)
    try:
        yield database
    finally:
        database.dispose()
        postgres.close()  # drops the database


def model_differences(engine: Engine) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def current_revisions(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def downgrade(engine: Engine, revision: str) -> None:
    config = migrate.alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def head() -> set[str]:
    return set(ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_heads())


def test_upgrade_builds_what_the_models_declare(empty_database):
    engine = empty_database.engine
    assert migrate.pending(engine) is True
    assert current_revisions(engine) == set()

    migrate.upgrade(engine)

    assert migrate.pending(engine) is False
    assert current_revisions(engine) == head()
    assert TABLES <= set(inspect(engine).get_table_names())
    assert model_differences(engine) == []


def test_downgrade_to_base_and_upgrade_again(empty_database):
    engine = empty_database.engine
    migrate.upgrade(engine)

    downgrade(engine, "base")
    assert migrate.pending(engine) is True
    assert current_revisions(engine) == set()
    assert not TABLES & set(inspect(engine).get_table_names())

    migrate.upgrade(engine)
    assert migrate.pending(engine) is False
    assert model_differences(engine) == []


def test_upgrade_twice_is_a_no_op(empty_database):
    engine = empty_database.engine
    migrate.upgrade(engine)
    migrate.upgrade(engine)
    assert migrate.pending(engine) is False
    assert model_differences(engine) == []
