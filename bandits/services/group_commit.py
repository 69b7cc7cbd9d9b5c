"""Group commit: many request threads' rows written in one transaction, one fsync.

No writer thread. The first request to join an open batch is its leader: it waits until the
flush in progress (if any) is over, closes its batch, and writes every row in it in one
transaction; requests arriving meanwhile form the next batch. The others in a batch sleep on the
batch's event, set once when its transaction committed (or failed), so each request thread
wakes exactly once, and no acknowledged decision is missing from the database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Batch(Generic[Item, Result]):
    __slots__ = ("items", "results", "error", "done")

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.results: list[Result] = []
        self.error: BaseException | None = None
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

        Raises what ``flush`` raised for the batch the item was in.
        """
        with self._lock:
            batch = self._open
            index = len(batch.items)
            batch.items.append(item)
        if index == 0:
            self._lead(batch)
        else:
            batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.results[index]

    def _lead(self, batch: _Batch[Item, Result]) -> None:
        with self._flushing:
            with self._lock:
                self._open = _Batch()  # later arrivals form the next batch
            try:
                results = self._flush(batch.items)
                if len(results) != len(batch.items):
                    raise RuntimeError("flush returned a result count that differs from the item count")
                batch.results = results
            except BaseException as exc:  # every request of the batch must hear of the failure
                batch.error = exc
            self.batches += 1
            self.items += len(batch.items)
        batch.done.set()
