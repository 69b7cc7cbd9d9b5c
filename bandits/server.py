"""Run the api under gunicorn (gthread workers: threads share a process's group commit)."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from bandits.config import Settings


class GunicornServer(BaseApplication):
    """Gunicorn with our app factory; each worker builds its own app after the fork."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        from bandits.api import create_app

        return create_app(self._settings, {"POOL_SIZE": self._options.get("threads", 1) + 2})


def gunicorn_options(host: str, port: int, workers: int, threads: int, access_log: bool) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "proc_name": "bandits",
    }
    if access_log:
        options["accesslog"] = "-"
    return options
