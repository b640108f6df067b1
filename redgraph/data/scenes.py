"""Synthetic scenes: coloured shapes, bar charts and small documents, rendered with PIL.

A scene is a small frozen record of what is in the picture; :func:`draw_scene` draws it, and the claims
in :mod:`redgraph.data.claims` are evaluated against the record, never against pixels. Scenes
serialise to plain dicts (:func:`scene_to_dict`) so an exported dataset carries the ground truth
from which every label can be re-derived.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Literal, Union

from PIL import Image, ImageDraw, ImageFont

from redgraph.data.vocabulary import RGB as _RGB
from redgraph.data.vocabulary import STANDARD, WIDE, Vocabulary, value_of
from redgraph.errors import InputError

IMAGE_SIDE = 128
# The standard vocabulary's words (redgraph.data.vocabulary has the wide one).
COLOURS = STANDARD.colours
SHAPES = ("circle", "square", "triangle")
TITLES = STANDARD.titles
FIELDS = STANDARD.fields
KINDS = ("shapes", "bars", "document")
Kind = Literal["shapes", "bars", "document"]
_RADIUS = {"big": 15, "small": 9}


@dataclass(frozen=True)
class Shape:
    """One shape; ``x``, ``y`` is its centre in pixels (y grows downwards)."""

    colour: str
    shape: str
    x: int
    y: int
    size: Literal["big", "small"]

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def radius(self) -> int:
        return _RADIUS[self.size]


@dataclass(frozen=True)
class ShapeScene:
    """Two to five shapes; each colour-shape pair occurs at most once, so "the red circle" is unique."""

    objects: tuple[Shape, ...]
    kind: Literal["shapes"] = "shapes"

    def find(self, colour: str, shape: str) -> Shape | None:
        return next((o for o in self.objects if o.colour == colour and o.shape == shape), None)


@dataclass(frozen=True)
class BarScene:
    """Three or four bars of distinct colours and distinct whole values (1-9 in the standard vocabulary,
    1-100 in the wide one)."""

    bars: tuple[tuple[str, int], ...]  # (colour, value), left to right
    kind: Literal["bars"] = "bars"

    def value(self, colour: str) -> int | None:
        return dict(self.bars).get(colour)


@dataclass(frozen=True)
class DocumentScene:
    """A receipt or a slide: a title word and two or three ``field: value`` lines. A value is a whole
    number or, in the wide vocabulary, the text a document writes (``12.50``, ``1,204``, ``$3.99``;
    see :func:`redgraph.data.vocabulary.value_of`)."""

    layout: Literal["receipt", "slide"]
    title: str
    fields: tuple[tuple[str, int | str], ...]
    dx: int = 0  # layout jitter in pixels
    dy: int = 0
    kind: Literal["document"] = "document"


Scene = Union[ShapeScene, BarScene, DocumentScene]


def random_scene(kind: Kind, rng: random.Random, vocabulary: Vocabulary = STANDARD) -> Scene:
    """A random scene of ``kind`` in ``vocabulary``'s words and numbers, drawn from ``rng`` only
    (deterministic given its state)."""
    if kind == "shapes":
        return _random_shapes(rng, vocabulary.colours)
    if kind == "bars":
        count = rng.choice((3, 4))
        colours = rng.sample(vocabulary.colours, count)
        values = rng.sample(vocabulary.bar_values, count)
        return BarScene(bars=tuple(zip(colours, values)))
    if kind == "document":
        fields = rng.sample(vocabulary.fields, rng.choice((2, 3)))
        return DocumentScene(
            layout=rng.choice(("receipt", "slide")),
            title=rng.choice(vocabulary.titles),
            fields=tuple((name, vocabulary.field_value(rng)) for name in fields),
            dx=rng.randint(0, 12),
            dy=rng.randint(0, 10),
        )
    raise InputError(f"unknown scene kind {kind!r}; choose one of {', '.join(KINDS)}")


def vocabulary_of(scene: Scene) -> Vocabulary:
    """The smallest vocabulary that holds every word and number of ``scene``: :data:`STANDARD` for
    every scene the standard generator draws, else :data:`WIDE`; InputError for a scene neither holds."""
    for vocabulary in (STANDARD, WIDE):
        if isinstance(scene, ShapeScene):
            holds = all(o.colour in vocabulary.colours for o in scene.objects)
        elif isinstance(scene, BarScene):
            holds = all(c in vocabulary.colours and v in vocabulary.bar_values for c, v in scene.bars)
        else:
            holds = scene.title in vocabulary.titles and all(
                name in vocabulary.fields and vocabulary.holds_value(value) for name, value in scene.fields)
        if holds:
            return vocabulary
    raise InputError(f"the scene {scene_to_dict(scene)!r:.200} holds words or numbers of no known vocabulary")


def _random_shapes(rng: random.Random, colours: tuple[str, ...]) -> ShapeScene:
    count = rng.randint(2, 5)
    pairs = rng.sample([(c, s) for c in colours for s in SHAPES], count)
    placed: list[Shape] = []
    for colour, shape in pairs:
        size = rng.choice(("big", "small"))
        radius = _RADIUS[size]
        for _ in range(200):
            x = rng.randint(radius + 4, IMAGE_SIDE - radius - 4)
            y = rng.randint(radius + 4, IMAGE_SIDE - radius - 4)
            if all((x - o.x) ** 2 + (y - o.y) ** 2 >= (radius + o.radius + 6) ** 2 for o in placed):
                placed.append(Shape(colour, shape, x, y, size))
                break
    return ShapeScene(objects=tuple(placed))


_BAR_BASE, _BAR_UNIT, _BAR_LEFT = 118, 11, 14
_AXIS_LEFT, _AXIS_TOP = 26, 8  # a chart of values above 9: room for its tick labels


def _bar_axis(scene: BarScene) -> tuple[int, float, int, int]:
    """``(left, pixels per unit, top value, tick step)`` of a bar chart's axes. Values up to 9 are drawn
    one gridline per unit, as always; higher ones against an axis with a labelled tick every 10 (to
    50) or 20 (to 100), up to the tick above the highest bar."""
    highest = max(value for _, value in scene.bars)
    if highest <= 9:
        return _BAR_LEFT, _BAR_UNIT, 9, 1
    step = 10 if highest <= 50 else 20
    top = step * -(-highest // step)
    return _AXIS_LEFT, (_BAR_BASE - _AXIS_TOP) / top, top, step


def bar_boxes(scene: BarScene) -> list[tuple[int, int, int, int]]:
    """Each bar's rectangle ``(left, top, right, bottom)`` in pixels, left to right, as drawn."""
    left, unit, _, _ = _bar_axis(scene)
    width = (IMAGE_SIDE - left - 8) // len(scene.bars)
    return [(left + index * width + 3, _BAR_BASE - round(value * unit), left + index * width + width - 3,
             _BAR_BASE - 1) for index, (_, value) in enumerate(scene.bars)]


