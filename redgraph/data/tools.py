"""The same scenes drawn by other tools: bar charts by matplotlib, documents in real TrueType fonts.

The project's own renderer (:func:`redgraph.data.scenes.draw_scene`) is one look. A user's chart
comes from matplotlib and a user's document from a word processor; these renderers draw the
same scene records (so every question, rationale and claim label still holds) the way such tools
do, with randomised sizes, aspect ratios, labels and fonts. They measure how the model and the
critic do on pictures their training never drew.

- ``matplotlib``: a bar scene as ``Axes.bar`` draws it in matplotlib's default style, 128-200 px,
  with or without a title, axis labels and gridlines, the bars in matplotlib's colours of the
  same names.
- ``fonts``: a document scene in a DejaVu font that matplotlib's wheel ships (no system font is
  needed): a title, a rule under it and ``Field: value`` lines, at random sizes and margins.

Both need matplotlib (``pip install 'redgraph[render]'``).

Example:
    >>> item, picture = next(tool_items("matplotlib", 1))  # doctest: +SKIP
    >>> item.question, item.answer, picture.size  # doctest: +SKIP
    ('Which bar is the tallest?', 'blue', (160, 144))
"""

from __future__ import annotations

import functools
import io
import random
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from redgraph.data.scenes import BarScene, DocumentScene, Scene
from redgraph.data.synthetic import Split, SyntheticItem, items_of_kind
from redgraph.errors import InputError

TOOLS = ("matplotlib", "fonts")
# Which scene kind each tool draws.
TOOL_KINDS = {"matplotlib": "bars", "fonts": "document"}
_FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
               "DejaVuSansMono.ttf")


def _matplotlib():
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - the extra is installed in tests
        raise InputError("drawing with matplotlib needs it installed: pip install 'redgraph[render]'") from None
    return matplotlib


def draw_with(tool: str, scene: Scene, rng: random.Random) -> Image.Image:
    """``scene`` drawn by ``tool`` (see :data:`TOOLS`), its look drawn from ``rng``.

    Raises:
        InputError: an unknown tool, or a scene of a kind the tool does not draw.
    """
    if tool not in TOOLS:
        raise InputError(f"unknown drawing tool {tool!r}; choose one of {', '.join(TOOLS)}")
    if scene.kind != TOOL_KINDS[tool]:
        raise InputError(f"the {tool} renderer draws {TOOL_KINDS[tool]} scenes, got a {scene.kind} scene")
    return _draw_bars(scene, rng) if tool == "matplotlib" else _draw_document(scene, rng)


def tool_items(tool: str, count: int, *, split: Split = "test", seed: int = 0) -> Iterator[tuple[SyntheticItem, Image.Image]]:
    """``count`` items of ``split`` whose scene ``tool`` draws, each with its picture by that tool.

    The items are :func:`~redgraph.data.synthetic.items_of_kind`'s of the tool's scene kind; the look of each
    picture is seeded by its question id, so the same arguments give the same pictures.
    """
    if tool not in TOOLS:
        raise InputError(f"unknown drawing tool {tool!r}; choose one of {', '.join(TOOLS)}")
    for item in items_of_kind(split, TOOL_KINDS[tool], count, seed=seed):
        yield item, draw_with(tool, item.scene, random.Random(f"redgraph-tools:{tool}:{item.question_id}"))


def _draw_bars(scene: BarScene, rng: random.Random) -> Image.Image:
    _matplotlib()  # a clear error where it is missing
    from matplotlib.figure import Figure

    dpi = rng.choice((50, 64, 72))
    width, height = rng.randint(128, 200), rng.randint(128, 200)
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    axes = figure.add_subplot()
    colours = [colour for colour, _ in scene.bars]
    axes.bar(range(len(scene.bars)), [value for _, value in scene.bars], color=colours,
             width=rng.uniform(0.5, 0.9))
    axes.set_ylim(0, 10)
    axes.set_xticks(range(len(scene.bars)), colours if rng.random() < 0.5 else [""] * len(colours))
    if rng.random() < 0.5:
        axes.set_ylabel("value")
        axes.set_xlabel("colour")
    if rng.random() < 0.5:
        axes.set_title(rng.choice(("Values", "Counts", "Results")))
    if rng.random() < 0.5:
        axes.grid(axis="y", alpha=0.5)
    figure.tight_layout(pad=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    with Image.open(buffer) as png:
        return png.convert("RGB")


@functools.cache
def _font_path(name: str) -> Path:
    return Path(_matplotlib().get_data_path()) / "fonts" / "ttf" / name


@functools.cache
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_font_path(name)), size)


def _draw_document(scene: DocumentScene, rng: random.Random) -> Image.Image:
    width, height = rng.randint(128, 200), rng.randint(128, 200)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    title_font = _font(rng.choice(_FONT_FILES), rng.randint(15, 22))
    body_font = _font(rng.choice(_FONT_FILES), rng.randint(12, 16))
    x, y = rng.randint(4, 16), rng.randint(4, 14)
    title = rng.choice((scene.title.upper(), scene.title.capitalize()))
    draw.text((x, y), title, font=title_font, fill="black")
    y = draw.textbbox((x, y), title, font=title_font)[3] + 4
    draw.line((x, y, min(width - 4, x + rng.randint(60, 110)), y), fill="black", width=rng.choice((1, 2)))
    y += rng.randint(6, 12)
    for name, value in scene.fields:
        line = f"{name.capitalize()}: {value}"
        draw.text((x, y), line, font=body_font, fill="black")
        y = draw.textbbox((x, y), line, font=body_font)[3] + rng.randint(5, 10)
    return image
