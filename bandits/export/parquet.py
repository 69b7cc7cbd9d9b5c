"""Logged decisions as Parquet: one row per decision, one row group per page of the log.

Rows are written page by page with :class:`pyarrow.parquet.ParquetWriter`, so memory holds one
page, not the window. ``ccb`` and ``slates`` decisions keep their slots in a list column
``slots`` (one struct per slot, in slot order), so a decision stays one row; ``explode`` it in
pandas for one row per slot. The schema is in docs/export.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from bandits.learning.rewards import objective_values, scalar_reward
from bandits.loop_config import LoopConfig
from bandits.store.db import as_utc
from bandits.store.jobs import LoggedEvent

OUTCOME_PREFIX = "outcome_"


def _outcome_fields(config: LoopConfig) -> list[pa.Field]:
    return [pa.field(OUTCOME_PREFIX + o.name, pa.float64()) for o in config.objectives]


def schema(config: LoopConfig) -> pa.Schema:
    """The columns of a loop's export (``outcome_<objective>`` for each of its objectives)."""
    fields = [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("chosen", pa.string(), nullable=False),
        pa.field("probability", pa.float64(), nullable=False),
        pa.field("action_ids", pa.list_(pa.string())),
        pa.field("pmf", pa.list_(pa.float64())),
        pa.field("baseline", pa.string()),
        pa.field("excluded", pa.list_(pa.string())),
        *_outcome_fields(config),
        pa.field("reward", pa.float64(), nullable=False),
        pa.field("model_version", pa.int64()),
        pa.field("skip_learn", pa.bool_(), nullable=False),
        pa.field("context", pa.string(), nullable=False),
        pa.field("actions", pa.string(), nullable=False),
        pa.field("raw_outcomes", pa.string(), nullable=False),
    ]
    if config.kind != "cb":
        fields.append(pa.field("slots", pa.list_(pa.struct([
            pa.field("id", pa.string()),
            pa.field("chosen", pa.string()),
            pa.field("probability", pa.float64()),
            pa.field("pmf", pa.list_(pa.float64())),
            pa.field("baseline", pa.string()),
            pa.field("excluded", pa.list_(pa.string())),
            *_outcome_fields(config),
            pa.field("reward", pa.float64()),
        ]))))
    return pa.schema(fields)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _slots(config: LoopConfig, event: LoggedEvent) -> tuple[list[dict[str, Any]], dict[str, float], float]:
    """Per slot its row; and the decision's objective values and reward: for ``ccb`` the sums
    over its slots (the page total), for ``slates`` the slate's own."""
    rows = []
    names = [OUTCOME_PREFIX + o.name for o in config.objectives]
    totals = dict.fromkeys(names, 0.0)
    total_reward = 0.0
    for slot in event.slots or []:
        row = {key: slot.get(key) for key in ("id", "chosen", "probability", "pmf", "baseline", "excluded")}
        if config.kind == "ccb":
            raw = (event.slot_outcomes or {}).get(slot["id"], [])
            values = objective_values(config, raw)
            for o in config.objectives:
                row[OUTCOME_PREFIX + o.name] = values[o.name]
                totals[OUTCOME_PREFIX + o.name] += values[o.name]
            row["reward"] = scalar_reward(config, raw)
            total_reward += row["reward"]
        rows.append(row)
    if config.kind == "slates":
        values = objective_values(config, event.outcomes)
        totals = {OUTCOME_PREFIX + name: value for name, value in values.items()}
        total_reward = scalar_reward(config, event.outcomes)
    return rows, totals, total_reward


def _raw_outcomes(event: LoggedEvent) -> str:
    raw = [{"objective": objective, "value": value} for objective, value in event.outcomes]
    for slot, outcomes in (event.slot_outcomes or {}).items():
        raw.extend({"objective": objective, "value": value, "slot": slot} for objective, value in outcomes)
    return _json(raw)


def record(config: LoopConfig, event: LoggedEvent) -> dict[str, Any]:
    """One decision's row."""
    row: dict[str, Any] = {
        "event_id": event.event_id, "ts": as_utc(event.ts), "chosen": event.chosen,
        "probability": event.probability, "action_ids": [action["id"] for action in event.actions],
        "pmf": list(event.pmf), "baseline": event.baseline, "excluded": list(event.excluded),
        "model_version": event.model_version, "skip_learn": event.unactivated,
        "context": _json(event.context), "actions": _json(event.actions),
        "raw_outcomes": _raw_outcomes(event),
    }
    if config.kind == "cb":
        values = objective_values(config, event.outcomes)
        row.update({OUTCOME_PREFIX + name: value for name, value in values.items()})
        row["reward"] = scalar_reward(config, event.outcomes)
    else:
        slots, totals, reward = _slots(config, event)
        row.update(totals)
        row["reward"] = reward
        row["slots"] = slots
    return row


class _Chunks:
    """A write-only file that keeps what was written until it is taken (streaming Parquet)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def parquet_stream(config: LoopConfig, pages: Iterable[list[LoggedEvent]],
                   on_page: Callable[[int], None] = lambda rows: None) -> Iterator[bytes]:
    """The Parquet file as chunks of bytes: one row group per page, then the footer. Write the
    chunks to a file in order (``bandits export``) or send them (the api). ``on_page`` hears
    each page's size (progress)."""
    sink = _Chunks()
    table_schema = schema(config)
    writer = pq.ParquetWriter(sink, table_schema)
    try:
        for page in pages:
            writer.write_table(pa.Table.from_pylist([record(config, event) for event in page],
                                                    schema=table_schema))
            on_page(len(page))
            yield sink.take()
    finally:
        writer.close()
    yield sink.take()
