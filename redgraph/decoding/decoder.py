"""The fast RED decoder: image branch, rationale branches and several questions per forward.

At every step, for each question::

    score = log_softmax(image branch) + sum_k lambda_k * log_softmax(rationale branch k)

and the chosen token is fed to all branches of that question. Branches are prefilled one by one
(no padding) and merged into one cache, so a decode step is one forward over all rows.

Example:
    >>> decoder = REDDecoder(lvlm, REDConfig(rationale_weight=0.5))  # doctest: +SKIP
    >>> result = decoder.decode("cat.png", "What is on the mat?", ["I see a cat on a red mat."])  # doctest: +SKIP
    >>> result.text, result.tokens[0].changed_by_rationale  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch

from redgraph.decoding.branches import BranchSet, RowKey, padded_rationale_rows
from redgraph.decoding.packing import auto_pack_tokens
from redgraph.decoding.config import REDConfig
from redgraph.decoding.red import rationale_lambdas, red_scores, sampling_logits
from redgraph.errors import InputError, check_question, check_rationale, check_rationale_weight
from redgraph.models.images import ImageInput

FinishReason = Literal["eos", "stop", "length", "cancelled"]


@dataclass(frozen=True)
class REDRequest:
    """One question to answer with RED.

    Attributes:
        image: path, bytes or PIL image.
        question: the question about the image.
        rationales: zero or more rationales; with none, RED is plain decoding of the image branch.
        rationale_weights: relative weight per rationale (e.g. the critic's support); None uses the
            config's ``rationale_weights``, or equal shares.
        should_stop: asked before every step; when it answers True the request ends there, with
            finish reason ``"cancelled"`` (a server's client went away, or its deadline passed),
            and the other requests of the batch go on.
        rationale_weight: this request's total rationale strength (lambda); None uses the
            config's. Requests of different strengths then share one batch.
    """

    image: ImageInput
    question: str
    rationales: tuple[str, ...] = ()
    rationale_weights: tuple[float, ...] | None = None
    should_stop: Callable[[], bool] | None = field(default=None, compare=False, repr=False)
    rationale_weight: float | None = None

    def __post_init__(self) -> None:
        # A lone string is one rationale, not a sequence of one-character rationales.
        rationales = (self.rationales,) if isinstance(self.rationales, str) else tuple(self.rationales)
        object.__setattr__(self, "rationales", rationales)
        for index, rationale in enumerate(self.rationales):
            check_rationale(rationale, index if len(self.rationales) > 1 else None)
        if self.rationale_weight is not None:
            check_rationale_weight(self.rationale_weight)


@dataclass(frozen=True)
class TokenAttribution:
    """What one answer token owed to the image and to each rationale.

    Attributes:
        token_id, text: the chosen token and its text.
        image_logprob: log p(token | image, question, answer so far).
        rationale_logprobs: log p(token | rationale_k, question, answer so far), one per rationale.
        score: the combined RED score of the token (image term + weighted rationale terms).
        logprob: log-softmax of the combined scores at the token: RED's own probability.
        image_choice: the token the image branch alone would have chosen greedily.
        changed_by_rationale: True when the rationale(s) changed the choice against the image branch.
        rationale_shift: KL(RED || image branch) of the next-token distributions at this step, in
            nats: how far the rationale(s) moved the distribution (0 at lambda = 0). Measured on the
            combined scores, before any sampling temperature or truncation.
        top_logprobs: RED's most likely tokens at this step as ``(token_id, logprob)``, most likely
            first (``REDConfig.top_logprobs`` of them; none by default).
        special: the token is one of the tokenizer's special tokens (the end-of-turn token that ends
            an answer): not part of the answer's text, so shown nowhere as text.
    """

    token_id: int
    text: str
    image_logprob: float
    rationale_logprobs: tuple[float, ...]
    score: float
    logprob: float
    image_choice: int
    changed_by_rationale: bool
    rationale_shift: float
    top_logprobs: tuple[tuple[int, float], ...] = ()
    special: bool = False


@dataclass
class REDResult:
    """The answer to one request, with its per-token attribution."""

    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    rationale_lambdas: tuple[float, ...]
    tokens: list[TokenAttribution] = field(default_factory=list)
    prompt_tokens: int = 0
    rationale_prompt_tokens: tuple[int, ...] = ()

    @property
    def changed_tokens(self) -> int:
        """How many answer tokens the rationale(s) changed against the image branch alone."""
        return sum(t.changed_by_rationale for t in self.tokens)

    @property
    def rationale_dependence(self) -> float:
        """Mean per-token KL(RED || image branch) in nats: how much the answer leaned on the rationales."""
        return sum(t.rationale_shift for t in self.tokens) / len(self.tokens) if self.tokens else 0.0

    def to_dict(self) -> dict:
        """JSON-ready: the text, how it ended, the lambdas, what the rationales changed, and every
        token's attribution (the one serialiser of a RED result: CLI, trace, server)."""
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "rationale_lambdas": list(self.rationale_lambdas),
            "changed_tokens": self.changed_tokens,
            "rationale_dependence": self.rationale_dependence,
            "prompt_tokens": self.prompt_tokens,  # the image branch's prompt
            "rationale_prompt_tokens": list(self.rationale_prompt_tokens),  # each rationale branch's
            "tokens": [_token_record(token) for token in self.tokens],
        }


