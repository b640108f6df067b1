"""Synthetic scenes: coloured shapes, bar charts and small documents, rendered with PIL.

A scene is a small frozen record of what is in the picture; :func:`draw_scene` draws it, and the claims
in :mod:`redgraph.data.claims` are evaluated against the record, never against pixels. Scenes
serialise to plain dicts (:func:`scene_to_dict`) so an exported dataset carries the ground truth
from which every label can be re-derived.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, Union

from PIL import Image, ImageDraw, ImageFont

from redgraph.errors import InputError

IMAGE_SIDE = 128
COLOURS = ("red", "green", "blue", "yellow", "purple")
SHAPES = ("circle", "square", "triangle")
TITLES = ("receipt", "invoice", "menu", "report", "order", "budget", "sales", "ticket", "notes", "agenda")
FIELDS = ("total", "tax", "price", "items", "score", "room")
KINDS = ("shapes", "bars", "document")
Kind = Literal["shapes", "bars", "document"]

_RGB = {
    "red": (220, 30, 30),
    "green": (30, 160, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 200, 20),
    "purple": (140, 50, 170),
}
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
    """Three or four bars of distinct colours and distinct whole values from 1 to 9."""

    bars: tuple[tuple[str, int], ...]  # (colour, value), left to right
    kind: Literal["bars"] = "bars"

    def value(self, colour: str) -> int | None:
        return dict(self.bars).get(colour)


@dataclass(frozen=True)
class DocumentScene:
    """A receipt or a slide: a title word and two or three ``field: value`` lines."""

    layout: Literal["receipt", "slide"]
    title: str
    fields: tuple[tuple[str, int], ...]
    dx: int = 0  # layout jitter in pixels
    dy: int = 0
    kind: Literal["document"] = "document"


Scene = Union[ShapeScene, BarScene, DocumentScene]


def random_scene(kind: Kind, rng: random.Random) -> Scene:
    """A random scene of ``kind``, drawn from ``rng`` only (deterministic given its state)."""
    if kind == "shapes":
        return _random_shapes(rng)
    if kind == "bars":
        count = rng.choice((3, 4))
        colours = rng.sample(COLOURS, count)
        values = rng.sample(range(1, 10), count)
        return BarScene(bars=tuple(zip(colours, values)))
    if kind == "document":
        fields = rng.sample(FIELDS, rng.choice((2, 3)))
        return DocumentScene(
            layout=rng.choice(("receipt", "slide")),
            title=rng.choice(TITLES),
            fields=tuple((name, rng.randint(10, 99)) for name in fields),
            dx=rng.randint(0, 12),
            dy=rng.randint(0, 10),
        )
    raise InputError(f"unknown scene kind {kind!r}; choose one of {', '.join(KINDS)}")


def _random_shapes(rng: random.Random) -> ShapeScene:
    count = rng.randint(2, 5)
    pairs = rng.sample([(c, s) for c in COLOURS for s in SHAPES], count)
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
        base, unit, left = 118, 11, 14
        for value in range(1, 10):
            draw.line((left - 4, base - value * unit, IMAGE_SIDE - 4, base - value * unit), fill=(215, 215, 215))
        draw.line((left - 4, base, IMAGE_SIDE - 4, base), fill="black")
        draw.line((left - 4, 8, left - 4, base), fill="black")
        width = (IMAGE_SIDE - left - 8) // len(scene.bars)
        for index, (colour, value) in enumerate(scene.bars):
            x0 = left + index * width + 3
            draw.rectangle((x0, base - value * unit, x0 + width - 6, base - 1), fill=_RGB[colour])
    else:
        _render_document(scene, draw)
    return image


def _render_document(scene: DocumentScene, draw: ImageDraw.ImageDraw) -> None:
    body = ImageFont.load_default(size=15)
    if scene.layout == "receipt":
        x, y = 6 + scene.dx, 6 + scene.dy
        draw.text((x, y), scene.title.upper(), font=ImageFont.load_default(size=17), fill="black")
        draw.line((x, y + 22, x + 100, y + 22), fill="black")
        for index, (name, value) in enumerate(scene.fields):
            draw.text((x, y + 28 + index * 22), f"{name.capitalize()}: {value}", font=body, fill="black")
    else:
        draw.rectangle((0, 0, IMAGE_SIDE - 1, 30 + scene.dy), fill=(40, 70, 140))
        draw.text((8 + scene.dx, 6 + scene.dy // 2), scene.title.upper(), font=ImageFont.load_default(size=19), fill="white")
        for index, (name, value) in enumerate(scene.fields):
            draw.text((8 + scene.dx, 42 + scene.dy + index * 24), f"- {name} {value}", font=body, fill=(20, 20, 20))


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
                                 fields=tuple((str(n), int(v)) for n, v in data["fields"]),
                                 dx=int(data["dx"]), dy=int(data["dy"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"not a valid scene record: {exc}: {data!r:.200}") from exc
    raise InputError(f"unknown scene kind {kind!r} in {data!r:.200}; expected one of {', '.join(KINDS)}")
