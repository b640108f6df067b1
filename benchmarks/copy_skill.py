"""Does the rationale branch copy strings it never saw? The held-out exact-copy rate per kind of fact.

The copy task's held-out generator split (:mod:`redgraph.lab.copy_task`: words, field names, bar
labels, colours and value forms training never draws) gives facts-style rationales of documents and
bar charts, as the readers write them, and a question whose answer is a verbatim span of the
rationale (or the count of bars). The model answers from the rationale branch alone (rationale +
question, no image), greedily, as RED's rationale branch sees it; the answer counts only if it is
exactly the expected string (after stripping spaces). No lambda is involved.

``--red N`` also decodes the first N items through RED itself (``redgraph.decoding``) with a blank
white picture as the image branch at lambda 1 (the image branch then only adds its own preferences),
to show how much an uninformative image branch changes what the rationale branch writes.

    .venv/bin/python benchmarks/copy_skill.py --model runs/copy/steps/600 --items 50 --json
    .venv/bin/python benchmarks/copy_skill.py --items 20            # the shipped model
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redgraph.lab.copy_task import KINDS, copy_item  # noqa: E402
from redgraph.models import prompts  # noqa: E402

MAX_NEW_TOKENS = 24


def measure(lvlm, items_per_kind: int, split: str = "heldout", seed: int = 0, red_items: int = 0,
            batch: int = 16) -> dict:
    from redgraph.models.generation import generate_with_hf

    processor = lvlm.processor
    per_kind, examples = {}, {}
    total_right = total = 0
    for kind in KINDS:
        items = [copy_item(split, 10**6 * (KINDS.index(kind) + 1) + i, seed=seed, kind=kind)
                 for i in range(items_per_kind)]
        answers = []
        for start in range(0, len(items), batch):
            chunk = items[start:start + batch]
            answers += generate_with_hf(lvlm, [prompts.rationale_branch_text(processor, i.rationale, i.question)
                                               for i in chunk], None, MAX_NEW_TOKENS)
        right = [a.strip() == i.answer for a, i in zip(answers, items)]
        per_kind[kind] = round(sum(right) / len(items), 4)
        total_right, total = total_right + sum(right), total + len(items)
        examples[kind] = [{"question": i.question, "expected": i.answer, "answered": a}
                          for i, a, ok in zip(items, answers, right) if not ok][:2]
    copy_kinds = [k for k in KINDS if k not in ("count", "colour")]
    result = {"split": split, "items_per_kind": items_per_kind, "exact_copy": per_kind,
              "overall": round(total_right / total, 4),
              "copied_strings": round(sum(per_kind[k] for k in copy_kinds) / len(copy_kinds), 4),
              "misses": examples}
    if red_items:
        result["red_blank_image_lambda1"] = _red(lvlm, red_items, split, seed)
    return result


def _red(lvlm, count: int, split: str, seed: int) -> dict:
    from PIL import Image

    from redgraph.decoding.config import REDConfig
    from redgraph.decoding.decoder import REDDecoder

    decoder = REDDecoder(lvlm, REDConfig(rationale_weight=1.0, max_new_tokens=MAX_NEW_TOKENS, record_attribution=False))
    blank = Image.new("RGB", (128, 128), "white")
    right = 0
    for index in range(count):
        item = copy_item(split, 5 * 10**7 + index, seed=seed)
        text = decoder.decode(blank, item.question, [item.rationale]).text
        right += text.strip() == item.answer
    return {"items": count, "exact_copy": round(right / count, 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the shipped embedded model)")
    parser.add_argument("--items", type=int, default=50, help="items per kind")
    parser.add_argument("--split", default="heldout", choices=("heldout", "train"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--red", type=int, default=0, help="also decode this many items through RED, blank image, lambda 1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from redgraph.models.embedded import EMBEDDED_DIR
    from redgraph.models.loading import load_embedded

    lvlm = load_embedded(Path(args.model) if args.model else EMBEDDED_DIR)
    started = time.perf_counter()
    result = {"model": args.model or "embedded", **measure(lvlm, args.items, args.split, args.seed, args.red)}
    result["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(result))
    else:
        for kind, rate in result["exact_copy"].items():
            print(f"{kind:10s} {rate:.2f}")
        print(f"overall    {result['overall']:.2f}  (copied strings {result['copied_strings']:.2f})")
        if "red_blank_image_lambda1" in result:
            print(f"RED, blank image, lambda 1: {result['red_blank_image_lambda1']['exact_copy']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