def _token_record(token: TokenAttribution) -> dict:
    record = asdict(token)
    if not token.top_logprobs:
        del record["top_logprobs"]  # asked for only by some callers; traces stay as they were
    if not token.special:
        del record["special"]  # said only of the tokens that are special
    return record


TokenCallback = Callable[[int, TokenAttribution], None]


@dataclass
class _Question:
    index: int
    lambdas: tuple[float, ...]
    generator: torch.Generator | None
    prompt_tokens: int
    rationale_prompt_tokens: tuple[int, ...]
    token_ids: list[int] = field(default_factory=list)
    tokens: list[TokenAttribution] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    text: str = ""


class REDDecoder:
    """Rationale-Enhanced Decoding over a loaded LVLM; safe to share between threads.

    The decoder holds no per-request state: each call builds its own caches, so two calls in two
    threads on one model give what each gives alone.

    Args:
        lvlm: the model to answer with (see :func:`redgraph.models.load_lvlm`).
        config: decoding settings.
    """

    def __init__(self, lvlm, config: REDConfig | None = None) -> None:
        if config is not None and not isinstance(config, REDConfig):
            raise TypeError(f"config must be a REDConfig, got {type(config).__name__}")
        self.lvlm = lvlm
        self.config = config or REDConfig()
        # The tokenizer's special tokens (end of turn, image placeholders): never part of an answer's text.
        self._special_ids = frozenset(getattr(getattr(lvlm, "tokenizer", None), "all_special_ids", None) or ())

    def decode(
        self,
        image: ImageInput,
        question: str,
        rationales: Sequence[str] | str = (),
        *,
        rationale_weights: Sequence[float] | None = None,
        on_token: TokenCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> REDResult:
        """Answer one question; see :class:`REDRequest` for the arguments."""
        weights = None if rationale_weights is None else tuple(rationale_weights)
        request = REDRequest(image, question, rationales, weights, should_stop)
        return self.decode_batch([request], on_token=on_token)[0]

    def decode_batch(self, requests: Sequence[REDRequest], *, on_token: TokenCallback | None = None) -> list[REDResult]:
        """Answer several questions together, one forward per step for all of their branches.

        Args:
            requests: the questions.
            on_token: called as ``on_token(request_index, attribution)`` for each new token.

        Raises:
            InputError: a request's image, question or rationale cannot be used, or a prompt is
                longer than the model's context.
        """
        if not requests:
            return []
        questions, rows = self._prepare(requests)
        cfg = self.config
        lvlm = self.lvlm

        # Prefill every row (packed into one forward where the family allows), then merge them into
        # one group (batched) or keep one group per row (serial).
        pack_tokens = cfg.pack_tokens if cfg.pack_tokens is not None else auto_pack_tokens(lvlm.device)
        branches = BranchSet(lvlm.model, rows, batched=cfg.batch_branches, pack_tokens=pack_tokens)

        eos = self._eos_ids()
        for _ in range(cfg.max_new_tokens):
            self._cancel_stopped(questions, requests)
            active = [qs for qs in questions if qs.finish_reason is None]
            if not active:
                break
            branches.keep({qs.index for qs in active})
            picks = self._choose(active, *branches.logprobs())
            chosen = {qs.index: token for qs, token in zip(active, picks)}  # question index -> token id
            for qs in active:
                self._finish_if_done(qs, chosen[qs.index], eos)
                if on_token is not None and qs.tokens:
                    on_token(qs.index, qs.tokens[-1])
            # Drop rows of finished questions, then advance the rest.
            still = {qs.index for qs in questions if qs.finish_reason is None}
            if not still:
                break
            branches.keep(still)
            branches.step(chosen)
        return self._results(questions)

    def steps(self, requests: Sequence[REDRequest]) -> REDSteps:
        """The same decoding as :meth:`decode_batch`, as a job that advances one token at a time
        (for a model's shared running batch, :mod:`redgraph.decoding.combining`). The requests
        are checked and encoded here, in the caller's thread.

        Raises:
            InputError: as :meth:`decode_batch`.
        """
        return REDSteps(self, requests)

    def _prepare(self, requests: Sequence[REDRequest]) -> tuple[list[_Question], list[tuple[RowKey, object]]]:
        """Check and encode the requests: one record per question and the inputs of every row."""
        for index, request in enumerate(requests):
            if not isinstance(request, REDRequest):
                raise InputError(f"requests[{index}] must be a REDRequest, got {type(request).__name__}")
        cfg = self.config
        lvlm = self.lvlm
        questions: list[_Question] = []
        rows: list[tuple[tuple[int, int], object]] = []  # ((question, branch: -1 image, k rationale k), inputs)
        for q, request in enumerate(requests):
            weights = request.rationale_weights if request.rationale_weights is not None else cfg.rationale_weights
            total = cfg.rationale_weight if request.rationale_weight is None else request.rationale_weight
            lambdas = rationale_lambdas(total, weights, len(request.rationales)) if request.rationales else ()
            lvlm.check_text_length(check_question(request.question), "question")
            for k, rationale in enumerate(request.rationales):  # REDRequest has checked they are texts
                lvlm.check_text_length(rationale, f"rationale {k}")
            image_inputs = lvlm.encode_image_branch(request.image, request.question)
            lvlm.check_fits(image_inputs, cfg.max_new_tokens, "image-branch prompt")
            rows.append(((q, -1), image_inputs))
            rationale_lengths = []
            # Rationale branches run even at lambda = 0: the answer is then the image branch's
            # exactly, and the attribution still shows what each rationale would have said.
            for k, rationale in enumerate(request.rationales):
                inputs = lvlm.encode_rationale_branch(rationale, request.question)
                lvlm.check_fits(inputs, cfg.max_new_tokens, f"rationale-branch prompt of rationale {k}")
                rows.append(((q, k), inputs))
                rationale_lengths.append(int(inputs["input_ids"].shape[1]))
            generator = None
            if cfg.do_sample:
                generator = torch.Generator(device=lvlm.device)
                if cfg.seed is not None:
                    generator.manual_seed(cfg.seed)
                else:
                    generator.seed()  # never torch.seed(): that re-seeds the process-wide generator
            questions.append(_Question(
                index=q, lambdas=lambdas, generator=generator,
                prompt_tokens=int(image_inputs["input_ids"].shape[1]), rationale_prompt_tokens=tuple(rationale_lengths),
            ))
        return questions, rows

    def _results(self, questions: list[_Question]) -> list[REDResult]:
        for qs in questions:
            if qs.finish_reason is None:
                qs.finish_reason = "length"
                qs.text = self._text(qs.token_ids)
        return [
            REDResult(
                text=qs.text,
                token_ids=qs.token_ids,
                finish_reason=qs.finish_reason,
                rationale_lambdas=qs.lambdas,
                tokens=qs.tokens,
                prompt_tokens=qs.prompt_tokens,
                rationale_prompt_tokens=qs.rationale_prompt_tokens,
            )
            for qs in questions
        ]

    # -- one step --------------------------------------------------------------------------

    def _choose(self, active: list[_Question], logprobs: torch.Tensor, where: dict[tuple[Hashable, int], int],
                ids: Sequence[Hashable] | None = None) -> list[int]:
        """The token of each active question (in order) from ``logprobs`` (R, V), every row's
        next-token log-probabilities, and ``where``, the row of each (question id, branch); a
        question's id is its index unless ``ids`` says otherwise (questions of several jobs chosen
        together). Each question records its token and, if asked, its attribution."""
        cfg = self.config
        ids = [qs.index for qs in active] if ids is None else ids
        device = logprobs.device
        image_rows = torch.tensor([where[(q, -1)] for q in ids], device=device)  # (N,)
        rationale_rows, lambdas = padded_rationale_rows(
            where, [(q, qs.lambdas) for q, qs in zip(ids, active)], device
        )  # (N, K), (N, K)
        image_lp = logprobs[image_rows]  # (N, V)
        rationale_lp = logprobs[rationale_rows]  # (N, K, V)
        scores = red_scores(image_lp, rationale_lp, lambdas)  # (N, V)
        if cfg.do_sample:
            logits = sampling_logits(scores, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p)
            probs = logits.softmax(dim=-1)
            picks = [int(torch.multinomial(probs[n], 1, generator=qs.generator)) for n, qs in enumerate(active)]
        else:
            picks = scores.argmax(dim=-1).tolist()
        for qs, token in zip(active, picks):
            qs.token_ids.append(token)
        if not cfg.record_attribution:
            return picks
        image_choice = image_lp.argmax(dim=-1).tolist()
        combined = scores.log_softmax(dim=-1)  # (N, V)
        top = None
        if cfg.top_logprobs:
            values, top_ids = combined.topk(cfg.top_logprobs, dim=-1)  # (N, k) each
            top = [tuple(zip(i, v)) for i, v in zip(top_ids.tolist(), values.tolist())]
        p_red = combined.exp()
        # KL(RED || image) per question; tokens RED gives no mass add nothing (0 * -inf is NaN).
        shift = torch.where(p_red > 0, p_red * (combined - image_lp), torch.zeros_like(p_red)).sum(-1).tolist()
        # The chosen token's values, read out in one go per tensor (the same float32 values).
        rows = torch.arange(len(active), device=device)
        chosen = torch.tensor(picks, device=device)
        image_at = image_lp[rows, chosen].tolist()
        rationale_at = rationale_lp[rows, :, chosen].tolist()  # (N, K)
        score_at = scores[rows, chosen].tolist()
        logprob_at = combined[rows, chosen].tolist()
        for n, (qs, token) in enumerate(zip(active, picks)):
            qs.tokens.append(
                TokenAttribution(
                    token_id=token,
                    text=self.lvlm.tokenizer.decode([token]),
                    image_logprob=image_at[n],
                    rationale_logprobs=tuple(rationale_at[n][: len(qs.lambdas)]),
                    score=score_at[n],
                    logprob=logprob_at[n],
                    image_choice=int(image_choice[n]),
                    changed_by_rationale=int(image_choice[n]) != token,
                    rationale_shift=max(0.0, shift[n]),
                    top_logprobs=top[n] if top is not None else (),
                    special=token in self._special_ids,
                )
            )
        return picks

    def _cancel_stopped(self, questions: list[_Question], requests: Sequence[REDRequest]) -> None:
        """End as ``"cancelled"`` every unfinished question whose request's ``should_stop`` says so."""
        for qs in questions:
            stop = requests[qs.index].should_stop
            if qs.finish_reason is None and stop is not None and stop():
                qs.finish_reason = "cancelled"
                qs.text = self._text(qs.token_ids)

    def _finish_if_done(self, qs: _Question, token: int, eos: set[int]) -> None:
        if token in eos:
            qs.finish_reason = "eos"
            qs.text = self._text(qs.token_ids)
            return
        if self.config.stop_strings:
            text = self._text(qs.token_ids)
            cut = min((i for i in (text.find(s) for s in self.config.stop_strings) if i >= 0), default=-1)
            if cut >= 0:
                qs.finish_reason = "stop"
                qs.text = text[:cut]

    def _text(self, token_ids: list[int]) -> str:
        return self.lvlm.tokenizer.decode(token_ids, skip_special_tokens=True)

    def _eos_ids(self) -> set[int]:
        if self.config.eos_token_ids is not None:
            return set(self.config.eos_token_ids)
        found = getattr(getattr(self.lvlm.model, "generation_config", None), "eos_token_id", None)
        if found is None:
            found = self.lvlm.tokenizer.eos_token_id
        if found is None:
            return set()
        return set(found) if isinstance(found, (list, tuple)) else {int(found)}


class REDSteps:
    """:meth:`REDDecoder.decode_batch` as a job of a model's running batch: the batch prefills
    ``inputs`` (one model input per row), then calls :meth:`advance` with those rows'
    log-probabilities after the prefill and after every step, until no row is left; then
    :meth:`result` holds what ``decode_batch`` would have returned. Made by :meth:`REDDecoder.steps`.

    Attributes:
        inputs: the rows' model inputs: each question's image branch, then its rationale branches.
    """

    def __init__(self, decoder: REDDecoder, requests: Sequence[REDRequest]) -> None:
        self._decoder = decoder
        self._requests = list(requests)
        self.restart()

    def restart(self) -> None:
        """Back to before the first token (the job is decoded afresh, e.g. alone after its batch failed)."""
        self._questions, rows = self._decoder._prepare(self._requests)
        self.inputs = [row_inputs for _, row_inputs in rows]
        self._live: list[RowKey] = [key for key, _ in rows]  # the rows still decoding, in order
        self._steps = 0
        self._eos = self._decoder._eos_ids()

    @property
    def group_key(self) -> Hashable:
        """Jobs of one key (one model, one config) choose their tokens together (:meth:`advance_group`)."""
        return (id(self._decoder.lvlm), self._decoder.config)

    def advance(self, logprobs: torch.Tensor, note: TokenCallback | None = None) -> list[int | None]:
        """Choose each question's next token from its live rows' (R, V) ``logprobs``.

        Returns the token to feed each live row, or None where the row's question is finished
        (the row is then dropped). ``note(request_index, attribution)`` is called per new token.
        """
        [tokens] = REDSteps.advance_group([self], logprobs, [note])
        return tokens

    @staticmethod
    def advance_group(jobs: Sequence[REDSteps], logprobs: torch.Tensor,
                      notes: Sequence[TokenCallback | None]) -> list[list[int | None]]:
        """:meth:`advance` for jobs of one :attr:`group_key` at once: ``logprobs`` holds their live
        rows, job after job, and one choice covers all their questions (the same tokens and
        attributions as each job's own, in a few tensor operations instead of a few per job)."""
        decoder = jobs[0]._decoder
        active: list[_Question] = []
        ids: list[tuple[int, int]] = []  # (job, question): a question's id across the jobs
        where: dict[tuple[tuple[int, int], int], int] = {}
        offset = 0
        for j, job in enumerate(jobs):
            decoder._cancel_stopped(job._questions, job._requests)
            for row, (q, branch) in enumerate(job._live):
                where[((j, q), branch)] = offset + row
            offset += len(job._live)
            for qs in job._questions:
                if qs.finish_reason is None:
                    active.append(qs)
                    ids.append((j, qs.index))
        picks = decoder._choose(active, logprobs, where, ids) if active else []
        chosen: list[dict[int, int]] = [{} for _ in jobs]
        for qs, (j, q), token in zip(active, ids, picks):
            chosen[j][q] = token
            decoder._finish_if_done(qs, token, jobs[j]._eos)
            if notes[j] is not None and qs.tokens:
                notes[j](q, qs.tokens[-1])
        return [job._fed(chosen[j]) for j, job in enumerate(jobs)]

    def _fed(self, chosen: dict[int, int]) -> list[int | None]:
        if chosen:
            self._steps += 1
        still = set()
        if self._steps < self._decoder.config.max_new_tokens:
            still = {qs.index for qs in self._questions if qs.finish_reason is None}
        tokens = [chosen[q] if q in still else None for q, _ in self._live]
        self._live = [key for key in self._live if key[0] in still]
        return tokens

    def result(self) -> list[REDResult]:
        """The results, once no row is left (questions still going end as ``"length"``)."""
        return self._decoder._results(self._questions)
