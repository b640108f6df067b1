"""Scene labels for the auxiliary vision loss used in training the embedded model.

Each rendered scene gets a multi-hot vector over a fixed vocabulary of visual facts: its kind;
which (colour, shape) pairs it holds and in which third of the picture (left/middle/right,
top/middle/bottom); each bar's (colour, value); a document's title and each field's name and
digits. During training a linear head reads these from the mean of the image tokens, so the
vision tower gets a direct signal about what is in the picture instead of only the language
model's answer loss. The head is dropped after training: the shipped model is a plain Qwen2-VL.
"""

from __future__ import annotations

import functools

from redgraph.data.scenes import (
    IMAGE_SIDE,
    KINDS,
    SHAPES,
    BarScene,
    DocumentScene,
    Scene,
    Shape,
    ShapeScene,
    bar_boxes,
    document_text,
)
from redgraph.data.vocabulary import STANDARD, Vocabulary


@functools.cache
def scene_fact_names(vocabulary: Vocabulary = STANDARD) -> dict[str, int]:
    """The facts the scene head reads, by name, in ``vocabulary``'s words (the standard ones:
    ``VOCABULARY``). A field's value is labelled by its last two digits."""
    colours, titles, fields = vocabulary.colours, vocabulary.titles, vocabulary.fields
    names = [f"kind:{k}" for k in KINDS]
    names += [f"shape:{c}:{s}" for c in colours for s in SHAPES]
    names += [f"shape:{c}:{s}:{axis}{third}" for c in colours for s in SHAPES for axis in "xy" for third in range(3)]
    names += [f"bar:{c}:{v}" for c in colours for v in vocabulary.bar_values]
    names += [f"title:{t}" for t in titles]
    names += [f"field:{f}" for f in fields]
    names += [f"field:{f}:{place}{d}" for f in fields for place in ("tens", "units") for d in range(10)]
    return {name: index for index, name in enumerate(names)}


VOCABULARY = scene_fact_names(STANDARD)


def _last_digits(value: int | str) -> list[str]:
    """A field's value's labels of its last two digits (one for a one-digit value)."""
    digits = [char for char in str(value) if char.isdigit()]
    return [f"{place}{digit}" for place, digit in zip(("tens", "units")[-len(digits[-2:]):], digits[-2:])]


def scene_labels(scene: Scene, vocabulary: Vocabulary = STANDARD) -> tuple[int, ...]:
    """The indices (into :func:`scene_fact_names` of ``vocabulary``) of the facts that hold for ``scene``."""
    index = scene_fact_names(vocabulary)
    names = [f"kind:{scene.kind}"]
    if isinstance(scene, BarScene):
        names += [f"bar:{colour}:{value}" for colour, value in scene.bars]
    elif isinstance(scene, DocumentScene):
        names.append(f"title:{scene.title}")
        for field, value in scene.fields:
            names += [f"field:{field}"] + [f"field:{field}:{digit}" for digit in _last_digits(value)]
    else:
        for shape in scene.objects:
            names.append(f"shape:{shape.colour}:{shape.shape}")
            for axis, position in (("x", shape.x), ("y", shape.y)):
                names.append(f"shape:{shape.colour}:{shape.shape}:{axis}{min(2, position * 3 // IMAGE_SIDE)}")
    return tuple(sorted({index[name] for name in names}))


# Facts of one cell of the picture (the square one merged image token covers): which colours cover
# it, which object has its centre there, which bar ends there, and which characters, title word and
# field line are written there (a character's left or right half of the cell by its centre). A
# head reads them from each image token separately, so the tower learns where things are and to
# read text locally; the mean-token labels above cannot say which digits belong to which field.
_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
_WRITTEN = "$,."  # what the wide vocabulary's values write besides digits


def _characters(vocabulary: Vocabulary) -> str:
    return _CHARACTERS if vocabulary.forms == ("whole",) else _CHARACTERS + _WRITTEN


@functools.cache
def cell_fact_names(vocabulary: Vocabulary = STANDARD) -> dict[str, int]:
    """The facts the cell head reads, by name, in ``vocabulary``'s words (the standard ones:
    ``CELL_VOCABULARY``); a vocabulary whose values are written with ``$ , .`` has those characters too."""
    colours = vocabulary.colours
    names = [f"colour:{c}" for c in colours]
    names += [f"centre:{c}:{s}:{size}" for c in colours for s in SHAPES for size in ("big", "small")]
    names += [f"bar_top:{v}" for v in vocabulary.bar_values]
    names += [f"char:{ch}:{half}" for ch in _characters(vocabulary) for half in (0, 1)]
    names += [f"title:{t}" for t in vocabulary.titles]
    names += [f"line:{f}" for f in vocabulary.fields]
    return {name: index for index, name in enumerate(names)}


CELL_VOCABULARY = cell_fact_names(STANDARD)


