"""SDRT's ensemble weighting, with the critic in it: a weight per trace, and which traces are dropped.

For trace ``t`` of item ``i``, written in style ``s``::

    weight(t) = style_weight(s) x agreement(t) x support(t)

- ``agreement(t)``: the share of item ``i``'s answered traces whose answer matches ``t``'s (after
  GQA-style normalisation): answer agreement across styles and samples.
- ``support(t)``: the critic's support of ``t``'s rationale (its weakest claim's; 0 with an
  injection or no checkable claim), so the student learns only from reasoning the image bears out.
  Claims the critic was unsure of (its calibrated support below its ``unsure_below``, experts that
  disagreed, a picture beyond its range) are left out of it: they neither bear the rationale out
  nor count against it. A trace whose every claim was unsure has no critic factor: on a picture
  family beyond the critic's range (a user's own charts, where its eyes are the model's own) its
  weight is the style's and the agreement's alone, and the summary counts it (``without_critic``).
  ``unsure="drop"`` drops such traces instead (``unsure``).
- ``style_weight(s)``: learned from the traces, the paper's ensemble weight over prompts: the
  style's answer accuracy against the items' gold answers, Laplace-smoothed ((right + 1) /
  (answered + 2)); where no item has a gold answer, its agreement with each item's plurality answer
  instead. Divided by the best style's, so the best style weighs 1.

A trace with no rationale or no answer is dropped (``empty``), and so is one whose weight is below
``threshold`` (``below_threshold``); all reasons are counted. The ablations switch a factor to 1:
``critic=False``, ``agreement=False``, ``style_weights="uniform"``.

**Experts teach.** Where the critic had experts beside the model's own eyes (the OCR expert,
:mod:`redgraph.agents.experts`), a trace keeps what each read for its claims' questions. When the
experts' sure readings of the item's own question agree on an answer (``expert_answers``), that
answer teaches: a trace whose answer differs is dropped (``expert_contradicts``), and the item gets
an answer lesson of the expert's answer (as the model spells it) weighing what its traces' answer
lessons would weigh at full weight (its answered traces' count, less the weight of the kept traces
that agree), so an item the model misreads and the expert reads (``expert_corrections``) teaches as
much as one it reads well. The model's traces alone cannot teach it what it cannot see; an expert
with other eyes can. ``experts=False`` is the ablation (the readings then count only through the
critic's support).

Example:
    >>> records = [
    ...     {"question_id": "q", "style": "facts", "rationale": "The red bar is 3.", "answer": "3", "support": 0.9, "gold_answer": "3"},
    ...     {"question_id": "q", "style": "facts", "rationale": "The red bar is 5.", "answer": "5", "support": 0.1, "gold_answer": "3"},
    ... ]
    >>> result = weigh_traces(records, WeightConfig(threshold=0.2))
    >>> [round(w, 3) for _, w in result.kept], dict(result.dropped)
    ([0.45], {'below_threshold': 1})
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Literal

from redgraph.errors import ConfigError

STYLE_WEIGHTS = ("learned", "uniform")
UNSURE = ("ignore", "drop")


@dataclass(frozen=True)
class WeightConfig:
    """How traces are weighted and which are kept.

    Attributes:
        critic: multiply by the critic's support (False: the "no critic filter" ablation).
        agreement: multiply by answer agreement across the item's traces.
        style_weights: ``"learned"`` (per-style accuracy, see the module) or ``"uniform"``.
        threshold: traces weighing less are dropped.
        unsure: a trace the critic was sure of no claim of: ``"ignore"`` weighs it without the critic's
            factor, ``"drop"`` drops it.
        experts: experts' sure answers to an item's question teach it (see the module).
    """

    critic: bool = True
    agreement: bool = True
    style_weights: Literal["learned", "uniform"] = "learned"
    threshold: float = 0.25
    unsure: Literal["ignore", "drop"] = "ignore"
    experts: bool = True

    def __post_init__(self) -> None:
        if self.unsure not in UNSURE:
            raise ConfigError(f"unsure must be one of {', '.join(UNSURE)}, got {self.unsure!r}")
        if self.style_weights not in STYLE_WEIGHTS:
            raise ConfigError(f"style_weights must be one of {', '.join(STYLE_WEIGHTS)}, got {self.style_weights!r}")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) or not 0 <= self.threshold < 1:
            raise ConfigError(f"threshold must be a number from 0 to below 1, got {self.threshold!r}")


@dataclass
class Weighting:
    """The kept traces with their weights, what was dropped and why, and the style weights used."""

    kept: list[tuple[dict, float]]
    dropped: Counter = field(default_factory=Counter)
    style_weights: dict[str, float] = field(default_factory=dict)
    without_critic: int = 0  # kept traces weighed without the critic's factor (it was sure of no claim)
    taught: list[tuple[dict, str, float]] = field(default_factory=list)  # (an item's trace, the experts' answer, weight)
    expert_answers: int = 0  # items whose question the experts answered
    expert_corrections: int = 0  # of them, items no kept trace answered so

    def summary(self) -> dict:
        kept_weights = [w for _, w in self.kept]
        out = {"traces": len(self.kept) + sum(self.dropped.values()), "kept": len(self.kept),
               "dropped": dict(sorted(self.dropped.items())),
               "items_kept": len({r["question_id"] for r, _ in self.kept} | {r["question_id"] for r, _, _ in self.taught}),
               "without_critic": self.without_critic,
               "mean_weight_kept": round(sum(kept_weights) / len(kept_weights), 4) if kept_weights else None,
               "style_weights": {k: round(v, 4) for k, v in self.style_weights.items()}}
        if self.expert_answers:
            out.update(expert_answers=self.expert_answers, expert_corrections=self.expert_corrections)
        return out


def weigh_traces(records: list[dict], config: WeightConfig = WeightConfig()) -> Weighting:
    """Weigh ``records`` (trace records, see :mod:`redgraph.distill.traces`) as the module says."""
    from redgraph.eval.normalize import normalize_answer

    items: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        items[record["question_id"]].append(record)
    answered = {qid: [r for r in group if _usable(r)] for qid, group in items.items()}
    agreement: dict[int, float] = {}
    plurality: dict[str, str] = {}
    for qid, group in answered.items():
        counts = Counter(normalize_answer(r["answer"]) for r in group)
        if counts:
            plurality[qid] = counts.most_common(1)[0][0]
        for record in group:
            agreement[id(record)] = counts[normalize_answer(record["answer"])] / len(group)
    style_weights = _style_weights(answered, plurality, uniform=config.style_weights == "uniform")
    result = Weighting(kept=[], style_weights=style_weights)
    taught = {qid: answer for qid, group in items.items() if (answer := expert_answer(group)) is not None} \
        if config.experts else {}
    for record in records:
        if not _usable(record):
            result.dropped["empty"] += 1
            continue
        if record["question_id"] in taught and \
                normalize_answer(record["answer"]) != normalize_answer(taught[record["question_id"]]):
            result.dropped["expert_contradicts"] += 1
            continue
        weight = style_weights[record["style"]]
        if config.agreement:
            weight *= agreement[id(record)]
        support = sure_support(record) if config.critic else 1.0
        if support is None and config.unsure == "drop":
            result.dropped["unsure"] += 1
            continue
        if support is not None:
            weight *= support
        if weight < config.threshold or weight == 0:
            result.dropped["below_threshold"] += 1
        else:
            result.kept.append((record, weight))
            result.without_critic += support is None
    agreeing: Counter = Counter()
    for record, weight in result.kept:
        agreeing[record["question_id"]] += weight
    for qid, answer in taught.items():
        answer = _as_the_model_writes(answer, answered[qid])
        full = len(answered[qid]) or 1
        result.expert_answers += 1
        result.expert_corrections += agreeing[qid] == 0
        if full - agreeing[qid] > 0:
            result.taught.append((items[qid][0], answer, full - agreeing[qid]))
    return result


def _as_the_model_writes(answer: str, traces: list[dict]) -> str:
    """The experts' answer as the model spells it: a trace's answer that means the same, else the
    expert's text, lower-cased where the model's answers to the item are all lower case (OCR reads
    a title as printed, "INVOICE", where the model writes "invoice")."""
    from redgraph.eval.normalize import normalize_answer

    wanted = normalize_answer(answer)
    same = [r["answer"].strip() for r in traces if normalize_answer(r["answer"]) == wanted]
    if same:
        return Counter(same).most_common(1)[0][0]
    written = [r["answer"].strip() for r in traces]
    return answer.lower() if written and all(a == a.lower() for a in written) else answer


def _question_key(text: str) -> str:
    return " ".join(text.lower().split()).rstrip("?.! ")


def expert_answer(group: list[dict]) -> str | None:
    """The answer the experts beside the model gave the item's own question, where their sure readings
    (kept in the traces' claims, ``readings``) agree on one; else None."""
    from redgraph.eval.normalize import normalize_answer

    readings = [reading for record in group for claim in record.get("claims") or []
                for reading in claim.get("readings") or []]
    if not readings:  # traces of a critic with no expert beside it
        return None
    asked = _question_key(group[0]["question"])
    answers: dict[str, str] = {}
    for reading in readings:
        text = reading.get("answer")
        if reading.get("sure") and isinstance(text, str) and normalize_answer(text) \
                and _question_key(reading.get("question") or "") == asked:
            answers.setdefault(normalize_answer(text), text.strip())
    return next(iter(answers.values())) if len(answers) == 1 else None


def sure_support(record: dict) -> float | None:
    """The critic's support of a trace from the claims it was sure of (None: it was sure of none).

    The record's own ``support`` where no claim was unsure (traces written before claims had a
    status have none unsure); else the weakest sure claim's, or 0 with a prompt injection found."""
    if record.get("injections"):  # an injection found in the rationale: no support, sure or not
        return 0.0
    claims = record.get("claims") or []
    sure = [claim for claim in claims if claim.get("status") != "unsure"]
    if len(sure) == len(claims):
        return float(record.get("support") or 0.0)
    if not sure:
        return None
    return min(float(claim["support"]) for claim in sure)


def _usable(record: dict) -> bool:
    return bool((record.get("rationale") or "").strip() and (record.get("answer") or "").strip())


def _style_weights(answered: dict[str, list[dict]], plurality: dict[str, str], *, uniform: bool) -> dict[str, float]:
    from redgraph.eval.normalize import answers_match, normalize_answer

    styles = sorted({r["style"] for group in answered.values() for r in group})
    if uniform or not styles:
        return dict.fromkeys(styles, 1.0)
    with_gold = any(r.get("gold_answer") for group in answered.values() for r in group)
    right: Counter = Counter()
    seen: Counter = Counter()
    for qid, group in answered.items():
        for record in group:
            if with_gold:
                if not record.get("gold_answer"):
                    continue
                hit = answers_match(record["answer"], record["gold_answer"])
            else:
                hit = normalize_answer(record["answer"]) == plurality[qid]
            seen[record["style"]] += 1
            right[record["style"]] += hit
    score = {style: (right[style] + 1) / (seen[style] + 2) for style in styles}
    best = max(score.values())
    return {style: value / best for style, value in score.items()}
