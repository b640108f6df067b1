"""A seeded, deterministic generator of visual-reasoning items, and its GQA-style export.

Each item is one rendered scene (shapes, a bar chart or a document), one question and its answer,
three rationales (gold: the facts needed; misleading: plausible facts implying another answer;
irrelevant: about another scene) and atomic claims labelled true or false by evaluating them on
the scene record.

Splits are fixed by the scene itself: a scene's digest puts it in ``test`` (10%), ``validation``
(5%) or ``train``, so no scene appears in two splits whatever the seed or the counts.

Example:
    >>> from redgraph.data import generate_items
    >>> item = next(generate_items("test", 1))
    >>> item.question, item.answer  # doctest: +SKIP
    ('How many red shapes are there?', '2')
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

from redgraph.data.claims import Claim
from redgraph.data.files import write_file
from redgraph.data.scenes import (
    KINDS,
    Scene,
    draw_scene,
    random_scene,
    scene_from_dict,
    scene_to_dict,
)
from redgraph.data.posing import CATEGORIES, check_category_weights, pose, random_claims
from redgraph.data.vocabulary import STANDARD, Vocabulary
from redgraph.errors import InputError, check_whole_number

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")


@dataclass(frozen=True)
class SyntheticItem:
    """One question about one rendered scene, with its rationales and labelled claims."""

    question_id: str
    split: Split
    kind: str
    category: str
    question: str
    answer: str
    gold_rationale: str
    misleading_rationale: str
    misleading_answer: str
    irrelevant_rationale: str
    claims: tuple[tuple[str, bool], ...]  # (sentence, true for this scene)
    scene: Scene

    def image(self) -> Image.Image:
        return draw_scene(self.scene)

    def to_record(self, image_path: str) -> dict:
        """A GQA-style JSONL record (``question_id``, ``image``, ``text``, ``answer``, ``category``) plus
        the synthetic extras."""
        return {
            "question_id": self.question_id,
            "image": image_path,
            "text": self.question,
            "answer": self.answer,
            "category": self.category,
            "kind": self.kind,
            "split": self.split,
            "gold_rationale": self.gold_rationale,
            "misleading_rationale": self.misleading_rationale,
            "misleading_answer": self.misleading_answer,
            "irrelevant_rationale": self.irrelevant_rationale,
            "claims": [{"text": text, "label": label} for text, label in self.claims],
            "scene": scene_to_dict(self.scene),
        }

    @classmethod
    def from_record(cls, record: dict) -> SyntheticItem:
        try:
            return cls(
                question_id=record["question_id"], split=record["split"], kind=record["kind"],
                category=record["category"], question=record["text"], answer=record["answer"],
                gold_rationale=record["gold_rationale"], misleading_rationale=record["misleading_rationale"],
                misleading_answer=record["misleading_answer"], irrelevant_rationale=record["irrelevant_rationale"],
                claims=tuple((c["text"], bool(c["label"])) for c in record["claims"]),
                scene=scene_from_dict(record["scene"]),
            )
        except (KeyError, TypeError) as exc:
            raise InputError(f"not a synthetic item record (missing {exc}): {record!r:.200}") from exc


def split_of(scene: Scene) -> Split:
    """The split a scene belongs to, from its digest: 10% test, 5% validation, 85% train."""
    digest = hashlib.sha256(json.dumps(scene_to_dict(scene), sort_keys=True).encode()).digest()
    bucket = int.from_bytes(digest[:4], "big") % 20
    return "test" if bucket < 2 else "validation" if bucket == 2 else "train"


def generate_items(split: Split, count: int, *, seed: int = 0, start: int = 0,
                   vocabulary: Vocabulary = STANDARD) -> Iterator[SyntheticItem]:
    """Items ``start .. start+count-1`` of ``split``; the same arguments always give the same items.

    Kinds rotate shapes, bars, document, so every three consecutive items cover all three. Their
    scenes are made of ``vocabulary``'s words and numbers (:mod:`redgraph.data.vocabulary`).
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    check_whole_number("count", count, minimum=0, error=InputError)
    for index in range(start, start + count):
        yield make_item(split, index, seed=seed, vocabulary=vocabulary)


def items_of_kind(split: Split, kind: str, count: int, *, seed: int = 0,
                  vocabulary: Vocabulary = STANDARD) -> Iterator[SyntheticItem]:
    """The first ``count`` items of ``split`` whose scene is of ``kind``, in :func:`generate_items`' order."""
    if kind not in KINDS:
        raise InputError(f"unknown scene kind {kind!r}; choose one of {', '.join(KINDS)}")
    check_whole_number("count", count, minimum=0, error=InputError)
    index = 0
    made = 0
    while made < count:
        # Kinds rotate shapes, bars, document: every third item is of this kind.
        item = make_item(split, index, seed=seed, vocabulary=vocabulary)
        index += 1
        if item.kind == kind:
            made += 1
            yield item