class _Cells:
    """The facts of each ``cell`` x ``cell`` square of a ``rows`` x ``columns`` grid, row by row."""

    def __init__(self, rows: int, columns: int, cell: float, vocabulary: Vocabulary = STANDARD) -> None:
        self.rows, self.columns, self.cell = rows, columns, cell
        self.names, self.characters = cell_fact_names(vocabulary), _characters(vocabulary)
        self.facts: list[set[str]] = [set() for _ in range(rows * columns)]
        # a cell is covered by a region when one of its 4 x 4 sample points lies inside it
        self.samples = [cell * (2 * k + 1) / 8 for k in range(4)]

    def at(self, x: float, y: float) -> set[str]:
        column = min(self.columns - 1, max(0, int(x // self.cell)))
        row = min(self.rows - 1, max(0, int(y // self.cell)))
        return self.facts[row * self.columns + column]

    def cover(self, inside, box: tuple[float, float, float, float], name: str) -> None:
        """Mark the cells whose sample points ``inside`` accepts, looking only at those ``box`` touches."""
        left, right = (min(self.columns - 1, max(0, int(v // self.cell))) for v in (box[0], box[2]))
        top, bottom = (min(self.rows - 1, max(0, int(v // self.cell))) for v in (box[1], box[3]))
        for row in range(top, bottom + 1):
            for column in range(left, right + 1):
                if any(inside(column * self.cell + dx, row * self.cell + dy) for dx in self.samples for dy in self.samples):
                    self.facts[row * self.columns + column].add(name)

    def box(self, box: tuple[float, float, float, float], name: str) -> None:
        left, top, right, bottom = box
        self.cover(lambda x, y: left <= x <= right and top <= y <= bottom, box, name)

    def glyph(self, char: str, x: float, y: float, line: str) -> None:
        here = self.at(x, y)
        here.add(line)
        if char.lower() in self.characters:
            here.add(f"char:{char.lower()}:{int(x % self.cell >= self.cell / 2)}")

    def labels(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(sorted(self.names[name] for name in names)) for names in self.facts)


def cell_labels(scene: Scene, cell: int, vocabulary: Vocabulary = STANDARD, *,
                image_side: int = IMAGE_SIDE) -> tuple[tuple[int, ...], ...]:
    """For each ``cell`` x ``cell`` square of the picture the project's own renderer draws of ``scene``,
    row by row (the order of the merged image tokens), the indices (into :func:`cell_fact_names` of
    ``vocabulary``) of the facts that hold there. ``image_side``: the side the processor resizes the
    renderer's square picture to; each token then covers ``cell * IMAGE_SIDE / image_side`` of its pixels."""
    side = image_side // cell
    cells = _Cells(side, side, cell * IMAGE_SIDE / image_side, vocabulary)
    if isinstance(scene, ShapeScene):
        for shape in scene.objects:
            r = shape.radius
            cells.cover(functools.partial(_inside, shape), (shape.x - r, shape.y - r, shape.x + r, shape.y + r),
                        f"colour:{shape.colour}")
            cells.at(shape.x, shape.y).add(f"centre:{shape.colour}:{shape.shape}:{shape.size}")
    elif isinstance(scene, BarScene):
        for box, (colour, value) in zip(bar_boxes(scene), scene.bars):
            left, top, right, bottom = box
            cells.box(box, f"colour:{colour}")
            cells.at((left + right) / 2, top + 1).add(f"bar_top:{value}")
    else:
        runs = document_text(scene)
        for index, run in enumerate(runs):
            line = f"title:{scene.title}" if index == 0 else f"line:{scene.fields[index - 1][0]}"
            for char, x, y in run.glyphs():
                cells.glyph(char, x, y, line)
    return cells.labels()


def token_grid(width: int, height: int, cell: int, pixels: int = IMAGE_SIDE * IMAGE_SIDE) -> tuple[int, int]:
    """``(rows, columns)`` of merged image tokens the processor gives a ``width`` x ``height`` picture
    when it resizes pictures to about ``pixels`` pixels in steps of ``cell`` (Qwen2-VL's
    ``smart_resize``, which keeps the aspect ratio near)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    resized_height, resized_width = smart_resize(height, width, factor=cell, min_pixels=pixels, max_pixels=pixels)
    return resized_height // cell, resized_width // cell


def layout_cell_labels(layout, cell: int, vocabulary: Vocabulary = STANDARD, *,
                       pixels: int = IMAGE_SIDE * IMAGE_SIDE) -> tuple[tuple[int, ...], ...]:
    """:func:`cell_labels` of a picture another tool drew, from the :class:`~redgraph.data.tools.Layout`
    of where it drew what: each square of the token grid the processor makes of the picture (see
    :func:`token_grid`; ``pixels``: the processor's pixel budget), row by row."""
    width, height = layout.size
    rows, columns = token_grid(width, height, cell, pixels)
    cells = _Cells(rows, columns, cell, vocabulary)
    scale_x, scale_y = columns * cell / width, rows * cell / height
    for colour, left, top, right, bottom in layout.boxes:
        cells.box((left * scale_x, top * scale_y, right * scale_x, bottom * scale_y), f"colour:{colour}")
    for value, x, y in layout.ends:
        cells.at(x * scale_x, y * scale_y).add(f"bar_top:{value}")
    for char, x, y, line in layout.glyphs:
        cells.glyph(char, x * scale_x, y * scale_y, line)
    return cells.labels()


def _inside(shape: Shape, x: float, y: float) -> bool:
    """Whether the point ``(x, y)`` is inside ``shape`` as :func:`draw_scene` draws it."""
    r = shape.radius
    if shape.shape == "circle":
        return (x - shape.x) ** 2 + (y - shape.y) ** 2 <= r * r
    if not (shape.y - r <= y <= shape.y + r and shape.x - r <= x <= shape.x + r):
        return False
    return shape.shape == "square" or abs(x - shape.x) <= (y - (shape.y - r)) / 2  # triangle, apex up
