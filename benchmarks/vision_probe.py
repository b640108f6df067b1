"""What the embedded model's vision tower passes to the language model: feature norm, how much the
features vary between pictures, and whether a linear probe can read simple facts from them.

    python benchmarks/vision_probe.py --json [--model runs/embedded]

- ``token_norm``: mean L2 norm of an image token (the merged vision output the text model reads).
- ``spread_across_images``: per-feature standard deviation across pictures, averaged, over
  ``token_norm``: near 0 means every picture gives nearly the same tokens (a collapsed tower).
- ``colour_probe_acc``: a linear probe (logistic regression on the standardised, flattened image
  tokens) predicting which of the 5 colours appear in a shapes scene; trained on two thirds of
  ``--scenes`` train-split scenes (800 of 1,200 by default), scored on the rest. ``majority_acc`` is the score of always guessing each colour's
  more common answer.
- ``title_probe_acc``, ``tens_probe_acc``, ``units_probe_acc``: whether the tokens of a document
  can be read: a linear probe (softmax regression on the same flattened tokens) predicting the
  title word (10) and the tens and units digit of the first field's value (10 each), trained and
  scored on ``--scenes`` documents split the same way. Chance is about 0.10 for each.

- ``column_probe_acc``, ``row_probe_acc``: whether each image token knows where it is: a softmax
  regression from one token (not the flattened picture) to its column and row in the grid of
  merged tokens (8 x 8 for the embedded model; chance 0.125), fitted on the tokens of the shapes
  scenes' probe-training share and scored on the rest. The language model's rotary positions give
  it little of that (``lm_rope_radians_rows``, ``lm_rope_radians_columns``: the largest angle by
  which its M-RoPE rotates any query-key pair between the first and the last row, or column, of
  the grid; near 0 means attention cannot tell image tokens apart by where they are), so what
  left of / above / bigger questions need must come through the tokens themselves.
- ``centre_probe_acc``, ``centre_size_probe_acc``: from a token that holds an object's centre,
  which (colour, shape, size) it is (50 classes), and only whether it is big or small (chance
  about 0.5); scored on the held-out share's centre tokens.

The same figures for an untrained tower of the same architecture (``untrained_*``) show what the
training added or removed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def image_tokens(lvlm_model, processor, scenes):
    import torch

    from redgraph.data.scenes import draw_scene

    out = []
    for start in range(0, len(scenes), 32):
        chunk = scenes[start : start + 32]
        encoded = processor.image_processor(images=[draw_scene(s) for s in chunk], return_tensors="pt")
        with torch.no_grad():
            output = lvlm_model.model.visual(encoded["pixel_values"], grid_thw=encoded["image_grid_thw"])
        merged = getattr(output, "pooler_output", None)
        merged = merged if merged is not None else output
        out.append(merged.reshape(len(chunk), -1, merged.shape[-1]))
    return torch.cat(out)


def _standardised(tokens, train: int):
    flat = tokens.reshape(len(tokens), -1).float()
    return (flat - flat[:train].mean(0)) / (flat[:train].std(0) + 1e-5)


def class_probe(tokens, classes, train: int) -> float:
    """Held-out accuracy of a softmax regression from the flattened tokens to ``classes`` (one int each)."""
    import torch

    flat = _standardised(tokens, train)
    count = int(classes.max()) + 1
    weight = torch.zeros(flat.shape[1], count, requires_grad=True)
    bias = torch.zeros(count, requires_grad=True)
    optimiser = torch.optim.Adam([weight, bias], lr=1e-3)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(flat[:train] @ weight + bias, classes[:train]) + 1e-3 * weight.pow(2).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return round(((flat[train:] @ weight + bias).argmax(1) == classes[train:]).float().mean().item(), 3)


def colour_scenes(count: int):
    """``count`` shapes scenes and, for each, which of the 5 colours it holds (the colour probe's labels)."""
    import torch

    from redgraph.data import generate_items
    from redgraph.data.scenes import COLOURS

    scenes = [item.scene for item in generate_items("train", 4 * count, seed=99) if item.kind == "shapes"][:count]
    return scenes, torch.tensor([[any(o.colour == c for o in s.objects) for c in COLOURS] for s in scenes]).float()


def document_scenes(count: int, split: str = "train"):
    from redgraph.data import generate_items

    return [item.scene for item in generate_items(split, 3 * count, seed=99) if item.kind == "document"][:count]


def reading_figures(tokens, scenes, train: int) -> dict:
    """The document probes: the title and the first field's two digits."""
    import torch

    from redgraph.data.scenes import TITLES

    targets = {"title": [TITLES.index(s.title) for s in scenes], "tens": [s.fields[0][1] // 10 for s in scenes],
               "units": [s.fields[0][1] % 10 for s in scenes]}
    return {f"{name}_probe_acc": class_probe(tokens, torch.tensor(values), train) for name, values in targets.items()}


def token_probe(features, classes, train: int, steps: int = 300) -> float:
    """Held-out accuracy of a softmax regression from single tokens (rows of ``features``) to ``classes``;
    the first ``train`` rows fit it."""
    import torch

    features = features.float()
    mean, std = features[:train].mean(0), features[:train].std(0) + 1e-5
    features = (features - mean) / std
    count = int(classes.max()) + 1
    weight = torch.zeros(features.shape[1], count, requires_grad=True)
    bias = torch.zeros(count, requires_grad=True)
    optimiser = torch.optim.Adam([weight, bias], lr=1e-2)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(features[:train] @ weight + bias, classes[:train])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return round(((features[train:] @ weight + bias).argmax(1) == classes[train:]).float().mean().item(), 3)


def where_figures(tokens, scenes, train: int) -> dict:
    """The per-token probes of the shapes scenes: grid position, and what object is centred there."""
    import torch

    from redgraph.data.scenes import COLOURS, IMAGE_SIDE, SHAPES

    images, count, width = tokens.shape
    side = int(round(count ** 0.5))
    flat = tokens.reshape(images * count, width)
    cells = torch.arange(images * count) % count
    result = {"column_probe_acc": token_probe(flat, cells % side, train * count),
              "row_probe_acc": token_probe(flat, cells // side, train * count)}
    rows, classes, sizes, split = [], [], [], 0
    cell = IMAGE_SIDE // side
    for index, scene in enumerate(scenes):
        if index == train:
            split = len(rows)
        for shape in scene.objects:
            token = min(side - 1, shape.y // cell) * side + min(side - 1, shape.x // cell)
            rows.append(index * count + token)
            classes.append((COLOURS.index(shape.colour) * len(SHAPES) + SHAPES.index(shape.shape)) * 2
                           + (shape.size == "big"))
            sizes.append(int(shape.size == "big"))
    centres = flat[torch.tensor(rows)]
    result["centre_probe_acc"] = token_probe(centres, torch.tensor(classes), split)
    result["centre_size_probe_acc"] = token_probe(centres, torch.tensor(sizes), split)
    result["centre_size_majority_acc"] = round(max(sum(sizes[split:]), len(sizes) - split - sum(sizes[split:]))
                                               / (len(sizes) - split), 3)
    return result


def rope_figures(config, side: int) -> dict:
    """The largest rotation the language model's M-RoPE applies between the grid's first and last
    row (and column), over the frequencies each axis gets."""
    import math

    text = config.text_config
    sections = text.rope_parameters["mrope_section"]
    dim = text.hidden_size // text.num_attention_heads
    theta = text.rope_parameters["rope_theta"]
    frequencies = [theta ** (-2 * i / dim) for i in range(dim // 2)]
    owner = [j % 3 for j, size in enumerate(sections) for _ in range(size)]  # Qwen2-VL: chunk j -> time, height, width
    rows = [f for f, axis in zip(frequencies, owner) if axis == 1]
    columns = [f for f, axis in zip(frequencies, owner) if axis == 2]
    return {"lm_rope_radians_rows": round(min(math.pi, max(rows) * (side - 1)), 4),
            "lm_rope_radians_columns": round(min(math.pi, max(columns) * (side - 1)), 4)}


def figures(tokens, labels, train: int) -> dict:
    import torch

    norm = tokens.norm(dim=-1).mean().item()
    spread = tokens.std(0).mean().item()
    flat = _standardised(tokens, train)
    weight = torch.zeros(flat.shape[1], labels.shape[1], requires_grad=True)
    bias = torch.zeros(labels.shape[1], requires_grad=True)
    optimiser = torch.optim.Adam([weight, bias], lr=1e-3)
    for _ in range(300):
        logits = flat[:train] @ weight + bias
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels[:train]) + 1e-3 * weight.pow(2).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        accuracy = (((flat[train:] @ weight + bias) > 0).float() == labels[train:]).float().mean().item()
    return {"token_norm": round(norm, 3), "spread_across_images": round(spread / norm, 4),
            "colour_probe_acc": round(accuracy, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--model", default=None, help="checkpoint folder; default: the embedded model")
    parser.add_argument("--scenes", type=int, default=1200, help="shapes scenes; two thirds train the probe")
    parser.add_argument("--shapes-only", action="store_true",
                        help="only the shapes scenes' figures of the trained model (no documents, no untrained tower)")
    args = parser.parse_args()

    import torch

    from redgraph.lab.architecture import build_untrained
    from redgraph.models.loading import load_lvlm

    torch.manual_seed(0)
    scenes, labels = colour_scenes(args.scenes)
    train = len(scenes) * 2 // 3
    majority = torch.maximum(labels[train:].mean(0), 1 - labels[train:].mean(0)).mean().item()
    lvlm = load_lvlm(args.model)
    result = {"model": args.model or "embedded", "scenes": len(scenes), "majority_acc": round(majority, 3)}
    tokens = image_tokens(lvlm.model, lvlm.processor, scenes)
    result.update(figures(tokens, labels, train))
    result.update(where_figures(tokens, scenes, train))
    result.update(rope_figures(lvlm.model.config, int(round(tokens.shape[1] ** 0.5))))
    if args.shapes_only:
        report(result, args.json)
        return
    documents = document_scenes(args.scenes)
    result.update(reading_figures(image_tokens(lvlm.model, lvlm.processor, documents), documents, train))
    untrained, processor = build_untrained()
    untrained.eval()
    untrained_tokens = image_tokens(untrained, processor, scenes)
    result.update({f"untrained_{k}": v for k, v in figures(untrained_tokens, labels, train).items()})
    result.update({f"untrained_{k}": v for k, v in where_figures(untrained_tokens, scenes, train).items()})
    result.update({f"untrained_{k}": v for k, v in
                   reading_figures(image_tokens(untrained, processor, documents), documents, train).items()})
    report(result, args.json)


def report(result: dict, as_json: bool) -> None:
    """Print ``result``: one JSON object, or a line per figure."""
    if as_json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>30}: {value}")


if __name__ == "__main__":
    main()
