"""The HTTP api (Flask). ``create_app`` builds it; nothing runs at import."""

from __future__ import annotations

from typing import Any

from flask import Flask

from bandits.config import Settings, load_settings
from bandits.jobs.worker import EvaluationService, TuningService
from bandits.services.decisions import DecisionService
from bandits.services.loops import LoopService
from bandits.services.models import ModelService
from bandits.services.runtime import KeyCache, LoopCache
from bandits.store.db import Database


class Services:
    """What one api process holds: the database, caches and services."""

    def __init__(self, settings: Settings, pool_size: int = 10) -> None:
        self.settings = settings
        self.db = Database(settings, pool_size=pool_size)
        self.loops = LoopCache(self.db, settings.cache_seconds)
        self.keys = KeyCache(self.db, settings.cache_seconds, settings.admin_key)
        self.decisions = DecisionService(self.db)
        self.admin = LoopService(self.db)
        self.models = ModelService(self.db)
        self.evaluations = EvaluationService(self.db)
        self.tunings = TuningService(self.db)

    def close(self) -> None:
        self.decisions.close()
        self.db.dispose()


def create_app(settings: Settings | None = None, config: dict[str, Any] | None = None) -> Flask:
    from bandits.api import (
        errors, evaluations, events, exports, health, loops, models, openapi, tunings,
    )

    settings = settings or load_settings()
    app = Flask("bandits")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config.update(config or {})
    app.extensions["bandits"] = Services(settings, pool_size=app.config.get("POOL_SIZE", 10))
    errors.init_app(app)
    for module in (health, loops, events, models, evaluations, tunings, exports, openapi):
        app.register_blueprint(module.bp)
    if app.config.get("FAST_CHOOSE", True):  # False: every request through Flask (tests compare)
        from bandits.api.fast import FastChoose

        app.wsgi_app = FastChoose(  # type: ignore[method-assign]
            app.wsgi_app, app.extensions["bandits"], settings.max_body_bytes
        )
    return app