def make_item(split: Split, index: int, *, seed: int = 0, category_weights: Mapping[str, float] | None = None,
              scene: Scene | None = None, vocabulary: Vocabulary = STANDARD) -> SyntheticItem:
    """Item ``index`` of ``split``.

    Args:
        category_weights: how often each category (``ALL_CATEGORIES``; not named: 1) is asked about,
            relative to the others of its kind; a kind whose categories all weigh 0 is left out of the
            rotation. None (uniform) gives the items of :func:`generate_items`.
        scene: ask about this scene (of ``split``; a picture drawn before, say) instead of a new one.
        vocabulary: the words and numbers of a new scene and of the irrelevant rationale's scene. The
            standard one gives the items it always gave; another one's items are drawn apart from
            them, and their ids say its name (``test-0-wide-000001``).

    Raises:
        InputError: ``scene`` is of another split, or ``category_weights`` leave nothing to ask about it.
    """
    rng = random.Random(f"redgraph-synthetic:{vocabulary.seed_prefix}{seed}:{split}:{index}")
    kinds = KINDS
    if category_weights is not None:
        category_weights = check_category_weights(category_weights)
        kinds = tuple(k for k in KINDS if any(category_weights[c] > 0 for c in CATEGORIES[k]))
    if scene is not None:
        if split_of(scene) != split:
            raise InputError(f"the scene given is of the {split_of(scene)} split, not {split}: {scene_to_dict(scene)}")
        kind = scene.kind
        posed = pose(scene, rng, category_weights)
        if posed is None:
            raise InputError(f"the category weights leave no question to ask about the {kind} scene given")
    else:
        kind = kinds[index % len(kinds)]
    while scene is None:
        candidate = random_scene(kind, rng, vocabulary)
        if split_of(candidate) != split:
            continue
        posed = pose(candidate, rng, category_weights)
        if posed is not None:
            scene = candidate
    category, question, answer, gold, misleading, misleading_answer = posed
    other_kind = rng.choice([k for k in KINDS if k != kind])
    while (other := pose(random_scene(other_kind, rng, vocabulary), rng)) is None:
        pass
    claims = _labelled_claims(scene, gold + misleading + random_claims(scene, rng), rng)
    return SyntheticItem(
        question_id=f"{split}-{seed}-{vocabulary.seed_prefix.replace(':', '-')}{index:06d}",
        split=split,
        kind=kind,
        category=category,
        question=question,
        answer=answer,
        gold_rationale=_join(gold),
        misleading_rationale=_join(misleading),
        misleading_answer=misleading_answer,
        irrelevant_rationale=_join(other[3]),
        claims=claims,
        scene=scene,
    )


def _join(claims: list[Claim]) -> str:
    return " ".join(claim.text for claim in claims)


def _labelled_claims(scene: Scene, claims: list[Claim], rng: random.Random) -> tuple[tuple[str, bool], ...]:
    unique = list(dict.fromkeys(claims))
    rng.shuffle(unique)
    return tuple((claim.text, claim.holds(scene)) for claim in unique)


# --- export -------------------------------------------------------------------------------------

def export_dataset(folder: str | os.PathLike[str], counts: dict[str, int], *, seed: int = 0,
                   vocabulary: Vocabulary = STANDARD) -> dict[str, Path]:
    """Write ``{split}.jsonl`` files and ``images/*.png`` under ``folder``, GQA-style.

    Args:
        folder: created if missing; existing files of the same names are replaced.
        counts: items per split, e.g. ``{"train": 3000, "validation": 300, "test": 600}``.
        seed: the generator seed.
        vocabulary: the scenes' words and numbers (:mod:`redgraph.data.vocabulary`).

    Returns:
        The path of each split's JSONL file.
    """
    unknown = set(counts) - set(SPLITS)
    if unknown:
        raise InputError(f"unknown split(s) {sorted(unknown)}; choose among {', '.join(SPLITS)}")
    root = Path(folder)
    (root / "images").mkdir(parents=True, exist_ok=True)
    written = {}
    for split, count in counts.items():
        path = root / f"{split}.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            for item in generate_items(split, count, seed=seed, vocabulary=vocabulary):
                image_path = f"images/{item.question_id}.png"
                item.image().save(root / image_path)
                handle.write(json.dumps(item.to_record(image_path)) + "\n")
        written[split] = path
    meta = {"generator": "redgraph.data.synthetic", "seed": seed, "counts": counts, "image_side": 128}
    if vocabulary is not STANDARD:
        meta["vocabulary"] = vocabulary.name
    write_file(root / "dataset.json", json.dumps(meta, indent=2) + "\n", what="dataset description")
    return written


def read_items(path: str | os.PathLike[str]) -> list[SyntheticItem]:
    """Read items back from an exported ``{split}.jsonl``."""
    from redgraph.data.jsonl import read_jsonl

    return [SyntheticItem.from_record(record) for _, record in read_jsonl(path)]
