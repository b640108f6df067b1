"""Held-out figures for the embedded model (or any checkpoint that speaks the same prompts).

Metrics, each per scene kind and overall, on items of one split (``test`` by default):

- ``image_answer_acc``: image + question -> answer, greedy (the direct baseline);
- ``rationale_answer_acc``: gold rationale + question, no image -> answer;
- ``cot_answer_acc``: image + gold rationale + question -> answer;
- ``rationale_fact_acc``: share of generated rationales (image + rationale request) whose every
  sentence is a claim that holds for the scene;
- ``claim_verification_acc``: each labelled claim of each item, judged true when the model puts more
  probability on "yes" than on "no" as its first answer token (the critic's own scoring,
  :func:`redgraph.decoding.claim_scoring.claim_support`).

``source`` says who drew the pictures (:data:`SOURCES`): ``synthetic``, the project's own renderer
(every scene kind); ``matplotlib``, bar charts in matplotlib's default style; ``fonts``, documents in
DejaVu fonts; ``heldout``, charts and documents in a style sheet and a font that training never
draws (``ggplot``, DejaVu Sans Mono: :mod:`redgraph.data.tools`). The questions, rationales and claims
are the same items' either way.

Answers are compared after GQA-style normalisation of the prediction. ``ci95`` holds each figure's
95% Wilson interval, in the same layout: 200 items of a kind pin a share near 0.9 only to about
+-0.04, so two models that differ by less are not told apart by the default 600 items.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence

from PIL import Image

from redgraph.data.claims import grade_rationale
from redgraph.data.posing import check_categories
from redgraph.data.synthetic import SPLITS, SyntheticItem, generate_items
from redgraph.data.vocabulary import STANDARD, Vocabulary, vocabulary_named
from redgraph.decoding.claim_scoring import claim_support
from redgraph.errors import ConfigError, check_whole_number
from redgraph.eval.normalize import answers_match
from redgraph.eval.report import wilson_interval
from redgraph.models import prompts
# The evaluation decodes its own batches of 16 items, alone: one padded `generate` batch is 5-10%
# faster here than the running batch's packed prefill, and gives the same texts (the running
# batch, redgraph.decoding.generate, is for callers that arrive at different moments).
from redgraph.models.generation import generate_with_hf

SOURCES = ("synthetic", "matplotlib", "fonts", "heldout")
METRICS = ("image_answer_acc", "rationale_answer_acc", "cot_answer_acc", "rationale_fact_acc", "claim_verification_acc")


def check_items(split: str, source: str, vocabulary: str):
    """The vocabulary named ``vocabulary``, once ``split``, ``source`` and it name what :func:`evaluate`
    knows (a caller checks them before loading a model)."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if source not in SOURCES:
        raise ConfigError(f"unknown picture source {source!r}; choose one of {', '.join(SOURCES)}")
    return vocabulary_named(vocabulary, ConfigError)


