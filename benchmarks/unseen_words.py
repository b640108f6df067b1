"""How often the model reads a word or number it never saw in training, exactly, from the image.

The embedded model was trained on ten document titles, six field names and field values 10-99
(``redgraph.data.scenes``). Its tokenizer is byte-level, so any word can be written; whether the
model writes what the picture says is what this measures. Documents are drawn with a title from
a list of 50 words outside the training titles and field values outside 10-99 (100-999, and
decimals, thousands separators and currency signs such as "12.50", "1,204", "$3.99"), by the
project's own renderer and in DejaVu fonts (``redgraph.data.tools``' default look), and the model
is asked "What is the title?" and "What is the <field>?". An answer counts when it is the drawn text
exactly (case aside). The same count on training-vocabulary documents of the same draw is the
control.

    python benchmarks/unseen_words.py [--model FOLDER] [--items 100] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Titles a receipt, invoice, form or report has, none of them a training title.
UNSEEN_TITLES = (
    "memo", "quote", "statement", "bill", "summary", "minutes", "schedule", "roster", "payslip", "voucher",
    "estimate", "manifest", "inventory", "checklist", "timesheet", "expenses", "delivery", "refund", "credit",
    "deposit", "contract", "lease", "permit", "license", "certificate", "diploma", "prescription", "referral",
    "waybill", "docket", "catalog", "brochure", "flyer", "poster", "bulletin", "newsletter", "journal", "ledger",
    "register", "survey", "census", "ballot", "petition", "proposal", "review", "audit", "forecast", "plan",
    "profile", "transcript",
)


def unseen_value(rng: random.Random) -> str:
    kind = rng.choice(("whole", "decimal", "thousands", "currency"))
    if kind == "whole":
        return str(rng.randint(100, 999))
    if kind == "decimal":
        return f"{rng.randint(1, 99)}.{rng.randint(0, 99):02d}"
    if kind == "thousands":
        return f"{rng.randint(1, 9)},{rng.randint(0, 999):03d}"
    return f"${rng.randint(1, 99)}.{rng.randint(0, 99):02d}"


def cases(count: int, unseen: bool, seed: int = 0):
    """(scene, question, answer, what) per document: its title and one field asked about."""
    from redgraph.data.scenes import FIELDS, TITLES, DocumentScene
    from redgraph.data.questions import field, title

    rng = random.Random(f"unseen-words:{seed}:{unseen}")
    for _ in range(count):
        names = rng.sample(FIELDS, rng.choice((2, 3)))
        values = [unseen_value(rng) if unseen else str(rng.randint(10, 99)) for _ in names]
        scene = DocumentScene(layout=rng.choice(("receipt", "slide")),
                              title=rng.choice(UNSEEN_TITLES if unseen else TITLES),
                              fields=tuple(zip(names, values)), dx=rng.randint(0, 12), dy=rng.randint(0, 10))
        asked = rng.randrange(len(names))
        yield scene, title(), scene.title, "title"
        yield scene, field(names[asked]), values[asked], "value"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the embedded model)")
    parser.add_argument("--items", type=int, default=100, help="documents per vocabulary and renderer")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from redgraph.data.scenes import draw_scene
    from redgraph.data.tools import draw_with
    from redgraph.models import prompts
    from redgraph.decoding.generate import generate_text
    from redgraph.models.loading import load_lvlm

    lvlm = load_lvlm(args.model)
    report = {"model": lvlm.name, "items": args.items, "read_exactly": {}, "examples": {}}
    for vocabulary in ("seen", "unseen"):
        rows = list(cases(args.items, vocabulary == "unseen"))
        for renderer in ("own", "fonts"):
            pictures = [draw_scene(scene) if renderer == "own" else
                        draw_with("fonts", scene, random.Random(f"unseen-words:{index}")) for index, (scene, *_) in
                        enumerate(rows)]
            answers = []
            for start in range(0, len(rows), 16):
                chunk = rows[start:start + 16]
                answers += generate_text(lvlm, [prompts.image_branch_text(lvlm.processor, q) for _, q, _, _ in chunk],
                                         pictures[start:start + 16], 10)
            for what in ("title", "value"):
                pairs = [(a.strip().lower(), r[2].lower()) for a, r in zip(answers, rows) if r[3] == what]
                name = f"{vocabulary}/{renderer}/{what}"
                report["read_exactly"][name] = round(sum(a == b for a, b in pairs) / len(pairs), 3)
                report["examples"][name] = pairs[:4]
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for name, share in report["read_exactly"].items():
        print(f"{name:22s} {share:.3f}  e.g. {report['examples'][name][:2]}")


if __name__ == "__main__":
    main()
