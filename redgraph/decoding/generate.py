"""Greedy generation from chat-rendered prompts (the reasoner, decomposers, the eval harness's CoT
baseline), as a step job of the model's running batch, so concurrent callers share every forward.

A graph run whose caller went away stops its reasoner mid-rationale: the node runs the reasoner
inside :func:`stopping`, and greedy generation asks that check before every token, leaving the
running batch and raising :class:`~redgraph.errors.Cancelled` when it answers True.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import torch

from redgraph.decoding.combining import combiner_of
from redgraph.errors import Cancelled
from redgraph.models.generation import encode_batch, generate_with_hf

_SHOULD_STOP: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar("should_stop", default=None)


@contextlib.contextmanager
def stopping(should_stop: Callable[[], bool] | None) -> Iterator[None]:
    """Greedy generation in this block (in this thread) stops once ``should_stop()`` is True."""
    token = _SHOULD_STOP.set(should_stop)
    try:
        yield
    finally:
        _SHOULD_STOP.reset(token)


class GreedySteps:
    """Greedy decoding of chat-rendered prompts, one row each, as a step job
    (:class:`redgraph.decoding.combining.StepJob`): each row ends at the end-of-sequence token or
    after ``max_new_tokens``; :meth:`result` is each prompt's text, special tokens left out and
    stripped, as :func:`redgraph.models.generation.generate_with_hf` gives it.

    The prompts are encoded, and checked against the model's context, here, in the caller's thread.
    ``should_stop`` (default: the one :func:`stopping` set) is asked before every token; once it is
    True the rows leave and :meth:`result` raises :class:`~redgraph.errors.Cancelled`.
    """

    def __init__(self, lvlm, texts: list[str], images, max_new_tokens: int, *,
                 should_stop: Callable[[], bool] | None = None) -> None:
        self._tokenizer = lvlm.tokenizer
        self.max_new_tokens = max_new_tokens
        self.should_stop = should_stop if should_stop is not None else _SHOULD_STOP.get()
        self.inputs = []
        for index, text in enumerate(texts):
            row = encode_batch(lvlm, [text], None if images is None else [images[index]])
            lvlm.check_fits(row, max_new_tokens, "prompt")  # before the forward, not after minutes of it
            self.inputs.append(row)
        self._eos = self._tokenizer.eos_token_id
        self.restart()

    def restart(self) -> None:
        """Back to before the first token."""
        self._tokens: list[list[int]] = [[] for _ in self.inputs]
        self._live = list(range(len(self.inputs)))
        self._stopped = False

    def advance(self, logprobs: torch.Tensor, note: Callable[[int, Any], None] | None = None) -> list[int | None]:
        """The greedy token of each live row of (R, V) ``logprobs``; None where the row ends."""
        if self.should_stop is not None and self.should_stop():
            self._stopped = True
            fed_none: list[int | None] = [None] * len(self._live)
            self._live = []
            return fed_none
        fed: list[int | None] = []
        for row, token in zip(self._live, logprobs.argmax(dim=-1).tolist(), strict=True):
            if token == self._eos:
                fed.append(None)
                continue
            self._tokens[row].append(token)
            fed.append(token if len(self._tokens[row]) < self.max_new_tokens else None)
        self._live = [row for row, token in zip(self._live, fed) if token is not None]
        return fed

    def result(self) -> list[str]:
        if self._stopped:
            raise Cancelled(f"generation was stopped after {max(map(len, self._tokens), default=0)} tokens: "
                            "its caller went away or its deadline passed")
        return [text.strip() for text in self._tokenizer.batch_decode(self._tokens, skip_special_tokens=True)]


def generate_text(
    lvlm, texts: list[str], images, max_new_tokens: int, *, temperature: float | None = None, seed: int | None = None
) -> list[str]:
    """Answers to chat-rendered prompts: greedy, or sampled at ``temperature``.

    Greedy prompts join the model's running batch (:mod:`redgraph.decoding.combining`), so calls
    made at the same time from several threads (concurrent graph runs) share its forwards; a call
    alone decodes alone. Sampling is seeded through its own generator state (``seed``), leaving
    torch's global RNG as it was, and runs through ``generate``.
    """
    stop = _SHOULD_STOP.get()  # read here: the batch below may run in another caller's thread
    if temperature is not None:
        return _unless_stopped(generate_with_hf(lvlm, texts, images, max_new_tokens, temperature=temperature,
                                                seed=seed, should_stop=[stop] * len(texts)))
    combiner = combiner_of(lvlm)
    if combiner.steps:
        return combiner.run_steps(GreedySteps(lvlm, list(texts), images, max_new_tokens, should_stop=stop))

    def together(items: list, _note) -> list[list[str | None]]:  # a family whose rows cannot join later
        every_image = None if images is None else [i for _, images_, _ in items for i in images_]
        merged = generate_with_hf(lvlm, [t for texts_, _, _ in items for t in texts_], every_image, max_new_tokens,
                                  should_stop=[stop_ for texts_, _, stop_ in items for _ in texts_])
        ends = list(itertools.accumulate(len(texts_) for texts_, _, _ in items))
        return [merged[end - len(texts_):end] for end, (texts_, _, _) in zip(ends, items)]

    return _unless_stopped(combiner.run(("generate", max_new_tokens, images is None), (list(texts), images, stop),
                                        together))


def _unless_stopped(texts: list[str | None]) -> list[str]:
    if any(text is None for text in texts):
        raise Cancelled("generation was stopped: its caller went away or its deadline passed")
    return texts
