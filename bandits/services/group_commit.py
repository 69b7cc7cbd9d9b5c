"""Group commit: many request threads' rows written in one transaction, one fsync.

Leader/follower, no writer thread: a request that finds no flush in progress takes every row
queued so far (its own included) and writes them in one transaction; requests arriving meanwhile
queue up for the next flush, led by one of them. Every request returns only once the transaction
holding its row has committed, so an acknowledged decision is always in the database.
A leader flushes exactly one batch and then hands over, so no request waits for more than the
flush in progress plus its own.
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
        self.done = False


class GroupCommitter(Generic[Item, Result]):
    """Calls ``flush(items) -> results`` (one result per item, in order) for batches of items."""

    def __init__(self, flush: Callable[[list[Item]], list[Result]]) -> None:
        self._flush = flush
        self._condition = threading.Condition(threading.Lock())
        self._open: _Batch[Item, Result] = _Batch()
        self._flushing = False
        self.batches = 0
        self.items = 0

    def submit(self, item: Item) -> Result:
        """Queue ``item``, wait until the transaction holding it committed, return its result.

        Raises what ``flush`` raised for the batch the item was in.
        """
        with self._condition:
            batch = self._open
            index = len(batch.items)
            batch.items.append(item)
            while not batch.done:
                if not self._flushing and batch is self._open:
                    self._flushing = True
                    self._open = _Batch()
                    break
                self._condition.wait()
        if not batch.done:
            self._lead(batch)
        if batch.error is not None:
            raise batch.error
        return batch.results[index]

    def _lead(self, batch: _Batch[Item, Result]) -> None:
        try:
            results = self._flush(batch.items)
            if len(results) != len(batch.items):
                raise RuntimeError("flush returned a result count that differs from the item count")
            batch.results = results
        except BaseException as exc:  # every waiter of the batch must hear of the failure
            batch.error = exc
        with self._condition:
            batch.done = True
            self._flushing = False
            self.batches += 1
            self.items += len(batch.items)
            self._condition.notify_all()
