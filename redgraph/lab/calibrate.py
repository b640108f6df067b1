"""Fitting a model's calibration (:class:`redgraph.models.calibration.Calibration`) on the synthetic
validation split, and measuring it (expected calibration error) on any split.

- temperatures: per probe family, the temperature that minimises the negative log-likelihood of
  the labelled claims' truth under the claim's support (its weakest probe's claimed share);
- ``unsure_below``: the smallest image-answer probability from which the image's answers to the
  validation items' own questions are right at least ``sure_precision`` of the time;
- the picture range: a bank of visual tokens from training pictures, and the novelty score above
  which only ``novel_share`` of validation pictures lie.

Example:
    >>> calibration = fit_calibration(lvlm, items=150)  # doctest: +SKIP
    >>> calibration.save(lvlm.path)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import random
from collections import defaultdict

import torch

from redgraph.agents.decompose import grammar_probes
from redgraph.data import generate_items
from redgraph.data.claims import parse_claim
from redgraph.decoding.probes import answer_key, score_probes
from redgraph.eval.normalize import answers_match
from redgraph.models.calibration import Calibration, visual_tokens

_TEMPERATURES = [math.exp(x / 10) for x in range(-20, 31)]  # 0.14 to 20


def labelled_probes(lvlm, items, pictures=None) -> list[dict]:
    """For each labelled claim the grammar can ask about: its label, scene kind, claim kind, and
    each probe's raw candidate shares and claimed answer (``pictures``: each item's picture, default
    its own drawing)."""
    rows = []
    for item, picture in zip(items, pictures or [None] * len(items)):
        claims = [(text, label, parse_claim(text)) for text, label in item.claims]
        asked = [(text, label, claim, grammar_probes(claim)) for text, label, claim in claims if claim is not None]
        asked = [row for row in asked if row[3]]
        flat = [probe for *_, probes in asked for probe in probes]
        results = iter(score_probes(lvlm, item.image() if picture is None else picture, flat))
        for text, label, claim, probes in asked:
            rows.append({"kind": item.kind, "family": claim.kind, "label": label,
                         "probes": [next(results) for _ in probes]})
    return rows


def claim_support(row: dict, temperatures: dict[str, float]) -> float:
    """A claim's support (its weakest probe's claimed share) under the given temperatures."""
    calibration = Calibration(temperatures)
    supports = []
    for result in row["probes"]:
        shares = calibration.temper(result.candidates, result.family)
        supports.append(next(v for k, v in shares.items() if answer_key(k) == answer_key(result.claimed)))
    return min(supports)


def _bins(pairs: list[tuple[float, bool]], bins: int) -> list[tuple[float, float, int, float, float]]:
    """Equal-width confidence bins that hold pairs: (low, high, count, mean confidence, share true)."""
    out = []
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [(p, y) for p, y in pairs if low <= p < high or (b == bins - 1 and p == 1.0)]
        if members:
            out.append((low, high, len(members), sum(p for p, _ in members) / len(members),
                        sum(y for _, y in members) / len(members)))
    return out


def expected_calibration_error(pairs: list[tuple[float, bool]], bins: int = 10) -> float:
    """ECE: the mean gap between confidence and truth over equal-width bins, weighted by their size."""
    if not pairs:
        return float("nan")
    return sum(count / len(pairs) * abs(confidence - true) for _, _, count, confidence, true in _bins(pairs, bins))


def reliability(pairs: list[tuple[float, bool]], bins: int = 10) -> list[dict]:
    """The reliability diagram's points: per bin, how many, mean confidence, share true."""
    return [{"bin": [low, high], "count": count, "confidence": round(confidence, 4), "true": round(true, 4)}
            for low, high, count, confidence, true in _bins(pairs, bins)]


def fit_temperatures(rows: list[dict]) -> dict[str, float]:
    """Per family, the temperature of least negative log-likelihood of the claims' labels."""
    by_family = defaultdict(list)
    for row in rows:
        by_family[row["family"]].append(row)
    fitted = {}
    for family, members in sorted(by_family.items()):
        def nll(temperature: float) -> float:
            total = 0.0
            for row in members:
                p = min(max(claim_support(row, {family: temperature}), 1e-6), 1 - 1e-6)
                total -= math.log(p if row["label"] else 1 - p)
            return total

        fitted[family] = round(min(_TEMPERATURES, key=nll), 4)
    return fitted


def fit_unsure_below(lvlm, items, *, sure_precision: float, pictures=None) -> float:
    """The smallest answer probability from which the image's answers are right ``sure_precision`` of the time
    (``pictures``: each item's picture, default its own drawing)."""
    from redgraph.decoding.probes import Probe

    scored = []
    for item, picture in zip(items, pictures or [None] * len(items)):
        [result] = score_probes(lvlm, item.image() if picture is None else picture, [Probe(item.question, item.answer)])
        scored.append((result.answer_probability, answers_match(result.image_answer, item.answer)))
    scored.sort()
    for index, (probability, _) in enumerate(scored):
        above = scored[index:]
        if sum(right for _, right in above) / len(above) >= sure_precision:
            return round(probability, 4)
    return 1.0


def _with_tools(items, tools: bool) -> tuple[list, list]:
    """The items and their pictures: each item's own drawing and, with ``tools``, also each bar chart and
    document as another tool draws it in the training look (:mod:`redgraph.data.tools`)."""
    items = list(items)
    pictures = [item.image() for item in items]
    if tools:
        from redgraph.data.tools import KIND_TOOLS, picture_of

        drawn = [item for item in items if item.kind in KIND_TOOLS]
        items += drawn
        pictures += [picture_of(item, look="train") for item in drawn]
    return items, pictures


def fit_calibration(lvlm, *, items: int = 300, bank_pictures: int = 600, bank_size: int = 8192,
                    sure_precision: float = 0.99, novel_share: float = 0.01, seed: int = 0,
                    tools: bool = False) -> Calibration:
    """Fit every part of a model's calibration (see the module docstring) on the synthetic splits; with
    ``tools`` (a model trained on other tools' pictures too: ``embedded train --tool-share``), on the bar
    charts and documents as matplotlib and real fonts draw them as well, so that its range holds them."""
    validation, pictures = _with_tools(generate_items("validation", items, seed=seed), tools)
    temperatures = fit_temperatures(labelled_probes(lvlm, validation, pictures))
    unsure_below = fit_unsure_below(lvlm, validation, sure_precision=sure_precision, pictures=pictures)
    _, bank_drawn = _with_tools(generate_items("train", bank_pictures, seed=seed), tools)
    tokens = torch.cat([visual_tokens(lvlm, picture) for picture in bank_drawn])
    keep = random.Random(seed).sample(range(tokens.shape[0]), min(bank_size, tokens.shape[0]))
    bank = tokens[sorted(keep)].to(torch.float16).float()  # as saved
    draft = Calibration(temperatures, unsure_below, None, bank=bank)
    scores = sorted(draft.novelty(lvlm, picture) for picture in pictures)
    novelty_above = round(scores[min(len(scores) - 1, math.ceil((1 - novel_share) * len(scores)) - 1)], 5)
    return Calibration(temperatures, unsure_below, novelty_above, bank=bank, fitted={
        "validation_items": items, "bank_pictures": bank_pictures, "bank_tokens": int(bank.shape[0]),
        "sure_precision": sure_precision, "novel_share": novel_share, "seed": seed, "tools": tools,
    })
