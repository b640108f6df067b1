"""Concurrent callers of one model share its forwards: one running batch that a caller's decoding
joins between steps and leaves when it is done (continuous batching), run by whichever caller
finds the model free ("flat combining").

Graph runs in threads (the server's graph endpoint, the LangChain tool and MCP called by several
agents, ``redgraph eval --mode graph``, a LangGraph server) reach the same loaded model at about
the same moments: eight reasoners write their rationales, eight answerers decode. Each model has
one :class:`Combiner`, and two kinds of work go through it:

- **Step jobs** (:meth:`Combiner.run_steps`): decoding that advances one token at a time, the
  reasoner's greedy generation (:func:`redgraph.decoding.generate.generate_text`) and RED's
  answers (:meth:`redgraph.decoding.decoder.REDDecoder.steps`). A job's rows are prefilled when it
  joins (the rows of jobs that join together packed into one forward where the family allows),
  merged, left-padded, into the running batch's cache, and from then on every step is one forward
  over the rows of every job, of both kinds and any settings: each job chooses its own rows'
  tokens from their log-probabilities. Rows whose sequence is finished are dropped at once, so a
  job leaves the batch as soon as it is done and a new one never waits for the others to finish.
- **Whole jobs** (:meth:`Combiner.run`): work run as one call for a batch of jobs of one *key*
  (the settings that must match), for models whose caches cannot take rows that join later
  (sliding-window layers).

The first caller to find no one leading becomes the leader: it admits the waiting jobs, steps the
running batch and hands the results back, and once its own job is done hands the lead to a
waiting caller, whose job may still be in the batch; the other callers sleep until their result
is there. A caller alone runs its own job at once, in its own thread.

Work that does not decode (the critic's probes of each image, the picture-range check) runs in its
caller's thread, beside the others: measured, running it one job after another through the leader
made 8 concurrent runs of a tiny model slower (2.1x one run, against 2.9x; BENCHMARKS.md,
"Concurrent graph runs").

What a job's owner must see happen in its own thread (streamed answer tokens) is queued to it and
delivered there while it waits. When a shared forward fails, each of the jobs in it is decoded
again alone, so one bad request fails only itself.

Example:
    >>> results = combiner_of(lvlm).run_steps(REDDecoder(lvlm, config).steps(requests))  # doctest: +SKIP
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from redgraph.decoding.branches import prefill_groups
from redgraph.decoding.packing import auto_pack_tokens
from redgraph.decoding.rows import RowGroup, merge, new_cache


class StepJob(Protocol):
    """Decoding that the running batch advances one token at a time.

    The batch prefills ``inputs`` (model inputs of one row each), then calls ``advance`` with
    those rows' (R, V) next-token log-probabilities, after the prefill and after every step, for
    the rows still live; ``advance`` returns the token to feed each of them, or None to drop it.
    When no row is left, ``result()`` is the job's result. ``restart()`` puts the job back to
    before its first token. A job may also have a ``group_key`` and a static
    ``advance_group(jobs, logprobs, notes)``: jobs of one key then choose together, from their rows'
    log-probabilities job after job, as each would alone.
    """

    inputs: list

    def advance(self, logprobs: torch.Tensor, note: Callable[[int, Any], None]) -> list[int | None]: ...

    def result(self) -> Any: ...

    def restart(self) -> None: ...


@dataclass(eq=False)
class _Job:
    key: Hashable
    item: Any
    execute: Callable[[list[Any], Callable[[int, Any], None]], list[Any]] | None
    steps: StepJob | None = None
    on_note: Callable[[Any], None] | None = None
    owner: int = field(default_factory=threading.get_ident)
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)  # notes for the owner's thread
    width: int = 0  # the job's live rows in the running batch
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class _Batch:
    """The rows of step jobs decoding together: one group, each job's live rows next to each other."""

    def __init__(self, model, pack_tokens: int) -> None:
        self.model = model
        self.pack_tokens = pack_tokens
        self.group: RowGroup | None = None
        self.jobs: list[_Job] = []
        self.rows: list[int] = []  # sizes of the batch at each step (for tests and benchmarks)

    def admit(self, jobs: list[_Job]) -> list[_Job]:
        """Prefill the jobs' rows and merge them into the batch; the jobs whose prefill failed
        (each then has its error) are returned."""
        inputs = [row for job in jobs for row in job.steps.inputs]
        failed: list[_Job] = []
        try:
            joined = merge(prefill_groups(self.model, inputs, pack_tokens=self.pack_tokens)[0])
        except Exception:  # noqa: BLE001 - each job alone below, so a bad one fails only itself
            parts = []
            for job in jobs:
                try:
                    parts.append(merge(prefill_groups(self.model, job.steps.inputs, pack_tokens=self.pack_tokens)[0]))
                except Exception as exc:  # noqa: BLE001 - handed to its caller
                    job.error = exc
                    failed.append(job)
            jobs = [job for job in jobs if job.error is None]
            if not parts:
                return failed
            joined = merge(parts)
        self.group = joined if self.group is None else merge([self.group, joined])
        for job in jobs:
            job.width = len(job.steps.inputs)
            self.jobs.append(job)
        return failed

    def step(self, note_for: Callable[[_Job], Callable[[int, Any], None]]) -> list[_Job]:
        """Each job chooses its rows' tokens, finished rows are dropped and one forward advances the
        rest; the jobs that are finished (done or failed) are returned.

        Jobs whose step jobs share a ``group_key`` and have an ``advance_group`` choose together
        (RED answers of one config: one choice over all their questions)."""
        logprobs = self.group.logprobs  # (B, V)
        starts, start = [], 0
        for job in self.jobs:
            starts.append(start)
            start += job.width
        groups: dict[Hashable, list[int]] = {}
        for index, job in enumerate(self.jobs):
            key = getattr(job.steps, "group_key", None)
            groups.setdefault(("alone", index) if key is None else ("key", key), []).append(index)
        fed: dict[int, list[int | None]] = {}
        for members in groups.values():
            jobs = [self.jobs[i] for i in members]
            rows = [row for i in members for row in range(starts[i], starts[i] + self.jobs[i].width)]
            if rows == list(range(rows[0], rows[0] + len(rows))):
                part = logprobs[rows[0]:rows[0] + len(rows)]
            else:
                part = logprobs[torch.tensor(rows, device=logprobs.device)]
            try:
                if len(jobs) == 1:
                    outputs = [jobs[0].steps.advance(part, note_for(jobs[0]))]
                else:
                    outputs = type(jobs[0].steps).advance_group([job.steps for job in jobs], part,
                                                                [note_for(job) for job in jobs])
                for job, tokens in zip(jobs, outputs, strict=True):
                    if len(tokens) != job.width:
                        raise RuntimeError(f"{type(job.steps).__name__}.advance returned {len(tokens)} tokens "
                                           f"for {job.width} rows")
            except Exception as exc:  # noqa: BLE001 - handed to its callers; the others go on
                for job in jobs:
                    job.error = exc
                outputs = [[None] * job.width for job in jobs]
            for i, tokens in zip(members, outputs):
                fed[i] = list(tokens)
        keep: list[int] = []
        feed: list[int] = []
        finished: list[_Job] = []
        for index, job in enumerate(self.jobs):
            for row, token in enumerate(fed[index]):
                if token is not None:
                    keep.append(starts[index] + row)
                    feed.append(int(token))
            job.width = sum(token is not None for token in fed[index])
            if job.width == 0:
                finished.append(job)
        self.jobs = [job for job in self.jobs if job.width]
        if not keep:
            self.group = None
            return finished
        if len(keep) < self.group.size:
            self.group.select(keep)
        self.rows.append(len(keep))
        self.group.step(torch.tensor(feed, dtype=torch.long, device=self.group.attention_mask.device))
        return finished

    def drop_all(self) -> list[_Job]:
        jobs, self.jobs, self.group = self.jobs, [], None
        return jobs