def draw_scene(scene: Scene) -> Image.Image:
    """Draw ``scene`` as an RGB image of IMAGE_SIDE x IMAGE_SIDE pixels."""
    image = Image.new("RGB", (IMAGE_SIDE, IMAGE_SIDE), "white")
    draw = ImageDraw.Draw(image)
    if isinstance(scene, ShapeScene):
        for o in scene.objects:
            box = (o.x - o.radius, o.y - o.radius, o.x + o.radius, o.y + o.radius)
            if o.shape == "circle":
                draw.ellipse(box, fill=_RGB[o.colour])
            elif o.shape == "square":
                draw.rectangle(box, fill=_RGB[o.colour])
            else:
                draw.polygon([(o.x, box[1]), (box[2], box[3]), (box[0], box[3])], fill=_RGB[o.colour])
    elif isinstance(scene, BarScene):
        base = _BAR_BASE
        left, unit, top, step = _bar_axis(scene)
        ticks = range(step, top + 1, step)
        labelled = () if top == 9 else ticks
        for value in ticks:
            y = base - round(value * unit)
            draw.line((left - 4, y, IMAGE_SIDE - 4, y), fill=(215, 215, 215))
            if value in labelled:
                draw.text((left - 6, y), str(value), font=_font(9), fill="black", anchor="rm")
        draw.line((left - 4, base, IMAGE_SIDE - 4, base), fill="black")
        draw.line((left - 4, _AXIS_TOP, left - 4, base), fill="black")
        for box, (colour, _) in zip(bar_boxes(scene), scene.bars):
            draw.rectangle(box, fill=_RGB[colour])
    else:
        _render_document(scene, draw)
    return image


