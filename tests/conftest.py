"""Fixtures: every api test runs against real SQLite and real PostgreSQL.

PostgreSQL comes from BANDITS_TEST_POSTGRES_URL (default: the machine's server, database `test`).
Each test session creates its own database and drops it at the end. When the server cannot be
reached the Postgres tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bandits.api import create_app
from bandits.config import load_settings
from bandits.services.loops import LoopService
from bandits.store import migrate
from bandits.store.db import Database

POSTGRES_URL = os.environ.get(
    "BANDITS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
ADMIN_KEY = "test-admin-key-0123456789abcdef"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _postgres_database() -> Iterator[str]:
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        admin.dispose()
        message = f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc.__class__.__name__}: {exc}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    name = f"bandits_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database for this test session."""
    yield from _postgres_database()


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_url: str) -> str:
    database = Database(load_settings(database_url=postgres_url))
    migrate.upgrade(database.engine)
    database.dispose()
    return postgres_url


TABLES = ("jobs", "outcomes", "decisions", "action_pools", "api_keys", "loop_config_versions",
          "loops")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> Iterator[str]:
    """A migrated, empty database on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'bandits.db'}"
        database = Database(load_settings(database_url=url))
        migrate.upgrade(database.engine)
        database.dispose()
        yield url
        return
    url = request.getfixturevalue("migrated_postgres_url")
    yield url
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def settings(database_url: str):
    return load_settings(database_url=database_url, admin_key=ADMIN_KEY, cache_seconds=0.0)


@pytest.fixture
def app(settings):
    app = create_app(settings, {"TESTING": True})
    yield app
    app.extensions["bandits"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def db(app) -> Database:
    return app.extensions["bandits"].db


ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def loop_key(app) -> str:
    """Creates loop `shop` (objectives click and revenue) and returns its key."""
    created = LoopService(app.extensions["bandits"].db).create(
        "shop",
        {"objectives": [{"name": "click"}, {"name": "revenue", "weight": 0.1}], "max_actions": 20},
    )
    return created["key"]


@pytest.fixture
def auth(loop_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {loop_key}"}


def pytest_collection_modifyitems(config, items):
    """With pytest-xdist (``-n 2 --dist loadgroup``), the end-to-end tests run one after another
    on one worker: they time rewards against reward windows, so they do not share the machine
    with each other; the other tests are spread over the workers."""
    if not config.pluginmanager.hasplugin("xdist"):  # -p no:xdist: its marker is unknown
        return
    for item in items:
        if item.get_closest_marker("e2e") is not None:
            item.add_marker(pytest.mark.xdist_group("e2e"))
