"""Concurrent callers of one model share its forwards: the caller that finds the model free runs
everyone's waiting work as one batch ("flat combining").

Graph runs in threads (the server's graph endpoint, the LangChain tool and MCP called by several
agents, ``redgraph eval --mode graph``, a LangGraph server) reach the same loaded model at the same
moments: eight reasoners write their rationales together, eight answerers decode together. Each
such call is handed to the model's :class:`Combiner` as a *job* with a *key* (the kind of work and
the settings that must match for jobs to share a forward). The first caller to find no batch
running becomes the leader: it runs the waiting jobs in batches, one key's jobs together (the
oldest job's key first), hands the results back, and once its own job is done hands the lead to a
waiting caller; the other callers sleep until their result is there. A caller alone runs its own job at once, in its own thread, exactly as a direct call
would; a leader never waits for jobs to arrive: what queued while it ran the last batch is the
next batch. (Measured: waiting a few milliseconds for recently active callers split the batches
worse, 2 + 6 where running at once gave 1 + 7; BENCHMARKS.md, "Concurrent graph runs".)

Work that does not batch across callers (the critic's probes of each image, the picture-range
check) runs in its caller's thread, beside the others: measured, running it one job after another
through the leader made 8 concurrent runs of a tiny model slower (2.1x one run, against 2.9x).

What a job's owner must see happen in its own thread (streamed answer tokens) is queued to it and
delivered there while it waits. When a batch fails, each of its jobs is run alone, so one bad
request fails only itself.

Example:
    >>> texts = combiner_of(lvlm).run(("generate", 96), (prompts, pictures), generate_batch)  # doctest: +SKIP
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class _Job:
    key: Hashable
    item: Any
    execute: Callable[[list[Any], Callable[[int, Any], None]], list[Any]]
    on_note: Callable[[Any], None] | None = None
    owner: int = field(default_factory=threading.get_ident)
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)  # notes for the owner's thread
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class Combiner:
    """Runs the jobs of concurrent callers in batches; see the module docstring.

    Args:
        max_batch: the most jobs of one key run together.
    """

    def __init__(self, *, max_batch: int = 8) -> None:
        self.max_batch = max_batch
        self.enabled = True
        self._lock = threading.Condition()
        self._waiting: list[_Job] = []
        self._leading = False
        self.batches: list[int] = []  # sizes of the batches run (for tests and benchmarks)

    def run(self, key: Hashable, item: Any, execute: Callable[[list[Any], Callable[[int, Any], None]], list[Any]], *,
            on_note: Callable[[Any], None] | None = None) -> Any:
        """``execute([item, ...], note)`` for this item and any others of the same key, and this
        item's result. ``execute`` calls ``note(i, x)`` to have ``on_note(x)`` called for item ``i``
        in its owner's thread."""
        if not self.enabled:  # every call alone, as before combining (benchmarks compare the two)
            return execute([item], lambda _index, value: on_note(value) if on_note is not None else None)[0]
        job = _Job(key, item, execute, on_note)
        with self._lock:
            self._waiting.append(job)
            self._lock.notify_all()
        while True:
            with self._lock:
                lead = not job.done and not self._leading
                if lead:
                    self._leading = True
                elif not job.done:
                    self._lock.wait(0.05)
            if lead:
                try:
                    self._lead(job)
                finally:
                    with self._lock:
                        self._leading = False
                        self._lock.notify_all()
            self._deliver(job)
            if job.done:
                break
        self._deliver(job)
        if job.error is not None:
            raise job.error
        return job.result

    @staticmethod
    def _deliver(job: _Job) -> None:
        while True:
            try:
                note = job.events.get_nowait()
            except queue.Empty:
                return
            if job.on_note is not None:
                job.on_note(note)

    def _lead(self, mine: _Job) -> None:
        """Run batches, oldest job's key first, until the leader's own job is done; then another
        waiting caller leads (no caller runs others' work for longer than it has to)."""
        while not mine.done:
            with self._lock:
                if not self._waiting:
                    return
                key = self._waiting[0].key
                batch = [job for job in self._waiting if job.key == key][: self.max_batch]
                self._waiting = [job for job in self._waiting if job not in batch]
            self.batches.append(len(batch))
            self._execute(batch)
            with self._lock:
                self._lock.notify_all()

    def _execute(self, batch: list[_Job]) -> None:
        me = threading.get_ident()

        def note_for(jobs: Sequence[_Job]) -> Callable[[int, Any], None]:
            def note(index: int, value: Any) -> None:
                job = jobs[index]
                if job.on_note is None:
                    return
                if job.owner == me:  # the leader's own job: in its own thread, now
                    job.on_note(value)
                    return
                job.events.put(value)
                with self._lock:
                    self._lock.notify_all()  # its owner delivers it in its thread
            return note

        try:
            results = batch[0].execute([job.item for job in batch], note_for(batch))
        except BaseException as exc:  # noqa: BLE001 - handed to the callers, each alone below
            if len(batch) == 1:
                batch[0].error = exc
                batch[0].done = True
                return
            for job in batch:  # one bad job must not fail its batch-mates
                try:
                    [job.result] = job.execute([job.item], note_for([job]))
                except BaseException as single:  # noqa: BLE001
                    job.error = single
                job.done = True
            return
        for job, result in zip(batch, results, strict=True):
            job.result = result
            job.done = True


_COMBINERS_LOCK = threading.Lock()


def combiner_of(lvlm) -> Combiner:
    """The one :class:`Combiner` of a loaded model (kept on the model object, so it goes with it)."""
    with _COMBINERS_LOCK:
        found = vars(lvlm).get("_combiner")
        if found is None:
            found = Combiner()
            vars(lvlm)["_combiner"] = found
        return found