@dataclass(frozen=True)
class TextRun:
    """One line of a document's text: where it is drawn (its origin, PIL's top-left anchor), at which
    font size and in which colour."""

    x: int
    y: int
    text: str
    size: int
    fill: tuple[int, int, int]

    def glyphs(self) -> list[tuple[str, float, float]]:
        """``(character, centre x, centre y)`` of each visible character, in pixels."""
        return glyph_centres(self.text, _font(self.size), self.x, self.y)


def glyph_centres(text: str, font: ImageFont.FreeTypeFont, x: float, y: float) -> list[tuple[str, float, float]]:
    """``(character, centre x, centre y)`` in pixels of each visible character of ``text`` drawn by
    ``ImageDraw.text((x, y), text, font=font)`` (PIL's top-left anchor)."""
    out = []
    for index, char in enumerate(text):
        if char.isspace():
            continue
        left, top, right, bottom = font.getbbox(char)
        start = font.getlength(text[:index])
        out.append((char, x + start + (left + right) / 2, y + (top + bottom) / 2))
    return out


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def document_text(scene: DocumentScene) -> tuple[TextRun, ...]:
    """The text lines of a document scene, as :func:`draw_scene` draws them."""
    if scene.layout == "receipt":
        x, y = 6 + scene.dx, 6 + scene.dy
        runs = [TextRun(x, y, scene.title.upper(), 17, (0, 0, 0))]
        runs += [TextRun(x, y + 28 + index * 22, f"{name.capitalize()}: {value}", 15, (0, 0, 0))
                 for index, (name, value) in enumerate(scene.fields)]
    else:
        runs = [TextRun(8 + scene.dx, 6 + scene.dy // 2, scene.title.upper(), 19, (255, 255, 255))]
        runs += [TextRun(8 + scene.dx, 42 + scene.dy + index * 24, f"- {name} {value}", 15, (20, 20, 20))
                 for index, (name, value) in enumerate(scene.fields)]
    return tuple(runs)


def _render_document(scene: DocumentScene, draw: ImageDraw.ImageDraw) -> None:
    if scene.layout == "receipt":
        x, y = 6 + scene.dx, 6 + scene.dy
        draw.line((x, y + 22, x + 100, y + 22), fill="black")
    else:
        draw.rectangle((0, 0, IMAGE_SIDE - 1, 30 + scene.dy), fill=(40, 70, 140))
    for run in document_text(scene):
        draw.text((run.x, run.y), run.text, font=_font(run.size), fill=run.fill)


def scene_to_dict(scene: Scene) -> dict:
    if isinstance(scene, ShapeScene):
        return {"kind": "shapes", "objects": [vars(o).copy() for o in scene.objects]}
    if isinstance(scene, BarScene):
        return {"kind": "bars", "bars": [list(b) for b in scene.bars]}
    return {"kind": "document", "layout": scene.layout, "title": scene.title,
            "fields": [list(f) for f in scene.fields], "dx": scene.dx, "dy": scene.dy}


def scene_from_dict(data: dict) -> Scene:
    """Rebuild a scene from :func:`scene_to_dict`'s output (e.g. read back from an export)."""
    try:
        kind = data["kind"]
        if kind == "shapes":
            return ShapeScene(objects=tuple(Shape(**o) for o in data["objects"]))
        if kind == "bars":
            return BarScene(bars=tuple((str(c), int(v)) for c, v in data["bars"]))
        if kind == "document":
            return DocumentScene(layout=data["layout"], title=data["title"],
                                 fields=tuple((str(n), _field_value(v)) for n, v in data["fields"]),
                                 dx=int(data["dx"]), dy=int(data["dy"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"not a valid scene record: {exc}: {data!r:.200}") from exc
    raise InputError(f"unknown scene kind {kind!r} in {data!r:.200}; expected one of {', '.join(KINDS)}")


def _field_value(value) -> int | str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"a field value is a whole number or its text, got {value!r}")
    return value_of(str(value))
