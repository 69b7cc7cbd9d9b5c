"""What the api (``GET /v1/loops/{loop}/export``) and ``bandits export`` share: checking the
request, and reading its window page by page (keyset pages from
:func:`bandits.store.jobs.window_pages`, the deferred decisions never activated included), so
memory does not grow with the log."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bandits.errors import unprocessable
from bandits.export.dsjson import dsjson_lines
from bandits.loop_config import LoopConfig
from bandits.services.loops import loop_or_404
from bandits.store.db import Database
from bandits.store.jobs import LoggedEvent, count_window, window_pages

FORMATS = ("dsjson", "parquet")
PAGE_SIZE = 1000
# An open window: from the first decision to the last one (both inside what either backend stores).
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9999, 1, 1, tzinfo=timezone.utc)


class ExportQuery(BaseModel):
    """The query of ``GET /v1/loops/{loop}/export``."""

    model_config = ConfigDict(extra="forbid")

    format: str = Field(default="dsjson", description="`dsjson` (default) or `parquet`.")
    since: datetime | None = Field(
        default=None, description="First moment (inclusive), ISO 8601; UTC when it has no zone. "
        "Default: the first decision.")
    until: datetime | None = Field(
        default=None, description="Last moment (exclusive), ISO 8601; UTC when it has no zone. "
        "Default: after the last decision.")


def _utc(moment: datetime | None, default: datetime) -> datetime:
    if moment is None:
        return default
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def parse_query(raw: dict[str, Any]) -> ExportQuery:
    """The checked query: 422 ``UnknownExportFormat``, ``InvalidWindow`` or
    ``InvalidExportRequest`` (an unknown parameter)."""
    try:
        query = ExportQuery.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in error["loc"])
        if field in ("since", "until"):
            raise unprocessable("InvalidWindow", f"{field}: {error['msg']} (give ISO 8601, e.g. "
                                "2026-01-31T00:00:00Z)", field) from None
        message = "unknown parameter" if error["type"] == "extra_forbidden" else error["msg"]
        raise unprocessable("InvalidExportRequest", f"{field}: {message}", field) from None
    if query.format not in FORMATS:
        raise unprocessable("UnknownExportFormat", f"format {query.format!r} is not one of "
                            f"{', '.join(FORMATS)}", "format")
    since, until = _utc(query.since, EARLIEST), _utc(query.until, LATEST)
    if until <= since:
        raise unprocessable("InvalidWindow", "until must be after since", "until")
    return query.model_copy(update={"since": since, "until": until})


@dataclass(frozen=True)
class Export:
    """One loop's window, ready to stream: its config (current weights), and the window."""

    db: Database
    loop: str
    loop_id: int
    config: LoopConfig
    since: datetime
    until: datetime

    def count(self) -> int:
        """Decisions in the window (the deferred never activated included)."""
        with self.db.session() as session:
            return count_window(self.loop_id, self.since, self.until, session=session, unactivated=True)

    def pages(self, page_size: int | None = None) -> Iterator[list[LoggedEvent]]:
        """The window in time order, ``page_size`` (:data:`PAGE_SIZE`) decisions at a time, each
        with its outcomes."""
        return window_pages(self.db, self.loop_id, self.since, self.until, page_size or PAGE_SIZE,
                            unactivated=True)


def open_export(db: Database, loop: str, query: ExportQuery) -> Export:
    """The export of ``loop`` over the query's window; 404 ``LoopNotFound``."""
    with db.session() as session:
        row = loop_or_404(loop, session)
        config = LoopConfig.model_validate(row.config)
        loop_id = row.id
    assert query.since is not None and query.until is not None, "parse_query fills the window"
    return Export(db, loop, loop_id, config, query.since, query.until)


def dsjson_stream(export: Export, page_size: int | None = None) -> Iterator[bytes]:
    """The window as DSJSON, one chunk of lines per page."""
    for page in export.pages(page_size):
        yield dsjson_lines(export.config, page)
