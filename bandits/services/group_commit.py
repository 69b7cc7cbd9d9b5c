"""Group commit: many request threads' rows written in one transaction, one fsync.

No writer thread. The first request to join an open batch is its leader: it waits until the
flush in progress (if any) is over, closes its batch, and writes every row in it in one
transaction; requests arriving meanwhile form the next batch. The others in a batch sleep on the
batch's event, set once when its transaction committed (or failed), so each request thread
wakes exactly once, and no acknowledged decision is missing from the database.

When a batch's transaction fails, each of its items is written again alone, so that one bad row
(or a passing fault) fails only its own request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Batch(Generic[Item, Result]):
    __slots__ = ("items", "results", "errors", "done")

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.results: list[Result | None] = []
        self.errors: list[BaseException | None] = []
        self.done = threading.Event()


class GroupCommitter(Generic[Item, Result]):
    """Calls ``flush(items) -> results`` (one result per item, in order), one batch at a time."""

    def __init__(self, flush: Callable[[list[Item]], list[Result]]) -> None:
        self._flush = flush
        self._lock = threading.Lock()  # guards the open batch
        self._flushing = threading.Lock()  # held by the leader whose batch is being written
        self._open: _Batch[Item, Result] = _Batch()
        self.batches = 0
        self.items = 0

    def submit(self, item: Item) -> Result:
        """Queue ``item``, return its result once the transaction holding it committed.

        Raises what ``flush`` raised for the item (see the module docstring).
        """
        with self._lock:
            batch = self._open
            index = len(batch.items)
            batch.items.append(item)
        if index == 0:
            self._lead(batch)
        else:
            batch.done.wait()
        error = batch.errors[index]
        if error is not None:
            raise error
        return batch.results[index]  # type: ignore[return-value]

    def _lead(self, batch: _Batch[Item, Result]) -> None:
        try:
            with self._flushing:
                with self._lock:
                    self._open = _Batch()  # later arrivals form the next batch
                try:
                    batch.results = list(self._checked_flush(batch.items))
                    batch.errors = [None] * len(batch.items)
                except Exception as exc:
                    if len(batch.items) == 1:
                        batch.results, batch.errors = [None], [exc]
                    else:
                        self._flush_one_by_one(batch)
                self.batches += 1
                self.items += len(batch.items)
        finally:
            if len(batch.errors) != len(batch.items):  # interrupted: nobody may think it was written
                batch.results = [None] * len(batch.items)
                batch.errors = [RuntimeError("the batch was interrupted before it was written")] * len(batch.items)
            batch.done.set()

    def _checked_flush(self, items: list[Item]) -> list[Result]:
        results = self._flush(items)
        if len(results) != len(items):
            raise RuntimeError("flush returned a result count that differs from the item count")
        return results

    def _flush_one_by_one(self, batch: _Batch[Item, Result]) -> None:
        batch.results, batch.errors = [], []
        for item in batch.items:
            try:
                batch.results.append(self._checked_flush([item])[0])
                batch.errors.append(None)
            except Exception as exc:
                batch.results.append(None)
                batch.errors.append(exc)
