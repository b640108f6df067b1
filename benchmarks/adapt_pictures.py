"""SDRT on unlabelled pictures of a family the model reads poorly, through `redgraph distill adapt`'s
defaults: what the label-free report says, and what a labelled check set says of the same adapter.

The family: bar charts drawn by matplotlib in its default style (``redgraph.data.tools``' default
look, the pictures `redgraph embedded evaluate --source matplotlib` measures). The script draws
``--pictures`` of them into a folder with a questions file that names each chart's bars by colour
(``What is the value of the red bar?``: it names what the chart shows, never an answer), and a
labelled check set of ``--check`` other charts of the same look (GQA-style JSONL: the same
questions with their answers). Then it runs :func:`redgraph.distill.adapt.adapt` with its
defaults (``--kind bars`` adds the tallest and the shortest bar), except where an option here
says otherwise, and prints the report.

    python benchmarks/adapt_pictures.py --json [--pictures 150] [--check 100] [--per-style 4] [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def draw(folder: Path, count: int, seed: int, *, labelled: bool) -> None:
    """``count`` matplotlib charts in ``folder``: unlabelled, with a questions file naming their bars;
    labelled, as a GQA-style check set."""
    from redgraph.data.questions import bar_extreme, bar_value
    from redgraph.data.scenes import random_scene
    from redgraph.data.tools import draw_with

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"adapt-pictures:{seed}:{labelled}")
    lines = []
    for number in range(count):
        scene = random_scene("bars", rng)
        name = f"chart{number:04d}.png"
        draw_with("matplotlib", scene, rng, look="default").save(folder / name)
        values = dict(scene.bars)
        asked = [(bar_value(colour), str(value)) for colour, value in scene.bars]
        asked += [(bar_extreme("tallest"), max(values, key=values.get)),
                  (bar_extreme("shortest"), min(values, key=values.get))]
        for index, (question, answer) in enumerate(asked):
            if labelled:
                category = "bar_value" if "value" in question else question.split()[-1].rstrip("?")
                lines.append({"question_id": f"{name}:{index}", "image": name, "text": question, "answer": answer,
                              "category": category})
            elif "value" in question:  # the kind's own questions (tallest, shortest) come from --kind bars
                lines.append({"question": question, "image": name})
    target = folder / ("check.jsonl" if labelled else "questions.jsonl")
    target.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pictures", type=int, default=150, help="unlabelled charts (a --holdout share measured on)")
    parser.add_argument("--check", type=int, default=100, help="labelled charts of the check set")
    parser.add_argument("--per-style", type=int, default=4, help="traces per question (the command's default: 4)")
    parser.add_argument("--steps", type=int, default=300, help="adapter steps (the command's default: 300)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="the command's default: 64")
    parser.add_argument("--model", default=None, help="checkpoint folder; default: the embedded model")
    parser.add_argument("--out", default=None, help="folder for the run (default: a temporary one)")
    args = parser.parse_args()

    from redgraph.distill.adapt import AdaptConfig, adapt
    from redgraph.distill.student import DistillConfig

    root = Path(args.out or tempfile.mkdtemp())
    pictures, check = root / "pictures", root / "check"
    if not (pictures / "questions.jsonl").is_file():
        draw(pictures, args.pictures, 0, labelled=False)
        draw(check, args.check, 1, labelled=True)
    config = AdaptConfig(pictures=str(pictures), questions=str(pictures / "questions.jsonl"), kind="bars",
                         per_style=args.per_style, max_new_tokens=args.max_new_tokens, model=args.model,
                         check=str(check / "check.jsonl"), check_limit=5 * args.check,
                         distill=DistillConfig(steps=args.steps))
    report = adapt(config, root / "run")
    if args.json:
        print(json.dumps(report))
        return
    print(json.dumps({k: report[k] for k in ("pictures", "weighting", "heldout", "check")}, indent=2))


if __name__ == "__main__":
    main()
