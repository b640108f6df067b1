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

A model trained on the wide vocabulary (``redgraph.data.vocabulary.WIDE``: 50 titles, 50 field
names, values in all four forms) is measured with ``--trained-on wide``: its seen documents are in
those words, and its unseen ones carry the same 50 titles (none of them in either vocabulary) and
values in forms neither writes ("12,345", "£4.20", "12.5%").

    python benchmarks/unseen_words.py [--model FOLDER] [--items 100] [--trained-on standard|wide] [--json]
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

def unseen_value(rng: random.Random, trained: str = "standard") -> str:
    """A field value in a form the ``trained`` vocabulary never writes."""
    if trained != "standard":
        from redgraph.data.vocabulary import unseen_value as beyond_every_vocabulary

        return beyond_every_vocabulary(rng)
    kind = rng.choice(("whole", "decimal", "thousands", "currency"))
    if kind == "whole":
        return str(rng.randint(100, 999))
    if kind == "decimal":
        return f"{rng.randint(1, 99)}.{rng.randint(0, 99):02d}"
    if kind == "thousands":
        return f"{rng.randint(1, 9)},{rng.randint(0, 999):03d}"
    return f"${rng.randint(1, 99)}.{rng.randint(0, 99):02d}"


def cases(count: int, unseen: bool, seed: int = 0, trained: str = "standard"):
    """(scene, question, answer, what) per document: its title and one field asked about, in the words
    of the ``trained`` vocabulary or (``unseen``) in words and numbers it never holds."""
    from redgraph.data.questions import field, title
    from redgraph.data.scenes import DocumentScene
    from redgraph.data.vocabulary import UNSEEN_TITLES, vocabulary_named

    vocabulary = vocabulary_named(trained)
    rng = random.Random(f"unseen-words:{seed}:{unseen}" + ("" if trained == "standard" else f":{trained}"))
    for _ in range(count):
        names = rng.sample(vocabulary.fields, rng.choice((2, 3)))
        values = [unseen_value(rng, trained) if unseen else str(vocabulary.field_value(rng)) for _ in names]
        scene = DocumentScene(layout=rng.choice(("receipt", "slide")),
                              title=rng.choice(UNSEEN_TITLES if unseen else vocabulary.titles),
                              fields=tuple(zip(names, values)), dx=rng.randint(0, 12), dy=rng.randint(0, 10))
        asked = rng.randrange(len(names))
        yield scene, title(), scene.title, "title"
        yield scene, field(names[asked]), values[asked], "value"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the embedded model)")
    parser.add_argument("--items", type=int, default=100, help="documents per vocabulary and renderer")
    parser.add_argument("--trained-on", choices=("standard", "wide"), default="standard",
                        help="the vocabulary the model was trained on (the shipped model: standard); the seen "
                             "documents are in its words, the unseen ones in words and value forms outside it")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from redgraph.data.scenes import draw_scene
    from redgraph.data.tools import draw_with
    from redgraph.models import prompts
    from redgraph.decoding.generate import generate_text
    from redgraph.models.loading import load_lvlm

    lvlm = load_lvlm(args.model)
    report = {"model": lvlm.name, "items": args.items, "trained_on": args.trained_on, "read_exactly": {}, "examples": {}}
    for vocabulary in ("seen", "unseen"):
        rows = list(cases(args.items, vocabulary == "unseen", trained=args.trained_on))
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
