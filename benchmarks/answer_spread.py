"""Which answers a model gives from the image, per question category, next to the true answers'
spread: a category answered with one constant (the training prior) has not been learned, however
close its accuracy comes to the share of that answer.

    python benchmarks/answer_spread.py --json [--model FOLDER] [--limit 600] [--kind shapes] [--split test]

The first ``--limit`` held-out items of ``--split`` (of ``--kind`` only, when given), answered
greedily from image + question as ``redgraph embedded evaluate`` does for ``image_answer_acc``. For
each category: ``items``, ``right``, ``accuracy`` and its 95% interval ``ci95``, ``gold`` and ``answers`` (each
answer's count, most frequent first), and ``distinct_answers``: how many different answers the
model gave; ``overall``: the items, accuracy and interval of them all. Only the image branch runs,
so a large ``--limit`` (thousands) is quick: the way to tell apart two models that the default
600 items of ``redgraph embedded evaluate`` cannot.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def spread(lvlm, items, batch_size: int = 16) -> dict:
    from redgraph.eval.normalize import answers_match, normalize_answer
    from redgraph.eval.report import wilson_interval
    from redgraph.models import prompts
    from redgraph.decoding.generate import generate_text

    gold: dict[str, Counter] = defaultdict(Counter)
    given: dict[str, Counter] = defaultdict(Counter)
    right: dict[str, int] = Counter()
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        answers = generate_text(lvlm, [prompts.image_branch_text(lvlm.processor, i.question) for i in chunk],
                                [i.image() for i in chunk], 8)
        for item, answer in zip(chunk, answers):
            gold[item.category][item.answer] += 1
            given[item.category][normalize_answer(answer)] += 1
            right[item.category] += answers_match(answer, item.answer)
    return {category: {"items": sum(gold[category].values()), "right": right[category],
                       "accuracy": round(right[category] / sum(gold[category].values()), 3),
                       "ci95": wilson_interval(right[category], sum(gold[category].values())),
                       "gold": dict(gold[category].most_common()), "answers": dict(given[category].most_common()),
                       "distinct_answers": len(given[category])}
            for category in sorted(gold)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the embedded model)")
    parser.add_argument("--limit", type=int, default=600, help="held-out items of --split to draw")
    parser.add_argument("--kind", default=None, help="only this scene kind (shapes, bars, document)")
    parser.add_argument("--split", default="test", help="held-out split: test or validation")
    args = parser.parse_args()

    from redgraph.data import generate_items
    from redgraph.data.scenes import KINDS
    from redgraph.models.loading import load_lvlm

    if args.kind is not None and args.kind not in KINDS:
        parser.error(f"--kind {args.kind!r} is not a scene kind; choose one of {', '.join(KINDS)}")
    if args.split not in ("test", "validation"):
        parser.error(f"--split {args.split!r} is not a held-out split; choose test or validation")
    if args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    from redgraph.eval.report import wilson_interval

    items = [i for i in generate_items(args.split, args.limit) if args.kind in (None, i.kind)]
    per_category = spread(load_lvlm(args.model), items)
    right = sum(row["right"] for row in per_category.values())
    result = {"model": args.model or "embedded", "split": args.split, "items": len(items),
              "overall": {"items": len(items), "accuracy": round(right / len(items), 4),
                          "ci95": wilson_interval(right, len(items))},
              "per_category": per_category}
    if args.json:
        print(json.dumps(result))
        return
    for category, row in result["per_category"].items():
        print(f"{category:>14}  {row['items']:>3} items  acc {row['accuracy']:.3f} {row['ci95']}  gold {row['gold']}  "
              f"answers {row['answers']}")
    overall = result["overall"]
    print(f"{'all':>14}  {overall['items']:>3} items  acc {overall['accuracy']:.3f} {overall['ci95']}")


if __name__ == "__main__":
    main()
