"""Does the vision tower read a document's digits at a larger image side? A learning curve, the tower alone.

    python benchmarks/reading_curve.py --json --image-side 128 --steps 600 --probe-every 200
    python benchmarks/reading_curve.py --json --image-side 256 --steps 600 --probe-every 200
    python benchmarks/reading_curve.py --json --image-side 192 --init embedded   # from the shipped tower

Issue 36's field values wait on the tower: a token that does not know the digit in its square cannot
be read by the language model behind it (BENCHMARKS.md, "Cell labels on other tools' pictures"). At
the embedded model's 128 x 128 pixels a body-text digit of a real-font document is 5-8 pixels tall,
under one 8-pixel patch. This trains the vision tower alone (no language model) and a per-token cell
head on real-font documents only, drawn in the ``train`` look with their layouts
(``redgraph.data.tools.draw_laid_out``), each token labelled with the characters whose centres lie in
its square (``layout_cell_labels`` on the token grid the processor makes at ``--image-side``), as
``redgraph embedded train --tool-cells`` does; every step draws ``--batch-size`` fresh train-split
documents. Every ``--probe-every`` steps it measures, on test-split documents in the ``default`` look
(a user's first document; never drawn in training) and in the held-out font (DejaVu Sans Mono):

- ``head``: of the tokens whose square holds exactly one digit's centre, the share where the cell
  head's most likely digit is that digit (what the training itself taught);
- ``probe``: :mod:`digit_probe`'s figure, a linear probe fitted on two thirds of the documents'
  tokens and scored on the rest's (the shipped tower: 0.34 on the default fonts at 128).

Float32 (bf16 is far slower on an AVX2-only CPU), AdamW after a 50-step warm-up, cosine to 0. The
figures are a diagnostic for choosing the image side of the widened model, not a model's answers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

LOOKS = {"fonts": "default", "heldout": "heldout"}


def merged_tokens(visual, processor, pictures):
    """Each picture's merged vision tokens (a list: pictures of other shapes have other counts)."""
    encoded = processor.image_processor(images=pictures, return_tensors="pt")
    output = visual(encoded["pixel_values"], grid_thw=encoded["image_grid_thw"])
    merged = getattr(output, "pooler_output", None)
    merged = merged if merged is not None else output
    counts = [int(t * h * w) // 4 for t, h, w in encoded["image_grid_thw"].tolist()]
    return list(merged.split(counts))


def drawn(scene, rng, look: str, pixels: int):
    """A document drawn with real fonts in ``look``, and its cell labels on the ``pixels`` token grid."""
    from redgraph.data.tools import draw_laid_out
    from redgraph.lab.architecture import CELL
    from redgraph.lab.scene_labels import layout_cell_labels

    picture, layout = draw_laid_out("fonts", scene, rng, look=look)
    return picture, layout_cell_labels(layout, CELL, pixels=pixels)


def measure(visual, heads, processor, sets, pixels: int) -> dict:
    """``head`` and ``probe`` digit figures on each test set of (scene, look) documents."""
    import torch

    from digit_probe import digit_cells
    from redgraph.lab.scene_labels import CELL_VOCABULARY
    from vision_probe import token_probe

    # a digit's score: the larger of its two facts (its centre in the square's left or right half)
    digit_index = torch.tensor([[CELL_VOCABULARY[f"char:{d}:{half}"] for half in (0, 1)] for d in range(10)])
    result, fitted = {}, {}
    visual.eval()
    with torch.no_grad():
        for source, documents in sets.items():
            features, digits, owners, right = [], [], [], 0
            for number, (scene, look) in enumerate(documents):
                picture, cells = drawn(scene, random.Random(f"reading-curve:test:{source}:{number}"), look, pixels)
                tokens = merged_tokens(visual, processor, [picture])[0]
                if tokens.shape[0] != len(cells):
                    raise SystemExit(f"{tokens.shape[0]} image tokens but {len(cells)} labelled cells")
                found = digit_cells(cells)
                if found:
                    at = torch.tensor([i for i, _ in found])
                    truth = torch.tensor([d for _, d in found])
                    right += int((heads.cell(tokens[at])[:, digit_index].amax(-1).argmax(1) == truth).sum())
                    features.append(tokens[at])
                    digits.append(truth)
                    owners += [number] * len(found)
            features, digits = torch.cat(features), torch.cat(digits)
            cut = len(documents) * 2 // 3
            train = sum(1 for owner in owners if owner < cut)  # the tokens come in document order
            result[f"{source}_head"] = round(right / len(owners), 3)
            fitted[source] = (features, digits, train)
            result[f"{source}_tokens"] = len(owners)
    for source, (features, digits, train) in fitted.items():  # the probe's fit needs gradients
        result[f"{source}_probe"] = token_probe(features, digits, train, steps=400)
    visual.train()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--image-side", type=int, default=128, help="pictures resized to about this squared (multiple of 16)")
    parser.add_argument("--init", choices=("scratch", "embedded"), default="scratch",
                        help="a random tower of the embedded architecture, or the shipped model's")
    parser.add_argument("--vision-hidden", type=int, default=None, help="tower width (scratch only; default 192)")
    parser.add_argument("--vision-layers", type=int, default=None, help="tower depth (scratch only; default 3)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--probe-every", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--documents", type=int, default=150, help="test documents a source, at each probe")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.image_side % 16 or not 64 <= args.image_side <= 512:
        parser.error(f"--image-side must be a multiple of 16 from 64 to 512, got {args.image_side}")
    if args.steps < 1 or args.probe_every < 1:
        parser.error(f"--steps and --probe-every must be at least 1, got {args.steps} and {args.probe_every}")
    if args.init == "embedded" and (args.vision_hidden or args.vision_layers):
        parser.error("--vision-hidden and --vision-layers size a tower from scratch; leave them out with --init embedded")

    import dataclasses

    import torch

    from redgraph.data.synthetic import items_of_kind
    from redgraph.lab.architecture import Dimensions, build_untrained
    from redgraph.lab.batches import vision_targets
    from redgraph.lab.losses import VisionHeads
    from redgraph.lab.train import warmup_cosine
    from tower_heads import optimise

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pixels = args.image_side * args.image_side
    changes = {k: v for k, v in (("vision_hidden", args.vision_hidden), ("vision_layers", args.vision_layers)) if v}
    model, processor = build_untrained(dataclasses.replace(Dimensions(), **changes), image_side=args.image_side)
    if args.init == "embedded":
        from redgraph.models.loading import load_lvlm

        model = load_lvlm(None).model  # the shipped weights; the processor above sets the side
    visual = model.model.visual.float()
    visual.train()
    heads = VisionHeads(model.config.text_config.hidden_size, 0.0, 1.0,
                        cell_init="zero" if args.init == "embedded" else "random")
    parameters = list(visual.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=args.learning_rate, betas=(0.9, 0.98), weight_decay=0.01)
    scheduler = warmup_cosine(optimizer, min(50, args.steps), args.steps)
    tests = list(items_of_kind("test", "document", args.documents, seed=77))
    sets = {source: [(item.scene, look) for item in tests] for source, look in LOOKS.items()}
    training = iter(items_of_kind("train", "document", args.steps * args.batch_size, seed=0))
    curve = [{"step": 0, "documents": 0, **measure(visual, heads, processor, sets, pixels)}]
    losses, trained, drawing = [], 0.0, 0.0
    for step in range(1, args.steps + 1):
        started = time.perf_counter()
        pictures, cells = [], []
        for offset in range(args.batch_size):
            index = (step - 1) * args.batch_size + offset
            picture, labels = drawn(next(training).scene, random.Random(f"reading-curve:train:{index}"), "train", pixels)
            pictures.append(picture)
            cells.append(labels)
        drew = time.perf_counter()
        targets = vision_targets([()] * len(cells), cells)
        loss = heads.loss(merged_tokens(visual, processor, pictures), targets)
        losses.append(optimise(loss, optimizer, scheduler, parameters))
        drawing += drew - started
        trained += time.perf_counter() - drew
        if step % args.probe_every == 0 or step == args.steps:
            point = {"step": step, "documents": step * args.batch_size,
                     "loss": round(sum(losses[-args.probe_every:]) / len(losses[-args.probe_every:]), 4)}
            curve.append({**point, **measure(visual, heads, processor, sets, pixels)})
            if not args.json:
                print(json.dumps(curve[-1]), flush=True)
    tokens = merged_tokens(visual.eval(), processor, [drawn(tests[0].scene, random.Random(0), "default", pixels)[0]])[0]
    result = {"image_side": args.image_side, "init": args.init, "vision_hidden": visual.config.embed_dim,
              "vision_layers": visual.config.depth, "tower_parameters": sum(p.numel() for p in visual.parameters()),
              "tokens_per_document": tokens.shape[0], "steps": args.steps, "batch_size": args.batch_size,
              "learning_rate": args.learning_rate, "seconds_training": round(trained, 1),
              "seconds_drawing": round(drawing, 1), "curve": curve}
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
