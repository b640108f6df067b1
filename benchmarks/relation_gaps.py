"""How the embedded model's left/right and above/below answers depend on how far apart the two
objects are, counted in the columns (or rows) of the grid of merged image tokens, and on how many
objects the picture holds.

    python benchmarks/relation_gaps.py --json [--model FOLDER] [--split test] [--limit 300] [--side 128]

The first ``--limit`` held-out items of each relation category (``relation_lr``, ``relation_ab``),
answered greedily from image + question as ``redgraph embedded evaluate`` does for
``image_answer_acc``. For each category: ``items``, ``accuracy``, and the same two split by
``grid_gap`` (how many token columns, for left/right, or rows, for above/below, lie between the
two objects' centres; questions are only asked when the centres are at least one token apart; "5"
means 5 or more) and by ``objects`` (2 to 5 in the picture). A model that reads where the objects
are loses accuracy only where they are close; one that guesses loses it everywhere.

``--side S`` shows the pictures at S x S pixels (scaled to the nearest pixel) with the processor
letting that many through, so the model reads (S / 16) x (S / 16) tokens instead of 8 x 8: whether
a model trained at 128 pixels reads a finer grid without training on it. The gaps are still
counted in the 8 x 8 grid, so the rows compare the same items at either side.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CATEGORIES = {"relation_lr": "x", "relation_ab": "y"}
WIDEST_GAP = 5  # gaps of 5 or more token columns (rows) are counted together


def named_pair(item):
    """The two shapes a relation question names, in the question's order."""
    named = sorted((o for o in item.scene.objects if o.name in item.question), key=lambda o: item.question.index(o.name))
    if len(named) != 2:
        raise ValueError(f"{item.question_id}: expected the question to name two shapes, found {len(named)}")
    return named


def grid_gap(item, axis: str, cell: int) -> int:
    first, second = named_pair(item)
    return min(abs(getattr(first, axis) // cell - getattr(second, axis) // cell), WIDEST_GAP)


def _share(rights: list[bool]) -> dict:
    return {"items": len(rights), "accuracy": round(sum(rights) / len(rights), 3)}


def show_at(lvlm, side: int) -> None:
    """Let ``lvlm``'s processor take pictures of ``side`` x ``side`` pixels as they are."""
    lvlm.processor.image_processor.size = {"shortest_edge": side * side, "longest_edge": side * side}


def gaps(lvlm, split: str, limit: int, batch_size: int = 16, side: int = 128) -> dict:
    from redgraph.data import generate_items
    from redgraph.eval.normalize import answers_match
    from redgraph.lab.architecture import CELL
    from redgraph.models import prompts
    from redgraph.decoding.generate import generate_text

    report = {}
    for category, axis in CATEGORIES.items():
        items = list(itertools.islice((i for i in generate_items(split, 10**9) if i.category == category), limit))
        by_gap: dict[int, list[bool]] = defaultdict(list)
        by_count: dict[int, list[bool]] = defaultdict(list)
        rights = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            answers = generate_text(lvlm, [prompts.image_branch_text(lvlm.processor, i.question) for i in chunk],
                                    [i.image().resize((side, side), Image.Resampling.NEAREST) for i in chunk], 8)
            for item, answer in zip(chunk, answers):
                right = answers_match(answer, item.answer)
                rights.append(right)
                by_gap[grid_gap(item, axis, CELL)].append(right)
                by_count[len(item.scene.objects)].append(right)
        report[category] = {**_share(rights),
                            "grid_gap": {str(g): _share(by_gap[g]) for g in sorted(by_gap)},
                            "objects": {str(n): _share(by_count[n]) for n in sorted(by_count)}}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the embedded model)")
    parser.add_argument("--split", default="test", help="held-out split: test or validation")
    parser.add_argument("--limit", type=int, default=300, help="items of each relation category")
    parser.add_argument("--side", type=int, default=128, help="picture side in pixels, a multiple of 16 "
                                                                  "(the model is trained on 128)")
    args = parser.parse_args()
    if args.split not in ("test", "validation"):
        parser.error(f"--split {args.split!r} is not a held-out split; choose test or validation")
    if args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    if args.side < 16 or args.side % 16:
        parser.error(f"--side must be a multiple of 16 (one merged image token), got {args.side}")

    from redgraph.models.loading import load_lvlm

    lvlm = load_lvlm(args.model)
    show_at(lvlm, args.side)
    result = {"model": args.model or "embedded", "split": args.split, "side": args.side,
              "per_category": gaps(lvlm, args.split, args.limit, side=args.side)}
    if args.json:
        print(json.dumps(result))
        return
    for category, row in result["per_category"].items():
        print(f"{category}: {row['items']} items, accuracy {row['accuracy']:.3f}")
        for key in ("grid_gap", "objects"):
            print(f"  by {key}: " + ", ".join(f"{k}: {v['accuracy']:.3f} ({v['items']})" for k, v in row[key].items()))


if __name__ == "__main__":
    main()
