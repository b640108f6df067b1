"""Asking the image questions: how strongly the image branch gives the answer a claim asserts.

A *probe* is a question about the image, the answer a claim asserts, and, where the answer set
is closed (colours, yes/no, left/right, numbers), the alternatives. The image branch's prompt for
the question (image + question, exactly RED's image branch) is followed by each candidate answer
as the model would write it (its tokens, then the end-of-turn token), and the candidate's
probability is the product of its tokens' probabilities:

- closed set: the claimed answer's probability normalised over the alternatives;
- open answer: the model first answers greedily; the claimed answer's probability is normalised
  over {claimed, the model's own answer} (1 when they are the same answer; an empty answer, the
  model saying nothing, is a candidate like any other, so silence never supports a claim).

All probes of one image share one prefill of the image prefix, and so do later reviews of the same
picture by the same model (:mod:`redgraph.decoding.prefix_cache`). Each distinct question then runs
once, after a copy of that cache (all questions in one forward, right-padded), and every candidate
answer once after a copy of its question's cache (all candidates in one more forward). Causal
attention keeps this exact: every candidate's score equals that of its full prompt run alone
(tests check this on every family). Where the split would change how the text tokenises, that
question runs alone instead.

Shapes: R rows of one forward; S longest run of tokens; V vocabulary.

Example:
    >>> probe = Probe("What is the value of the blue bar?", "2", tuple(str(v) for v in range(1, 10)))
    >>> [result] = score_probes(lvlm, "chart.png", [probe])  # doctest: +SKIP
    >>> result.image_answer, result.image_probability, result.support  # doctest: +SKIP
    ('9', 0.97, 0.004)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from redgraph.decoding.prefix_cache import prefix_of
from redgraph.decoding.rows import RowGroup, prefill_row
from redgraph.errors import InputError, check_question
from redgraph.models import prompts
from redgraph.models.images import ImageInput, ready_image

_SENTINEL = "\u2063QUESTION\u2063"
# Rows per forward: bounds the (rows, suffix, vocabulary) logits of a large-vocabulary model.
_MAX_LOGITS = 1 << 26


@dataclass(frozen=True)
class Probe:
    """A question about the image and the answer a claim asserts.

    Attributes:
        question: asked of the image with the image-branch prompt.
        claimed: the answer the claim asserts.
        alternatives: the closed answer set (``claimed`` among them), or None for an open answer.
        family: what kind of claim asked it (a grammar claim kind, else None): whose calibration applies.
    """

    question: str
    claimed: str
    alternatives: tuple[str, ...] | None = None
    family: str | None = None

    def __post_init__(self) -> None:
        for name in ("question", "claimed"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise InputError(f"a probe's {name} must be a non-empty string, got {value!r:.80}")
        if self.alternatives is not None:
            alternatives = tuple(self.alternatives)
            if (len(alternatives) < 2 or not all(isinstance(a, str) and a.strip() for a in alternatives)
                    or len({answer_key(a) for a in alternatives}) != len(alternatives)):
                raise InputError(f"a probe's alternatives must be 2 or more different non-empty strings, got "
                                 f"{self.alternatives!r:.200}; use None for an open answer")
            if answer_key(self.claimed) not in {answer_key(a) for a in alternatives}:
                raise InputError(f"the claimed answer {self.claimed!r} is not among the alternatives {alternatives!r}")
            object.__setattr__(self, "alternatives", alternatives)


@dataclass(frozen=True)
class ProbeResult:
    """What the image answered to one probe.

    Attributes:
        question, claimed, alternatives: the probe.
        image_answer: the image branch's answer: the likeliest alternative, or its greedy answer.
        image_probability: that answer's probability among the candidates.
        support: the claimed answer's probability among the candidates.
        candidates: every candidate scored, with its probability among them (sums to 1).
        answer_probability: the image's answer's own probability as the model writes it (its tokens
            and the end), not shared among the candidates: how sure the image branch is of it.
        family: the probe's family (see :class:`Probe`).
    """

    question: str
    claimed: str
    alternatives: tuple[str, ...] | None
    image_answer: str
    image_probability: float
    support: float
    candidates: dict[str, float]
    answer_probability: float = 1.0
    family: str | None = None


def answer_key(answer: str) -> str:
    """How two answers are compared: case, spacing and closing punctuation do not matter."""
    return re.sub(r"\s+", " ", answer.strip().rstrip(".!?").strip().lower())


def split_prompt(processor, fmt: prompts.PromptFormat) -> tuple[str, str]:
    """The image-branch prompt as (text before the question, text from it on, with ``{question}``)."""
    text = prompts.image_branch_text(processor, _SENTINEL, fmt)
    before, after = text.split(_SENTINEL)
    stripped = before.rstrip(" ")

    def literal(text: str) -> str:
        return text.replace("{", "{{").replace("}", "}}")

    return stripped, literal(before[len(stripped) :]) + "{question}" + literal(after)


@torch.inference_mode()
def score_probes(lvlm, image: ImageInput, probes: Sequence[Probe], *, max_answer_tokens: int = 8) -> list[ProbeResult]:
    """Ask the image each probe's question and score the claimed answer (see the module docstring).

    Args:
        lvlm: the local model whose image branch answers.
        image: the image all probes are about.
        probes: the probes; open ones are first answered greedily (at most ``max_answer_tokens``).

    Raises:
        InputError: a probe is not a :class:`Probe`, or the image cannot be read.
    """
    probes = list(probes)
    for index, probe in enumerate(probes):
        if not isinstance(probe, Probe):
            raise InputError(f"probe {index} must be a Probe, got {type(probe).__name__}: {probe!r:.80}")
    if not probes:
        return []
    asker = _Asker(lvlm, ready_image(image, max_pixels=lvlm.max_image_pixels))
    asked = asker.ask([p.question for p in probes])  # each question once, after the shared image prefix
    open_questions = list(dict.fromkeys(p.question for p in probes if p.alternatives is None))
    greedy = dict(zip(open_questions, asker.greedy(asked, open_questions, max_answer_tokens)))
    candidates = []
    for probe in probes:
        if probe.alternatives is not None:
            candidates.append(list(probe.alternatives))
        else:
            own = greedy[probe.question].strip()  # "" when the model says nothing: a candidate like any other
            candidates.append([probe.claimed] if answer_key(own) == answer_key(probe.claimed) else [probe.claimed, own])
    logprobs = asker.answer_logprobs(asked, [(p.question, c) for p, cs in zip(probes, candidates) for c in cs])
    results, at = [], 0
    for probe, names in zip(probes, candidates):
        scores = torch.tensor(logprobs[at : at + len(names)], dtype=torch.float64)
        at += len(names)
        shares = torch.softmax(scores, dim=0).tolist()
        claimed = next(i for i, n in enumerate(names) if answer_key(n) == answer_key(probe.claimed))
        best = max(range(len(names)), key=shares.__getitem__)
        results.append(ProbeResult(
            question=probe.question, claimed=probe.claimed, alternatives=probe.alternatives,
            image_answer=names[best], image_probability=float(shares[best]), support=float(shares[claimed]),
            candidates={name: float(share) for name, share in zip(names, shares)},
            answer_probability=float(scores[best].exp()), family=probe.family,
        ))
    return results


class _Asker:
    """One image's prefix, prefilled once; each question runs once after a copy of its cache, and each
    answer after a copy of its question's."""

    def __init__(self, lvlm, picture) -> None:
        self.lvlm = lvlm
        self.tokenizer = lvlm.tokenizer
        self.end = self.tokenizer.eos_token_id
        if self.end is None:
            raise InputError(f"the tokenizer of {lvlm.name} has no end-of-sequence token; answers cannot be scored")
        self.prefix_text, self.template = split_prompt(lvlm.processor, lvlm.prompt_format)
        self.prefix_ids = self._tokens(self.prefix_text)
        self.picture = picture

    def _tokens(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _question_ids(self, question: str) -> list[int] | None:
        """The question's part of the prompt as tokens, or None where splitting changes the tokens."""
        suffix = self.template.format(question=check_question(question))
        ids = self._tokens(suffix)
        return ids if self._tokens(self.prefix_text + suffix) == self.prefix_ids + ids else None

    def ask(self, questions: list[str]) -> dict[str, tuple[RowGroup, int]]:
        """Each distinct question's row (group, index) right after its whole image-branch prompt."""
        placed: dict[str, tuple[RowGroup, int]] = {}
        shared = []
        for question in dict.fromkeys(questions):
            ids = self._question_ids(question)
            if ids is None:  # runs alone, its own image prefill included
                placed[question] = (prefill_row(self.lvlm.model, self.lvlm.encode_image_branch(self.picture, question)), 0)
            else:
                shared.append((question, ids))
        if shared:
            inputs = self.lvlm.processor(text=[self.prefix_text], images=[self.picture], return_tensors="pt")
            prefix = prefix_of(self.lvlm.model, inputs.to(self.lvlm.device))  # once per picture and model
            for chunk in _chunks(shared, prefix.logprobs.shape[-1]):
                group = prefix.repeated([0] * len(chunk))
                group.extend([ids for _, ids in chunk])  # (R, S, V) logits, dropped: only the last row state counts
                placed.update((question, (group, row)) for row, (question, _) in enumerate(chunk))
        return placed

    def _answer_ids(self, answer: str) -> list[int]:
        return self._tokens(answer) + [self.end]  # as the model writes an answer: its tokens, then the end

    def answer_logprobs(self, asked: dict[str, tuple[RowGroup, int]], pairs: list[tuple[str, str]]) -> list[float]:
        """log P(answer, end | image-branch prompt of question) for each (question, answer)."""
        scores = [0.0] * len(pairs)
        by_group: dict[int, list[tuple[int, int, list[int]]]] = {}
        groups: dict[int, RowGroup] = {}
        for index, (question, answer) in enumerate(pairs):
            group, row = asked[question]
            groups[id(group)] = group
            by_group.setdefault(id(group), []).append((index, row, self._answer_ids(answer)))
        for key, members in by_group.items():
            group = groups[key]
            for index, row, ids in members:
                if len(ids) == 1:  # the empty answer: the end token at once
                    scores[index] = float(group.logprobs[row, ids[0]])
            members = [member for member in members if len(member[2]) > 1]
            for chunk in _chunks(members, group.logprobs.shape[-1]):
                rows = group.repeated([row for _, row, _ in chunk])
                logits = rows.extend([ids[:-1] for _, _, ids in chunk])  # (R, S, V): position j predicts token j+1
                for place, (index, row, ids) in enumerate(chunk):
                    first = float(group.logprobs[row, ids[0]])
                    scores[index] = first + _answer_logprob(logits[place, : len(ids) - 1], ids[1:])
        return scores

    def greedy(self, asked: dict[str, tuple[RowGroup, int]], questions: list[str], max_new_tokens: int) -> list[str]:
        """The image branch's greedy answer to each question (plain decoding, no rationale)."""
        token_lists: dict[str, list[int]] = {q: [] for q in questions}
        by_group: dict[int, tuple[RowGroup, list[str]]] = {}
        for question in questions:
            group, _ = asked[question]
            by_group.setdefault(id(group), (group, []))[1].append(question)
        for source, members in by_group.values():
            group = source.repeated([asked[q][1] for q in members])
            live = list(range(len(members)))  # rows still answering
            for step in range(max_new_tokens):
                chosen = group.logprobs.argmax(dim=-1)  # (B,)
                for row in live:
                    token_lists[members[row]].append(int(chosen[row]))
                live = [row for row in live if int(chosen[row]) != self.end]
                if not live or step == max_new_tokens - 1:
                    break
                group.step(chosen)
        return [self.tokenizer.decode([t for t in token_lists[q] if t != self.end], skip_special_tokens=True).strip()
                for q in questions]


def _answer_logprob(logits: torch.Tensor, answer_ids: list[int]) -> float:
    """Sum of log-probabilities of ``answer_ids`` under (len, V) logits, one position each."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    index = torch.tensor(answer_ids, device=logits.device).view(-1, 1)
    return float(logprobs.gather(1, index).sum())


def _chunks(rows: list, vocabulary: int) -> list[list]:
    """``rows`` (each ending in a token list) in runs small enough for their (rows, length, V) logits."""
    if not rows:
        return []
    width = max(len(row[-1]) for row in rows) or 1
    size = max(1, _MAX_LOGITS // (width * int(vocabulary)))
    return [rows[i : i + size] for i in range(0, len(rows), size)]
