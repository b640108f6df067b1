"""Shared batched decoding for concurrent requests.

One worker thread owns decoding. Requests that arrive while it is busy wait in a bounded queue;
when it is free it takes every waiting request with the same decoding settings (up to
``max_batch``) and answers them with one :meth:`REDDecoder.decode_batch` call, so eight concurrent
clients share each forward instead of queueing one by one. Each request keeps its own caches and
results (the decoder holds no state between calls).

Clients that wait for one answer before sending the next come back a few milliseconds apart. So
when recent traffic reached N requests at once, the worker waits (at most ``max_wait_s``) until N
are queued before it starts a batch; a lone client never waits.

Results and streamed tokens are handed back to the caller's asyncio loop, so waiting requests hold
no threads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redgraph.decoding.config import REDConfig
from redgraph.decoding.decoder import REDDecoder, REDRequest
from redgraph.errors import Cancelled, ConfigError, RedgraphError, check_whole_number

RECENT_S = 1.0  # how far back "recent traffic" reaches


class ServerBusy(RedgraphError):
    """Too many requests are waiting; the caller should retry later."""


RequestCancelled = Cancelled  # a request's client went away, or its deadline passed, before it was answered


@dataclass(eq=False)
class DecodeJob:
    """One request in the batcher. ``events`` receives ``("token", TokenAttribution)`` items, then
    one ``("done", REDResult)`` or ``("error", exception)``."""

    request: REDRequest
    config: REDConfig
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    deadline: float | None = None  # time.monotonic() after which the decoding stops
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """Stop this request's decoding at its next step (its client went away); batch-mates go on."""
        self.cancelled.set()

    def should_stop(self) -> bool:
        return self.cancelled.is_set() or (self.deadline is not None and time.monotonic() > self.deadline)

    def _emit(self, kind: str, value: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the caller's loop is closed: nobody is listening any more
            pass

    async def result(self):
        """Wait for the answer (skipping streamed tokens); re-raises the decoding error, if any."""
        while True:
            kind, value = await self.events.get()
            if kind == "done":
                return value
            if kind == "error":
                raise value


class DecodeBatcher:
    """Collects concurrent decode requests and answers them in shared batches.

    Args:
        lvlm: the loaded model.
        max_batch: most requests decoded together.
        max_pending: most requests waiting or decoding; beyond it :meth:`submit` raises
            :class:`ServerBusy` instead of queueing without bound.
        max_wait_s: the longest a batch waits for requests expected from recent traffic.
        decode: ``decode(config, requests, on_token) -> results`` for one batch; default
            :meth:`REDDecoder.decode_batch` on ``lvlm``.
    """

    def __init__(self, lvlm, *, max_batch: int = 8, max_pending: int = 32, max_wait_s: float = 0.03,
                 decode: Callable[[REDConfig, list[REDRequest], Callable], list] | None = None) -> None:
        check_whole_number("max_batch", max_batch)
        check_whole_number("max_pending", max_pending)
        if isinstance(max_wait_s, bool) or not isinstance(max_wait_s, (int, float)) or not 0 <= max_wait_s <= 1:
            raise ConfigError(f"max_wait_s must be between 0 and 1 second, got {max_wait_s!r}")
        self.lvlm = lvlm
        self._decode = decode or self._red_decode
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.max_wait_s = max_wait_s
        self.batches = 0  # decode_batch calls made (for tests and the benchmark)
        self.batched_requests = 0
        self._queue: deque[DecodeJob] = deque()
        self._running = 0
        self._recent: deque[tuple[float, int]] = deque()  # (time, requests waiting or decoding) per submit
        self._condition = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="redgraph-decode", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Requests waiting or being decoded."""
        with self._condition:
            return len(self._queue) + self._running

    def submit(self, request: REDRequest, config: REDConfig, *, timeout_s: float | None = None) -> DecodeJob:
        """Queue one request; call from a coroutine (its loop receives the events).

        Args:
            timeout_s: the request's decoding stops (finish reason ``"cancelled"``) this long after
                it was queued; :meth:`DecodeJob.cancel` stops it at once.

        Raises:
            ServerBusy: ``max_pending`` requests are already waiting or decoding.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        job = DecodeJob(request, config, asyncio.get_running_loop(), deadline=deadline)
        job.request = dataclasses.replace(request, should_stop=job.should_stop)
        with self._condition:
            if self._closed:
                raise ServerBusy("the decoder is shutting down; retry on another server")
            if len(self._queue) + self._running >= self.max_pending:
                raise ServerBusy(f"{self.max_pending} requests are already waiting or decoding; retry shortly")
            self._queue.append(job)
            now = time.monotonic()
            self._recent.append((now, len(self._queue) + self._running))
            while self._recent[0][0] < now - RECENT_S:
                self._recent.popleft()
            self._condition.notify()
        return job

    def close(self) -> None:
        """Stop taking requests; queued ones fail with :class:`ServerBusy`."""
        with self._condition:
            self._closed = True
            dropped = list(self._queue)
            self._queue.clear()
            self._condition.notify_all()
        for job in dropped:
            job._emit("error", ServerBusy("the server shut down before this request was decoded"))
        self._thread.join(timeout=30)

    def _red_decode(self, config: REDConfig, requests: list[REDRequest], on_token: Callable) -> list:
        return REDDecoder(self.lvlm, config).decode_batch(requests, on_token=on_token)

    def _take_batch(self) -> list[DecodeJob] | None:
        with self._condition:
            while not self._queue and not self._closed:
                self._condition.wait()
            if self._closed:
                return None
            first = self._queue[0].config
            expected = min(self.max_batch, max((n for t, n in self._recent if t >= time.monotonic() - RECENT_S), default=1))
            deadline = time.monotonic() + self.max_wait_s
            while (sum(job.config == first for job in self._queue) < expected and not self._closed
                   and (left := deadline - time.monotonic()) > 0):
                self._condition.wait(left)  # let the clients seen recently join this batch
            if self._closed:
                return None
            batch = [job for job in self._queue if job.config == first][: self.max_batch]
            for job in batch:
                self._queue.remove(job)
            gone = [job for job in batch if job.should_stop()]  # cancelled while waiting: not decoded at all
            for job in gone:
                job._emit("error", RequestCancelled("the request was cancelled before it was decoded"))
            batch = [job for job in batch if job not in gone]
            self._running = len(batch)
            return batch

    def _work(self) -> None:
        while (batch := self._take_batch()) is not None:
            try:
                if batch:
                    self._decode_together(batch)
            finally:
                with self._condition:
                    self._running = 0

    def _decode_together(self, batch: list[DecodeJob]) -> None:
        streamed: set[int] = set()

        def route(index: int, token) -> None:
            streamed.add(index)
            batch[index]._emit("token", token)

        try:
            results = self._decode(batch[0].config, [job.request for job in batch], route)
        except Exception as exc:  # noqa: BLE001 - answered per request below
            if len(batch) == 1:
                batch[0]._emit("error", exc)
                return
            # One bad request (say, a rationale too long for the model) must not fail the others:
            # each request that has not streamed anything yet is decoded again on its own.
            for index, job in enumerate(batch):
                if index in streamed:
                    job._emit("error", exc)
                else:
                    self._decode_together([job])
            return
        self.batches += 1
        self.batched_requests += len(batch)
        for job, result in zip(batch, results):
            job._emit("done", result)
