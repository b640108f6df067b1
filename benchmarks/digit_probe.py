"""Can the embedded model's vision tower read a digit where it is written? A linear probe per image token.

    python benchmarks/digit_probe.py --json [--model runs/x] [--documents 300]

For documents of each source (the own renderer's; real fonts in the ``default`` look a user's first
document has; the held-out font family), each merged image token whose square holds the centre of
exactly one digit of the picture (where the drawing put it: ``redgraph.data.tools.Layout`` for the
fonts, the renderer's text runs for its own) is labelled with that digit. A softmax regression from
the single token to its digit (10 classes, chance about 0.1) is fitted on the tokens of two thirds of
the documents and scored on the rest's (``<source>_digit_probe_acc``, with ``<source>_tokens`` scored).

A tower that reads digits anywhere scores high on every source; one that knows its renderer's glyph
templates scores high on its own documents only. Answering "What is the tax?" needs more (finding the
line that starts with the name and the value after it), so a high probe with low answers points at
the language model's side, and a low probe at the tower's.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SOURCES = ("own", "fonts", "heldout")


def _tokens(model, processor, picture):
    import torch

    encoded = processor.image_processor(images=[picture], return_tensors="pt")
    with torch.no_grad():
        output = model.model.visual(encoded["pixel_values"], grid_thw=encoded["image_grid_thw"])
    merged = getattr(output, "pooler_output", None)
    return merged if merged is not None else output


def digit_tokens(model, processor, source: str, documents: int):
    """The tokens holding one digit's centre, their digits, and the document each came from."""
    import torch

    from redgraph.data import generate_items
    from redgraph.data.scenes import draw_scene
    from redgraph.data.tools import draw_laid_out
    from redgraph.lab.architecture import CELL
    from redgraph.lab.scene_labels import cell_labels, layout_cell_labels

    pixels = int(processor.image_processor.size["longest_edge"])  # the model's budget: side x side
    side = math.isqrt(pixels)
    scenes = [item.scene for item in generate_items("train", 3 * documents, seed=77) if item.kind == "document"]
    features, digits, owners = [], [], []
    for number, scene in enumerate(scenes[:documents]):
        if source == "own":
            picture, cells = draw_scene(scene), cell_labels(scene, CELL, image_side=side)
        else:
            look = "default" if source == "fonts" else "heldout"
            picture, layout = draw_laid_out("fonts", scene, random.Random(f"digit-probe:{number}"), look=look)
            cells = layout_cell_labels(layout, CELL, pixels=pixels)
        tokens = _tokens(model, processor, picture)
        if tokens.shape[0] != len(cells):
            raise SystemExit(f"{tokens.shape[0]} image tokens but {len(cells)} labelled cells: the model's processor "
                             f"does not resize pictures to a square budget of {side} x {side} pixels")
        for index, digit in digit_cells(cells):
            features.append(tokens[index])
            digits.append(digit)
            owners.append(number)
    return torch.stack(features), torch.tensor(digits), owners


def digit_cells(cells) -> list[tuple[int, int]]:
    """(token index, digit) of each token whose square holds exactly one digit's centre, of a
    picture's cell labels (:data:`~redgraph.lab.scene_labels.CELL_VOCABULARY`'s facts)."""
    from redgraph.lab.scene_labels import CELL_VOCABULARY

    names = {index: name for name, index in CELL_VOCABULARY.items()}
    found = []
    for index, facts in enumerate(cells):
        held = [c for c in {names[f].split(":")[1] for f in facts if names[f].startswith("char:")} if c.isdigit()]
        if len(held) == 1:
            found.append((index, int(held[0])))
    return found


def probe(model, processor, source: str, documents: int) -> dict:
    import torch

    from vision_probe import token_probe

    features, digits, owners = digit_tokens(model, processor, source, documents)
    cut = documents * 2 // 3
    order = sorted(range(len(owners)), key=lambda i: owners[i] >= cut)  # the fitting documents' tokens first
    train = sum(1 for owner in owners if owner < cut)
    index = torch.tensor(order)
    return {f"{source}_digit_probe_acc": token_probe(features[index], digits[index], train, steps=400),
            f"{source}_tokens": len(owners) - train}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--model", default=None, help="checkpoint folder; default: the embedded model")
    parser.add_argument("--documents", type=int, default=300, help="documents a source; two thirds fit the probe")
    parser.add_argument("--untrained", action="store_true", help="also an untrained tower of the same architecture")
    args = parser.parse_args()

    import torch
    from vision_probe import report

    from redgraph.lab.architecture import build_untrained
    from redgraph.models.loading import load_lvlm

    torch.manual_seed(0)
    lvlm = load_lvlm(args.model)
    result: dict = {"model": args.model or "embedded", "documents": args.documents}
    for source in SOURCES:
        result.update(probe(lvlm.model, lvlm.processor, source, args.documents))
    if args.untrained:
        untrained, processor = build_untrained()
        untrained.eval()
        for source in SOURCES:
            result.update({f"untrained_{k}": v for k, v in probe(untrained, processor, source, args.documents).items()})
    report(result, args.json)


if __name__ == "__main__":
    main()
