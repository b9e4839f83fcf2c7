"""Drafts of all the sockets of one process written together (a group commit).

A socket hands its newest draft to the process's ``DraftBatch`` and waits for the outcome: written at once
when no batch is being written, else with everything that arrived meanwhile, in the next batch, one statement
(``services.drafts_save``). Nothing waits on a timer: under light load each draft is written alone and at
once; under heavy load a batch holds what arrived during the previous write. The ack still follows the commit,
so a draft is acknowledged only once it is stored.
"""
from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

from channels.db import database_sync_to_async

from . import services
from .services import DraftWrite


class DraftBatch:
    def __init__(self, write_many: Callable[[list[DraftWrite]], list] | None = None) -> None:
        self._write_many = write_many
        # (participant, phase) -> (the newest draft, the futures waiting for it): one row per key in a batch.
        self._pending: dict[tuple[int, str], tuple[DraftWrite, list[asyncio.Future]]] = {}
        self._writing: asyncio.Task | None = None
        self.batches = 0  # statements run (for tests and benchmarks)

    async def save(self, write: DraftWrite) -> bool:
        """True once stored, False when the phase had moved on (nothing stored); raises the SubmissionError
        refusing it, or the database's error (for this draft, or for the whole batch)."""
        future = asyncio.get_running_loop().create_future()
        key = (write.participant_id, write.phase)
        waiting = self._pending[key][1] if key in self._pending else []
        self._pending[key] = (write, [*waiting, future])  # a newer draft of the same member replaces the older
        if self._writing is None or self._writing.done():
            self._writing = asyncio.ensure_future(self._write_loop())
        return await asyncio.shield(future)  # a socket that goes away does not cancel the others' batch

    async def _write_loop(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            write_many = self._write_many or services.drafts_save  # looked up late: tests count the calls
            try:
                outcomes = await database_sync_to_async(write_many, thread_sensitive=False)(
                    [write for write, _ in batch.values()])
            except Exception as exc:  # every waiting socket says so; the pages keep and resend their drafts
                for _, futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                continue
            finally:
                self.batches += 1
            for (_, futures), outcome in zip(batch.values(), outcomes):
                for future in futures:
                    if future.done():
                        continue
                    if isinstance(outcome, Exception):  # a SubmissionError, or the database refused this one
                        future.set_exception(outcome)
                    else:
                        future.set_result(bool(outcome))


_batches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def draft_batch() -> DraftBatch:
    """The running event loop's batch (a worker process has one loop; tests make a loop per test)."""
    loop = asyncio.get_running_loop()
    batch = _batches.get(loop)
    if batch is None:
        batch = _batches[loop] = DraftBatch()
    return batch
