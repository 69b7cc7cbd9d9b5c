"""Run the Alembic migrations in ``migrations/`` against the configured database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Config:
    if not (MIGRATIONS_DIR / "env.py").exists():
        raise RuntimeError(f"migrations not found at {MIGRATIONS_DIR}; install bandits from a checkout")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def pending(engine: Engine) -> bool:
    """True when the database is behind the newest migration."""
    script = ScriptDirectory.from_config(alembic_config(str(engine.url)))
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    return set(current) != set(script.get_heads())
