"""Which auxiliary signal teaches the embedded model's vision tower to read: the tower alone, trained
from scratch on the training heads of ``redgraph embedded train`` (no language model), then probed.

    python benchmarks/tower_heads.py --json --steps 1000 --aux-weight 10 --cell-weight 0
    python benchmarks/tower_heads.py --json --steps 1000 --aux-weight 0 --cell-weight 1

Each step draws ``--batch-size`` fresh train-split scenes (the three kinds in turn, as training
does) and runs the tower and :class:`redgraph.lab.losses.VisionHeads` on them under bf16 autocast,
AdamW at ``--learning-rate`` after a 100-step warm-up. At the end it prints the losses along the
way and :mod:`vision_probe`'s figures for the trained tower: ``colour_probe_acc`` (shapes) and the
document probes ``title_probe_acc``, ``tens_probe_acc``, ``units_probe_acc`` (chance about 0.10).
A run of 1,000 steps of 32 takes about 6 minutes on 2 CPU cores; the whole model trains about
5x slower, so this measures the tower's side of a recipe in a fifth of the time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def optimise(loss, optimizer, scheduler, parameters) -> float:
    """One optimiser and schedule step on ``loss``, gradients clipped to norm 1; the loss's value."""
    import torch

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()
    scheduler.step()
    return loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--aux-weight", type=float, default=10.0, help="the mean-token scene-fact head's weight")
    parser.add_argument("--cell-weight", type=float, default=0.0, help="the per-token cell-fact head's weight")
    parser.add_argument("--scenes", type=int, default=1200, help="scenes per probe; two thirds train it")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.aux_weight <= 0 and args.cell_weight <= 0:
        parser.error("give --aux-weight or --cell-weight a weight above 0: with neither there is nothing to train")
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")

    import torch

    from redgraph.data.scenes import draw_scene
    from redgraph.data.synthetic import make_item
    from redgraph.lab.architecture import CELL, build_untrained
    from redgraph.lab.batches import vision_targets
    from redgraph.lab.scene_labels import cell_labels, scene_labels
    from redgraph.lab.losses import VisionHeads
    from redgraph.lab.train import warmup_cosine
    from vision_probe import colour_scenes, document_scenes, figures, image_tokens, reading_figures

    torch.set_num_threads(args.threads)
    model, processor = build_untrained(seed=0)
    model.set_attn_implementation("eager")
    visual = model.model.visual
    visual.train()
    heads = VisionHeads(model.config.text_config.hidden_size, args.aux_weight, args.cell_weight)
    parameters = list(visual.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=args.learning_rate, betas=(0.9, 0.98), weight_decay=0.01)
    scheduler = warmup_cosine(optimizer, min(100, args.steps), args.steps)
    losses, started = [], time.perf_counter()
    for step in range(args.steps):
        scenes = [make_item("train", step * args.batch_size + i, seed=0).scene for i in range(args.batch_size)]
        encoded = processor.image_processor(images=[draw_scene(s) for s in scenes], return_tensors="pt")
        targets = vision_targets([scene_labels(s) for s in scenes], [cell_labels(s, CELL) for s in scenes])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = visual(encoded["pixel_values"], grid_thw=encoded["image_grid_thw"])
            merged = getattr(output, "pooler_output", None)
            merged = merged if merged is not None else output
            loss = heads.loss(merged.reshape(len(scenes), -1, merged.shape[-1]), targets)
        losses.append(optimise(loss, optimizer, scheduler, parameters))
    seconds = time.perf_counter() - started
    visual.eval()
    shapes, labels = colour_scenes(args.scenes)
    documents = document_scenes(args.scenes)
    train = args.scenes * 2 // 3
    every = max(1, args.steps // 10)
    result = {"steps": args.steps, "batch_size": args.batch_size, "aux_weight": args.aux_weight,
              "cell_weight": args.cell_weight, "seconds": round(seconds, 1),
              "loss_every_tenth": [round(sum(losses[i:i + every]) / len(losses[i:i + every]), 4)
                                   for i in range(0, args.steps, every)]}
    result.update(figures(image_tokens(model, processor, shapes), labels, train))
    result.update(reading_figures(image_tokens(model, processor, documents), documents, train))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
