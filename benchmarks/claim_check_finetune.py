"""Can a checkpoint learn to check claims against its image? Fine-tune it on the critic's task alone
and watch the held-out claim-check accuracy.

    python benchmarks/claim_check_finetune.py --json --model CHECKPOINT [--steps 600]

Each step draws ``--images`` fresh train-split scenes and ``--claims-per-image`` claims about each
(half true, half false, :func:`redgraph.data.synthetic.random_claims`), rendered with the critic's
own prompt (:func:`redgraph.models.prompts.claim_check_text`); the target is ``yes`` or ``no``. The
vision tower runs once per scene and its tokens are shared by that scene's claims (gradients from
all of them reach it), so a step costs little more than its scenes.

Every ``--eval-every`` steps it reports the mean training loss since the last report (a model that
ignores the image scores ``ln 2 / 2 = 0.347``: the mean over the yes/no token and the end-of-turn
token) and ``claim_verification_acc`` on the labelled claims of ``--eval-items`` validation items,
scored as the critic scores them (:func:`redgraph.decoding.claim_scoring.claim_support`, P(yes) > 0.5).
The checkpoint on disk is not changed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@contextmanager
def shared_image_features(model, group: int):
    """Within the block, every ``group`` consecutive images of a batch are one image: the vision tower
    runs on the first of each group and its tokens are repeated for the rest."""
    inner = model.model
    original = inner.get_image_features

    def once_per_group(pixel_values, image_grid_thw=None, **kwargs):
        images = image_grid_thw.shape[0]
        patches = int(image_grid_thw[0].prod())
        firsts = pixel_values.view(images, patches, -1)[::group].reshape(-1, pixel_values.shape[-1])
        output = original(firsts, image_grid_thw[::group], **kwargs)
        tokens = torch.stack(output.pooler_output)  # (images / group, tokens, width)
        output.pooler_output = tuple(tokens.repeat_interleave(group, 0).unbind(0))
        return output

    inner.get_image_features = once_per_group
    try:
        yield
    finally:
        del inner.get_image_features  # back to the class's method


def claim_check_accuracy(lvlm, items) -> dict:
    from redgraph.decoding.claim_scoring import claim_support

    right: dict[str, list[bool]] = {}
    with torch.no_grad():
        for item in items:
            support = claim_support(lvlm, item.image(), [text for text, _ in item.claims])
            for (_, label), p_yes in zip(item.claims, support):
                right.setdefault(item.kind, []).append((p_yes > 0.5) == label)
    every = [r for values in right.values() for r in values]
    return {"claim_verification_acc": round(sum(every) / len(every), 3),
            "per_kind": {kind: round(sum(v) / len(v), 3) for kind, v in sorted(right.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--model", default=None, help="checkpoint folder; default: the embedded model")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--images", type=int, default=4, help="scenes per step")
    parser.add_argument("--claims-per-image", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate (constant)")
    parser.add_argument("--eval-every", type=int, default=150)
    parser.add_argument("--eval-items", type=int, default=45, help="validation items (about 6 claims each)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from redgraph.errors import check_whole_number

    for name in ("steps", "images", "claims_per_image", "eval_every", "eval_items", "threads"):
        check_whole_number(f"--{name.replace('_', '-')}", getattr(args, name))

    from redgraph.data.posing import random_claims
    from redgraph.data.synthetic import generate_items, make_item
    from redgraph.lab.batches import batch_tensors
    from redgraph.lab.tasks import Example
    from redgraph.lab.losses import example_loss
    from redgraph.models import prompts
    from redgraph.models.loading import load_lvlm

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lvlm = load_lvlm(args.model)
    model, processor = lvlm.model, lvlm.processor
    held_out = list(generate_items("validation", args.eval_items, seed=0))
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    rng = random.Random(0)
    model.eval()
    reports = [{"step": 0, "claims_seen": 0, "train_loss": None, **claim_check_accuracy(lvlm, held_out)}]
    losses: list[float] = []
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        model.train()
        examples = []
        for index in range(args.images):
            item = make_item("train", 50_000_000 + step * args.images + index, seed=0)  # far from the shipped run's items
            image = item.image()
            for claim in random_claims(item.scene, rng, count=args.claims_per_image):
                target = "yes" if claim.holds(item.scene) else "no"
                examples.append(Example("verify", prompts.claim_check_text(processor, claim.text), image, target))
        batch = batch_tensors(examples, processor)
        with shared_image_features(model, args.claims_per_image):
            loss = example_loss(model, batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        losses.append(loss.item())
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            since = losses[-(step - reports[-1]["step"]):]
            reports.append({"step": step, "claims_seen": step * args.images * args.claims_per_image,
                            "train_loss": round(sum(since) / len(since), 4), **claim_check_accuracy(lvlm, held_out)})
            if not args.json:
                print(json.dumps(reports[-1]), flush=True)
    result = {"model": args.model or "embedded", "chance_loss": round(math.log(2) / 2, 4),
              "seconds_per_step": round((time.perf_counter() - started) / args.steps, 3), "reports": reports}
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps({k: v for k, v in result.items() if k != "reports"}))


if __name__ == "__main__":
    main()
