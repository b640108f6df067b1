"""RED as a transformers ``LogitsProcessor``, so it composes with ``model.generate``.

``generate`` runs the image branch (its own prompt is image + question); the processor owns the
rationale branches, with their own KV caches, and at each step returns
``log_softmax(image scores) + sum_k lambda_k log_softmax(rationale branch k)``.

Supported generate modes: greedy search and multinomial sampling (temperature, top-k and top-p
are applied by ``generate`` *after* RED, as in :class:`~redgraph.decoding.REDDecoder`), with a
batch of one or more questions. Not supported: beam search and group beam search,
``num_return_sequences > 1``, contrastive search, assisted / speculative decoding and DoLa; those
reorder, repeat or re-run rows behind the processor's back, and the processor raises
:class:`~redgraph.errors.UnsupportedError` when it sees the batch change shape.

Example:
    >>> processor = RationaleEnhancedLogitsProcessor.from_rationales(
    ...     lvlm, question, ["The sign says STOP."], rationale_weight=0.5)  # doctest: +SKIP
    >>> lvlm.model.generate(**lvlm.encode_image_branch(image, question),
    ...                     logits_processor=[processor], do_sample=False)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from transformers import LogitsProcessor

from redgraph.decoding.branches import BranchSet, padded_rationale_rows
from redgraph.decoding.packing import auto_pack_tokens
from redgraph.decoding.red import rationale_lambdas, red_scores
from redgraph.errors import ConfigError, UnsupportedError, check_rationale_weight


class RationaleEnhancedLogitsProcessor(LogitsProcessor):
    """Rationale-Enhanced Decoding inside ``model.generate``.

    Stateful and single-use per ``generate`` call: create one per request, or call
    :meth:`reset` before reusing it. Never share one between threads.

    Args:
        model: the model ``generate`` runs on (the rationale branches use the same weights).
        rationale_inputs: for each question of the batch, the encoded rationale-branch prompts
            (``lvlm.encode_rationale_branch(...)``) of its rationales. A flat list is taken as
            the rationales of a batch of one.
        rationale_weight: lambda, the total strength of the rationales; 0 returns the scores
            unchanged and runs nothing.
        rationale_weights: per-question relative weights of its rationales (None: equal shares).
        batch_branches: advance all rationale branches with one forward per step.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        rationale_inputs: Sequence[Mapping] | Sequence[Sequence[Mapping]],
        *,
        rationale_weight: float,
        rationale_weights: Sequence[Sequence[float] | None] | None = None,
        batch_branches: bool = True,
    ) -> None:
        check_rationale_weight(rationale_weight)
        if not rationale_inputs:
            raise ConfigError("rationale_inputs is empty; give at least one encoded rationale prompt")
        if isinstance(rationale_inputs[0], Mapping):
            rationale_inputs = [rationale_inputs]
        per_question = [list(inputs) for inputs in rationale_inputs]
        for q, inputs in enumerate(per_question):
            if not inputs:
                raise ConfigError(f"question {q} of the batch has no rationale; every question needs at least one")
        if rationale_weights is None:
            rationale_weights = [None] * len(per_question)
        if len(rationale_weights) != len(per_question):
            raise ConfigError(
                f"got rationale weights for {len(rationale_weights)} question(s) and rationales for {len(per_question)}"
            )
        self.model = model
        self.rationale_weight = float(rationale_weight)
        self.batch_branches = batch_branches
        self._inputs = per_question
        self._lambdas = [
            rationale_lambdas(self.rationale_weight, None if w is None else tuple(w), len(inputs))
            for w, inputs in zip(rationale_weights, per_question)
        ]
        self.reset()

    @classmethod
    def from_rationales(cls, lvlm, question: str, rationales: Sequence[str], *, rationale_weight: float,
                        rationale_weights: Sequence[float] | None = None, batch_branches: bool = True):
        """Encode ``rationales`` for ``question`` with ``lvlm``'s prompts and build the processor."""
        if isinstance(rationales, str):
            rationales = [rationales]
        inputs = [lvlm.encode_rationale_branch(r, question) for r in rationales]
        return cls(lvlm.model, [inputs], rationale_weight=rationale_weight,
                   rationale_weights=[rationale_weights], batch_branches=batch_branches)

    def reset(self) -> None:
        """Forget the rationale caches, ready for a new ``generate`` call."""
        self._branches: BranchSet | None = None
        self._prompt_length = 0
        self._steps = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # input_ids: (N, prompt + steps); scores: (N, V) image-branch scores from generate.
        if self.rationale_weight == 0:
            return scores  # the identity: plain decoding of the image branch
        batch = len(self._inputs)
        if input_ids.shape[0] != batch:
            raise UnsupportedError(
                f"generate passed {input_ids.shape[0]} rows but the processor was built for {batch} question(s); "
                "beam search, num_return_sequences > 1 and other modes that add rows are not supported with RED"
            )
        if self._branches is None:
            rows = [((q, k), inputs) for q, per_q in enumerate(self._inputs) for k, inputs in enumerate(per_q)]
            pack_tokens = auto_pack_tokens(self.model.device)
            self._branches = BranchSet(self.model, rows, batched=self.batch_branches, pack_tokens=pack_tokens)
            self._prompt_length = input_ids.shape[1]
        else:
            expected = self._prompt_length + self._steps
            if input_ids.shape[1] != expected:
                raise UnsupportedError(
                    f"expected {expected} tokens per row at this step, got {input_ids.shape[1]}: the processor was "
                    "reused without reset(), or a generate mode rewound the sequence (assisted decoding, DoLa)"
                )
            last = input_ids[:, -1].tolist()
            self._branches.step({q: last[q] for q in range(batch)})
        self._steps += 1
        logprobs, where = self._branches.logprobs()  # (R, V)
        rows, lambdas = padded_rationale_rows(where, list(enumerate(self._lambdas)), logprobs.device)  # (N, K)
        image_lp = F.log_softmax(scores.float(), dim=-1)  # (N, V)
        combined = red_scores(image_lp, logprobs[rows], lambdas)  # (N, V)
        return combined.to(scores.dtype)
