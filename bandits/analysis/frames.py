"""A loop's decision log as pandas DataFrames, read in keyset pages.

Rows come from :func:`bandits.store.jobs.window_pages` (the pages evaluation jobs and exports
read) and are made by :func:`bandits.export.parquet.record`, so a frame holds the same numbers
as the loop's Parquet export: each objective aggregated with the loop's **current** config
(:func:`bandits.learning.rewards.objective_values`) and ``reward`` scalarised with its current
weights. Deferred decisions that were never activated (never shown) are left out, as
evaluations leave them out.

Columns of ``per="decision"`` (one row per decision, in time order):

=================  ==================================================================
``event_id``       the decision's id
``ts``             when it was made (UTC)
``model_version``  the model that chose (``Int64``; 0 is the empty model)
``chosen``         the action taken (``ccb``/``slates``: the first slot's)
``probability``    its propensity: the logger's probability of ``chosen``
``n_actions``      actions it could take: offered less excluded (``ccb``/``slates``: the pool)
``pmf``            the logger's whole distribution over ``actions`` (a list)
one per objective  its aggregated value (``ccb``: summed over the slots; ``slates``: the page's)
``reward``         Σ weight × value (an objective named ``reward`` shadows it, as in jobs)
``context``        with ``context=True`` only: the decision's context (a dict)
=================  ==================================================================

``per="slot"`` (``ccb`` and ``slates`` loops) has one row per slot and decision, with ``slot``
(its id) and ``position`` (0 on top) after ``model_version``; ``chosen``, ``probability``,
``n_actions`` and ``pmf`` are the slot's (``ccb``: conditional on the slots above, as logged),
and the objectives and ``reward`` are the slot's own on ``ccb``. A ``slates`` loop takes one
reward for the whole page, so on its slot rows they are NaN: use ``per="decision"`` for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from typing import Any, Literal

import pandas as pd

from bandits.config import load_settings
from bandits.errors import ApiError
from bandits.export.parquet import OUTCOME_PREFIX, record
from bandits.export.window import EARLIEST, LATEST
from bandits.jobs.slots import allowed_positions
from bandits.loop_config import LoopConfig
from bandits.services.loops import loop_or_404
from bandits.store.db import Database
from bandits.store.jobs import LoggedEvent, window_pages

Per = Literal["decision", "slot"]
Moment = datetime | date | str | pd.Timestamp | None
CHUNKSIZE = 1000

_DECISION = ["event_id", "ts", "model_version", "chosen", "probability", "n_actions", "pmf"]
_SLOT = ["event_id", "ts", "model_version", "slot", "position", "chosen", "probability",
         "n_actions", "pmf"]


@contextmanager
def open_database(database: str | Database) -> Iterator[Database]:
    """``database`` as a :class:`~bandits.store.db.Database`: a URL (``sqlite:///file.db``,
    ``postgresql+psycopg://...``) is opened here and closed on exit; a Database is used as is."""
    if isinstance(database, Database):
        yield database
        return
    opened = Database(load_settings(database_url=database), pool_size=2)
    try:
        yield opened
    finally:
        opened.dispose()


def loop_config(db: Database, loop: str) -> tuple[int, str, LoopConfig]:
    """Loop ``loop``'s id, kind and current config; :class:`LookupError` when there is none."""
    with db.session() as session:
        try:
            row = loop_or_404(loop, session)
        except ApiError as exc:
            raise LookupError(exc.message) from None
        return row.id, row.kind, LoopConfig.model_validate(row.config)


def utc(moment: Moment, default: datetime) -> datetime:
    """A window bound as an aware UTC datetime (a naive one, or a date, is taken as UTC)."""
    if moment is None:
        return default
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime().astimezone(timezone.utc)


def columns(config: LoopConfig, per: Per = "decision", context: bool = False) -> list[str]:
    """The columns of a frame of this loop (see the module's docstring)."""
    names = [o.name for o in config.objectives]
    scalar = [] if "reward" in names else ["reward"]
    return [*(_SLOT if per == "slot" else _DECISION), *names, *scalar,
            *(["context"] if context else [])]


def _values(row: dict[str, Any], config: LoopConfig) -> dict[str, Any]:
    # The scalar reward first, so that an objective named `reward` overwrites it.
    values = {"reward": row.get("reward")}
    values.update({o.name: row.get(OUTCOME_PREFIX + o.name) for o in config.objectives})
    return values


def decision_rows(config: LoopConfig, kind: str, event: LoggedEvent,
                  context: bool = False) -> list[dict[str, Any]]:
    """One decision's row (in a list, like :func:`slot_rows`)."""
    row = record(config, event)
    excluded = set(event.excluded)
    n_actions = len(event.actions) if kind != "cb" else sum(
        action["id"] not in excluded for action in event.actions)
    first = (event.slots or [{}])[0]
    out = {"event_id": event.event_id, "ts": row["ts"], "model_version": event.model_version,
           "chosen": first.get("chosen", event.chosen),
           "probability": first.get("probability", event.probability),
           "n_actions": n_actions, "pmf": row["pmf"], **_values(row, config)}
    if context:
        out["context"] = event.context
    return [out]


def slot_rows(config: LoopConfig, kind: str, event: LoggedEvent,
              context: bool = False) -> list[dict[str, Any]]:
    """One row per slot of a ``ccb`` or ``slates`` decision."""
    row = record(config, event)
    allowed = allowed_positions(kind, event)
    out = []
    for position, (slot, positions) in enumerate(zip(row["slots"], allowed)):
        values = _values(slot, config) if kind == "ccb" else dict.fromkeys(_values(slot, config))
        out.append({"event_id": event.event_id, "ts": row["ts"], "model_version": event.model_version,
                    "slot": slot["id"], "position": position, "chosen": slot["chosen"],
                    "probability": slot["probability"], "n_actions": len(positions),
                    "pmf": slot["pmf"], **values, **({"context": event.context} if context else {})})
    return out


def frame(rows: list[dict[str, Any]], names: list[str]) -> pd.DataFrame:
    """Rows as a DataFrame with ``names`` for columns and the dtypes of the docstring."""
    data = pd.DataFrame.from_records(rows, columns=names)
    data["ts"] = pd.to_datetime(data["ts"], utc=True)
    data["model_version"] = data["model_version"].astype("Int64")
    numeric = [name for name in names if name not in ("event_id", "ts", "model_version", "slot",
                                                      "position", "chosen", "n_actions", "pmf",
                                                      "context")]
    data[numeric] = data[numeric].astype(float)
    for integer in ("n_actions", "position"):
        if integer in data:
            data[integer] = data[integer].astype(int)
    return data


def iter_decisions(database: str | Database, loop: str, since: Moment = None,
                   until: Moment = None, per: Per = "decision", chunksize: int = CHUNKSIZE,
                   context: bool = False) -> Iterator[pd.DataFrame]:
    """Loop ``loop``'s decisions with ``since`` ≤ ts < ``until`` (default: all), oldest first, as
    DataFrames of ``chunksize`` decisions (``per="slot"``: their slots). Each chunk is read in its
    own short transaction; memory holds one chunk, however long the window.

    ``database``: a URL or a :class:`~bandits.store.db.Database`. ``context=True`` adds each
    decision's context (a dict per row). Raises :class:`LookupError` for an unknown loop and
    :class:`ValueError` for ``per="slot"`` on a ``cb`` loop or an empty window.
    """
    if per not in ("decision", "slot"):
        raise ValueError(f"per must be 'decision' or 'slot', not {per!r}")
    if chunksize < 1:
        raise ValueError(f"chunksize must be at least 1, not {chunksize}")
    start, end = utc(since, EARLIEST), utc(until, LATEST)
    if end <= start:
        raise ValueError(f"until ({end.isoformat()}) must be after since ({start.isoformat()})")
    with open_database(database) as db:
        loop_id, kind, config = loop_config(db, loop)
        if per == "slot" and kind == "cb":
            raise ValueError(f"loop {loop!r} is a cb loop: it has no slots (use per='decision')")
        rows_of = slot_rows if per == "slot" else decision_rows
        names = columns(config, per, context)
        for page in window_pages(db, loop_id, start, end, chunksize):
            yield frame([row for event in page for row in rows_of(config, kind, event, context)], names)


def load_decisions(database: str | Database, loop: str, since: Moment = None, until: Moment = None,
                   per: Per = "decision", chunksize: int = CHUNKSIZE,
                   context: bool = False) -> pd.DataFrame:
    """The whole window as one DataFrame (see :func:`iter_decisions`, which it concatenates, and
    the module's docstring for the columns). Reads ``chunksize`` decisions at a time."""
    chunks = list(iter_decisions(database, loop, since, until, per, chunksize, context))
    if not chunks:
        with open_database(database) as db:
            config = loop_config(db, loop)[2]
        return frame([], columns(config, per, context))
    return pd.concat(chunks, ignore_index=True)