def evaluate(
    lvlm,
    *,
    split: str = "test",
    limit: int = 600,
    seed: int = 0,
    categories: Sequence[str] | None = None,
    source: str = "synthetic",
    vocabulary: str = "standard",
    batch_size: int = 16,
    max_rationale_tokens: int = 64,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Evaluate ``lvlm`` on ``limit`` generated items of ``split``; with ``categories``, on the first
    ``limit`` items of those question categories (the same items the whole split gives them). The items
    are made of ``vocabulary``'s words and numbers (:mod:`redgraph.data.vocabulary`).

    Returns:
        ``{"overall": {metric: value}, "per_kind": {kind: {...}}, "per_category": {...}, ...}``.
    """
    words = check_items(split, source, vocabulary)
    check_whole_number("limit", limit)
    started = time.perf_counter()
    if categories is None:
        items = list(itertools.islice(_source_items(split, seed, source, words), limit))
    else:
        chosen = set(check_categories(categories, ConfigError))
        wanted = (item for item in _source_items(split, seed, source, words) if item.category in chosen)
        items = list(itertools.islice(wanted, limit))
    scores: dict[str, list[tuple[SyntheticItem, bool]]] = defaultdict(list)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        images = [source_picture(item, source) for item in chunk]
        p = lvlm.processor
        direct = generate_with_hf(lvlm, [prompts.image_branch_text(p, i.question) for i in chunk], images, 8)
        from_rationale = generate_with_hf(
            lvlm, [prompts.rationale_branch_text(p, i.gold_rationale, i.question) for i in chunk], None, 8
        )
        cot = generate_with_hf(lvlm, [prompts.cot_text(p, i.gold_rationale, i.question) for i in chunk], images, 8)
        rationales = generate_with_hf(
            lvlm, [prompts.rationale_request_text(p, i.question) for i in chunk], images, max_rationale_tokens
        )
        for item, a, b, c, r in zip(chunk, direct, from_rationale, cot, rationales):
            scores["image_answer_acc"].append((item, answers_match(a, item.answer)))
            scores["rationale_answer_acc"].append((item, answers_match(b, item.answer)))
            scores["cot_answer_acc"].append((item, answers_match(c, item.answer)))
            scores["rationale_fact_acc"].append((item, grade_rationale(r, item.scene).all_true))
        for item, image in zip(chunk, images):
            support = claim_support(lvlm, image, [text for text, _ in item.claims])
            for (_, label), p_yes in zip(item.claims, support):
                scores["claim_verification_acc"].append((item, (p_yes > 0.5) == label))
        if on_progress is not None:
            on_progress(min(start + batch_size, len(items)), len(items))
    per_kind, per_kind_ci = _grouped(scores, lambda item: item.kind)
    per_category, per_category_ci = _grouped(scores, lambda item: item.category,
                                             metrics=("image_answer_acc", "rationale_answer_acc"))
    return {
        "model": getattr(lvlm, "name", "model"),
        "split": split,
        "source": source,
        "vocabulary": vocabulary,
        "categories": None if categories is None else list(categories),
        "items": len(items),
        "claims": len(scores["claim_verification_acc"]),
        "overall": {metric: _mean(scores[metric]) for metric in METRICS},
        "per_kind": per_kind,
        "per_category": per_category,
        "ci95": {"overall": {metric: _interval(scores[metric]) for metric in METRICS},
                 "per_kind": per_kind_ci, "per_category": per_category_ci},
        "seconds": round(time.perf_counter() - started, 1),
    }


def _source_items(split: str, seed: int, source: str, vocabulary: Vocabulary = STANDARD) -> Iterator[SyntheticItem]:
    """``split``'s items in the generator's order, those of the scene kinds ``source`` draws."""
    from redgraph.data.tools import TOOL_KINDS

    kinds = {"synthetic": None, "heldout": set(TOOL_KINDS.values())}.get(source, {TOOL_KINDS.get(source)})
    return (item for item in generate_items(split, 10**9, seed=seed, vocabulary=vocabulary)
            if kinds is None or item.kind in kinds)


def source_picture(item: SyntheticItem, source: str) -> Image.Image:
    """``item``'s picture as ``source`` (one of :data:`SOURCES`) draws it."""
    if source == "synthetic":
        return item.image()
    from redgraph.data.tools import picture_of

    return picture_of(item, look="heldout" if source == "heldout" else "default")


def _mean(pairs) -> float:
    return round(sum(ok for _, ok in pairs) / len(pairs), 4) if pairs else float("nan")


def _interval(pairs) -> list[float]:
    return wilson_interval(sum(ok for _, ok in pairs), len(pairs))


def _grouped(scores, key, metrics=METRICS) -> tuple[dict, dict]:
    """Per group: each metric's mean with the group's item count ``n``, and each metric's 95% interval."""
    means: dict[str, dict] = defaultdict(dict)
    intervals: dict[str, dict] = defaultdict(dict)
    for metric in metrics:
        by_group = defaultdict(list)
        for item, ok in scores[metric]:
            by_group[key(item)].append((item, ok))
        for group, pairs in by_group.items():
            means[group][metric] = _mean(pairs)
            means[group].setdefault("n", len(pairs))
            intervals[group][metric] = _interval(pairs)
    return dict(sorted(means.items())), dict(sorted(intervals.items()))