class Combiner:
    """Runs the jobs of concurrent callers of one model together; see the module docstring.

    Args:
        model: the model whose forwards step jobs share; None takes whole jobs only.
        device: where the model runs (sets how rows are packed, as RED does).
        max_batch: the most jobs in a batch: whole jobs of one key run together, or step jobs
            decoding at once.
    """

    def __init__(self, model=None, *, device: str | torch.device = "cpu", max_batch: int = 8) -> None:
        self.max_batch = max_batch
        self.enabled = True
        self._lock = threading.Condition()
        self._waiting: list[_Job] = []
        self._leading = False
        self.model = model
        self._batch = None if model is None else _Batch(model, auto_pack_tokens(device))
        self.batches: list[int] = []  # sizes of the batches run (whole jobs), or of step jobs' joins

    @property
    def steps(self) -> bool:
        """Whether step jobs can share a running batch on this model (no sliding-window layer,
        whose cache cannot take rows that join later)."""
        return self._batch is not None

    @property
    def step_rows(self) -> list[int]:
        """The running batch's rows at each of its forwards (for tests and benchmarks)."""
        return [] if self._batch is None else self._batch.rows

    def run(self, key: Hashable, item: Any, execute: Callable[[list[Any], Callable[[int, Any], None]], list[Any]], *,
            on_note: Callable[[Any], None] | None = None) -> Any:
        """``execute([item, ...], note)`` for this item and any others of the same key, and this
        item's result. ``execute`` calls ``note(i, x)`` to have ``on_note(x)`` called for item ``i``
        in its owner's thread."""
        if not self.enabled:  # every call alone, as before combining (benchmarks compare the two)
            return execute([item], lambda _index, value: on_note(value) if on_note is not None else None)[0]
        return self._wait(_Job(key, item, execute, on_note=on_note))

    def run_steps(self, job: StepJob, *, on_note: Callable[[Any], None] | None = None) -> Any:
        """Decode ``job`` in the model's running batch and return its result. ``job`` calls
        ``note(i, x)`` to have ``on_note(x)`` called in this thread.

        Raises:
            RuntimeError: this combiner has no model, or its model cannot share steps (see
                :attr:`steps`); use :meth:`run`.
        """
        if self._batch is None:
            raise RuntimeError("this model's combiner takes whole jobs only (run), not step jobs")
        if not job.inputs:
            return job.result()
        if not self.enabled:
            return self._alone(job, lambda _index, value: on_note(value) if on_note is not None else None)
        return self._wait(_Job(None, None, None, steps=job, on_note=on_note))

    def _wait(self, job: _Job) -> Any:
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
        """Admit and step until the leader's own job is done; then another waiting caller leads
        (no caller runs others' work for longer than it has to). Whole jobs run between steps."""
        while not mine.done:
            with self._lock:
                live = len(self._batch.jobs) if self._batch is not None else 0
                joining = [job for job in self._waiting if job.steps is not None][: max(0, self.max_batch - live)]
                whole = [job for job in self._waiting if job.steps is None]
                if whole:
                    key = whole[0].key
                    whole = [job for job in whole if job.key == key][: self.max_batch]
                taken = set(joining) | set(whole)
                self._waiting = [job for job in self._waiting if job not in taken]
            if not joining and not whole and not live:
                return
            if whole:
                self.batches.append(len(whole))
                self._execute(whole)
            if joining or live:
                finished = []
                if joining:
                    self.batches.append(len(joining))
                    try:
                        finished += self._batch.admit(joining)
                    except BaseException as exc:  # noqa: BLE001 - e.g. KeyboardInterrupt: no caller waits forever
                        for job in joining:
                            if job not in self._batch.jobs:
                                job.error = exc
                                finished.append(job)
                if self._batch.jobs:
                    finished += self._step()
                for job in finished:
                    self._finish(job)
            with self._lock:
                self._lock.notify_all()

    def _step(self) -> list[_Job]:
        try:
            return self._batch.step(self._note_for)
        except BaseException:  # noqa: BLE001 - a shared forward failed: each of its jobs alone
            jobs = self._batch.drop_all()
            for job in jobs:
                try:
                    job.steps.restart()
                    job.result = self._alone(job.steps, self._note_for(job))
                except BaseException as single:  # noqa: BLE001 - handed to its caller
                    job.error = single
                job.done = True
            return []

    @staticmethod
    def _finish(job: _Job) -> None:
        if job.error is None and not job.done:
            try:
                job.result = job.steps.result()
            except Exception as exc:  # noqa: BLE001 - handed to its caller
                job.error = exc
        job.done = True

    def _alone(self, steps: StepJob, note: Callable[[int, Any], None]) -> Any:
        """Decode one step job in a batch of its own, in this thread."""
        batch = _Batch(self.model, self._batch.pack_tokens)
        job = _Job(None, None, None, steps=steps)
        batch.admit([job])
        while batch.jobs:
            batch.step(lambda _job: note)
        if job.error is not None:
            raise job.error
        return steps.result()

    def _note_for(self, job: _Job) -> Callable[[int, Any], None]:
        """``note(_, value)`` for ``job``: ``on_note(value)`` at once if this thread (the leader's)
        owns the job, else queued for its owner's thread."""
        me = threading.get_ident()

        def note(_index: int, value: Any) -> None:
            if job.on_note is None:
                return
            if job.owner == me:  # the leader's own job: in its own thread, now
                job.on_note(value)
                return
            job.events.put(value)
            with self._lock:
                self._lock.notify_all()  # its owner delivers it in its thread
        return note

    def _execute(self, batch: list[_Job]) -> None:
        def note_for(jobs: Sequence[_Job]) -> Callable[[int, Any], None]:
            notes = [self._note_for(job) for job in jobs]  # made here, in the leader's thread
            return lambda index, value: notes[index](index, value)

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


def shares_steps(model) -> bool:
    """Whether rows can join ``model``'s running batch between steps: no cache layer with a
    sliding window (it keeps only the last tokens of the longest row, so rows of other lengths
    would lose theirs)."""
    try:
        cache = new_cache(model)
    except Exception:  # noqa: BLE001 - a family whose cache we cannot build: whole jobs only
        return False
    return not any(getattr(layer, "sliding_window", None) for layer in getattr(cache, "layers", ()))


_COMBINERS_LOCK = threading.Lock()


def combiner_of(lvlm) -> Combiner:
    """The one :class:`Combiner` of a loaded model (kept on the model object, so it goes with it)."""
    with _COMBINERS_LOCK:
        found = vars(lvlm).get("_combiner")
        if found is None:
            model = getattr(lvlm, "model", None)
            shared = model is not None and shares_steps(model)
            found = Combiner(model if shared else None, device=getattr(lvlm, "device", "cpu"))
            vars(lvlm)["_combiner"] = found
        return found
