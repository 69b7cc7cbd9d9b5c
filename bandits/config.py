"""Service settings: the one place that reads ``BANDITS_*`` environment variables.

Every setting is validated when the service starts; a bad value stops it with a message naming the
variable. Defaults are safe for a laptop (SQLite file in the working directory); in production
(``BANDITS_ENV=production``) the embedded SQLite default and a missing admin key are refused.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///bandits.db"


class ConfigError(Exception):
    """A setting has a value the service cannot start with."""


class Settings(BaseSettings):
    """Settings read from ``BANDITS_<NAME>`` environment variables (documented in docs/configuration.md)."""

    model_config = SettingsConfigDict(env_prefix="BANDITS_", extra="ignore")

    env: Literal["dev", "production"] = "dev"
    database_url: str = DEFAULT_DATABASE_URL
    admin_key: str | None = Field(default=None, min_length=16)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # How long an api process trusts its cached copy of a loop's config and of the API keys.
    cache_seconds: float = Field(default=1.0, ge=0.0, le=60.0)

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, url: str) -> str:
        if not url.startswith(("sqlite://", "postgresql+psycopg://", "postgresql://")):
            raise ValueError("must start with sqlite:// or postgresql+psycopg://")
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        return url

    @model_validator(mode="after")
    def _safe_in_production(self) -> "Settings":
        if self.env == "production":
            if self.database_url == DEFAULT_DATABASE_URL:
                raise ValueError("BANDITS_ENV=production needs an explicit BANDITS_DATABASE_URL")
            if not self.admin_key:
                raise ValueError("BANDITS_ENV=production needs BANDITS_ADMIN_KEY")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(**overrides: object) -> Settings:
    """Read the environment (plus ``overrides``), raising :class:`ConfigError` with a clear message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"BANDITS_{'_'.join(str(p) for p in err['loc']).upper() or 'ENV'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None


@lru_cache(maxsize=1)
def settings_from_env() -> Settings:
    return load_settings()
