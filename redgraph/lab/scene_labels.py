"""Scene labels for the auxiliary vision loss used in training the embedded model.

Each rendered scene gets a multi-hot vector over a fixed vocabulary of visual facts: its kind;
which (colour, shape) pairs it holds and in which third of the picture (left/middle/right,
top/middle/bottom); each bar's (colour, value); a document's title and each field's name and
digits. During training a linear head reads these from the mean of the image tokens, so the
vision tower gets a direct signal about what is in the picture instead of only the language
model's answer loss. The head is dropped after training: the shipped model is a plain Qwen2-VL.
"""

from __future__ import annotations

from redgraph.data.scenes import COLOURS, FIELDS, IMAGE_SIDE, KINDS, SHAPES, TITLES, BarScene, DocumentScene, Scene


def _vocabulary() -> dict[str, int]:
    names = [f"kind:{k}" for k in KINDS]
    names += [f"shape:{c}:{s}" for c in COLOURS for s in SHAPES]
    names += [f"shape:{c}:{s}:{axis}{third}" for c in COLOURS for s in SHAPES for axis in "xy" for third in range(3)]
    names += [f"bar:{c}:{v}" for c in COLOURS for v in range(1, 10)]
    names += [f"title:{t}" for t in TITLES]
    names += [f"field:{f}" for f in FIELDS]
    names += [f"field:{f}:{place}{d}" for f in FIELDS for place in ("tens", "units") for d in range(10)]
    return {name: index for index, name in enumerate(names)}


VOCABULARY = _vocabulary()


def scene_labels(scene: Scene) -> tuple[int, ...]:
    """The indices (into ``VOCABULARY``) of the facts that hold for ``scene``."""
    names = [f"kind:{scene.kind}"]
    if isinstance(scene, BarScene):
        names += [f"bar:{colour}:{value}" for colour, value in scene.bars]
    elif isinstance(scene, DocumentScene):
        names.append(f"title:{scene.title}")
        for field, value in scene.fields:
            names += [f"field:{field}", f"field:{field}:tens{value // 10}", f"field:{field}:units{value % 10}"]
    else:
        for shape in scene.objects:
            names.append(f"shape:{shape.colour}:{shape.shape}")
            for axis, position in (("x", shape.x), ("y", shape.y)):
                names.append(f"shape:{shape.colour}:{shape.shape}:{axis}{min(2, position * 3 // IMAGE_SIDE)}")
    return tuple(sorted({VOCABULARY[name] for name in names}))
