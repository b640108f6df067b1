"""The same scenes drawn by other tools: bar charts by matplotlib, documents in real TrueType fonts.

The project's own renderer (:func:`redgraph.data.scenes.draw_scene`) is one look. A user's chart
comes from matplotlib and a user's document from a word processor; these renderers draw the
same scene records (so every question, rationale and claim label still holds) the way such tools
do. Each draws one of three *looks*:

- ``default``: what a user's first picture looks like, the pictures the evaluation's
  ``matplotlib`` and ``fonts`` sources draw. Charts: ``Axes.bar`` in matplotlib's default style,
  128-200 px, with or without a title, axis labels, tick labels and gridlines, the bars in
  matplotlib's colours of the same names. Documents: a title, a rule under it and
  ``Field: value`` lines in a DejaVu Sans or Serif font, at random sizes and margins.
- ``train``: the randomised world training draws. Charts: seven style sheets, vertical and
  horizontal bars, value labels, legends, edge colours, bar widths, dpi, aspect ratios from 1:2 to
  2:1 and y axes that end above 10. Documents: DejaVu Sans and Serif and STIX in several weights,
  sizes and cases, separators ``": "``, ``" "``, ``" - "`` and tab-aligned columns, centred or
  left titles, underlines or rules, light coloured paper, two-column layouts and small tables.
- ``heldout``: the ``train`` look in a family training never draws: the ``ggplot`` style sheet
  and the DejaVu Sans Mono font. Its figure says how a model does on a tool it never saw.

:func:`degrade` gives any picture what scans and screenshots have (JPEG, blur, a slight rotation,
scale and padding). Both tools need matplotlib (``pip install 'redgraph[render]'``); the fonts are
those its wheel ships, so no system font is needed.

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
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from redgraph.data.scenes import BarScene, DocumentScene, Scene, glyph_centres
from redgraph.data.synthetic import Split, SyntheticItem, items_of_kind
from redgraph.errors import InputError

TOOLS = ("matplotlib", "fonts")
LOOKS = ("default", "train", "heldout")
# Which scene kind each tool draws.
TOOL_KINDS = {"matplotlib": "bars", "fonts": "document"}
KIND_TOOLS = {kind: tool for tool, kind in TOOL_KINDS.items()}
# Style sheets and fonts of each look; the held-out ones never appear in another look.
TRAIN_STYLES = ("default", "classic", "bmh", "seaborn-v0_8-whitegrid", "seaborn-v0_8-darkgrid", "Solarize_Light2",
                "fivethirtyeight")
HELDOUT_STYLE = "ggplot"
DEFAULT_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf")
TRAIN_FONTS = DEFAULT_FONTS + ("DejaVuSans-Oblique.ttf", "DejaVuSerif-Italic.ttf", "STIXGeneral.ttf",
                               "STIXGeneralBol.ttf")
HELDOUT_FONTS = ("DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf")
# matplotlib's names for the scenes' colours: its CSS names (the default look) and its tab10 palette.
_TAB = {"red": "tab:red", "green": "tab:green", "blue": "tab:blue", "purple": "tab:purple", "yellow": "gold",
        "orange": "tab:orange", "pink": "tab:pink", "brown": "tab:brown", "grey": "tab:gray", "black": "0.1",
        "cyan": "tab:cyan"}


def _matplotlib():
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - the extra is installed in tests
        raise InputError("drawing with matplotlib needs it installed: pip install 'redgraph[render]'") from None
    return matplotlib


def _check(tool: str, look: str) -> None:
    if tool not in TOOLS:
        raise InputError(f"unknown drawing tool {tool!r}; choose one of {', '.join(TOOLS)}")
    if look not in LOOKS:
        raise InputError(f"unknown look {look!r}; choose one of {', '.join(LOOKS)}")


Glyph = tuple[str, float, float, str]  # a character, its centre x and y, and its line: title:NAME or line:FIELD


@dataclass(frozen=True)
class Layout:
    """Where a drawing put what it drew, in the picture's pixels (top-left origin): what training's
    cell labels need to say which part of the picture holds which fact.

    ``glyphs``: each written character with its centre and its line (``title:NAME``, ``line:FIELD``);
    ``boxes``: each bar's colour and box ``(left, top, right, bottom)``; ``ends``: each bar's value and
    the point where it ends (the top of a vertical bar, the right end of a horizontal one).
    """

    size: tuple[int, int]  # width, height
    glyphs: tuple[Glyph, ...] = ()
    boxes: tuple[tuple[str, float, float, float, float], ...] = ()
    ends: tuple[tuple[int, float, float], ...] = ()

    def to_dict(self) -> dict:
        return {"size": list(self.size), "glyphs": [list(g) for g in self.glyphs],
                "boxes": [list(b) for b in self.boxes], "ends": [list(e) for e in self.ends]}

    @classmethod
    def from_dict(cls, data: dict) -> Layout:
        try:
            width, height = data["size"]
            return cls(size=(int(width), int(height)),
                       glyphs=tuple((str(c), float(x), float(y), str(line)) for c, x, y, line in data.get("glyphs", ())),
                       boxes=tuple((str(c), *map(float, box)) for c, *box in data.get("boxes", ())),
                       ends=tuple((int(v), float(x), float(y)) for v, x, y in data.get("ends", ())))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"not a drawing's layout ({exc}): {data!r:.200}") from exc


def draw_with(tool: str, scene: Scene, rng: random.Random, *, look: str = "default") -> Image.Image:
    """``scene`` drawn by ``tool`` (see :data:`TOOLS`) in ``look`` (see :data:`LOOKS`), its details drawn
    from ``rng``.

    Raises:
        InputError: an unknown tool or look, or a scene of a kind the tool does not draw.
    """
    return draw_laid_out(tool, scene, rng, look=look)[0]


def draw_laid_out(tool: str, scene: Scene, rng: random.Random, *, look: str = "default"
                  ) -> tuple[Image.Image, Layout]:
    """:func:`draw_with`'s picture (the same one for the same ``rng``) and its :class:`Layout`."""
    _check(tool, look)
    if scene.kind != TOOL_KINDS[tool]:
        raise InputError(f"the {tool} renderer draws {TOOL_KINDS[tool]} scenes, got a {scene.kind} scene")
    if tool == "matplotlib":
        return _draw_bars(scene, rng, look)
    glyphs: list[Glyph] = []
    picture = _draw_document(scene, rng, look, glyphs)
    return picture, Layout(size=picture.size, glyphs=tuple(glyphs))


def tool_items(tool: str, count: int, *, split: Split = "test", seed: int = 0,
               look: str = "default") -> Iterator[tuple[SyntheticItem, Image.Image]]:
    """``count`` items of ``split`` whose scene ``tool`` draws, each with its picture by that tool in ``look``.

    The items are :func:`~redgraph.data.synthetic.items_of_kind`'s of the tool's scene kind; the details of
    each picture are seeded by its question id and the look, so the same arguments give the same pictures.
    """
    _check(tool, look)
    for item in items_of_kind(split, TOOL_KINDS[tool], count, seed=seed):
        yield item, picture_of(item, look=look)


def picture_of(item: SyntheticItem, *, look: str = "default") -> Image.Image:
    """``item``'s scene drawn by the tool that draws its kind, in ``look``, seeded by its question id."""
    if item.kind not in KIND_TOOLS:
        raise InputError(f"no drawing tool draws {item.kind} scenes; the tools draw {', '.join(KIND_TOOLS)}")
    tool = KIND_TOOLS[item.kind]
    salt = "" if look == "default" else f"{look}:"
    return draw_with(tool, item.scene, random.Random(f"redgraph-tools:{tool}:{salt}{item.question_id}"), look=look)


def degrade(picture: Image.Image, rng: random.Random) -> Image.Image:
    """``picture`` as a scanner, phone or screenshot gives it: scaled 0.75-1.25x with a margin of up to
    12 px (half the time), rotated up to 3 degrees (half), slightly blurred (half), then saved as a
    JPEG of quality 30-95."""
    out = picture.convert("RGB")
    background = out.getpixel((0, 0))
    if rng.random() < 0.5:
        scale = rng.uniform(0.75, 1.25)
        size = (max(16, round(out.width * scale)), max(16, round(out.height * scale)))
        out = out.resize(size, Image.Resampling.BICUBIC)
        pad = rng.randint(0, 12)
        canvas = Image.new("RGB", (out.width + 2 * pad, out.height + 2 * pad), background)
        canvas.paste(out, (pad, pad))
        out = canvas
    if rng.random() < 0.5:
        out = out.rotate(rng.uniform(-3.0, 3.0), resample=Image.Resampling.BICUBIC, expand=True, fillcolor=background)
    if rng.random() < 0.5:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.8)))
    buffer = io.BytesIO()
    out.save(buffer, format="JPEG", quality=rng.randint(30, 95))
    buffer.seek(0)
    with Image.open(buffer) as jpeg:
        return jpeg.convert("RGB")


# --- charts -------------------------------------------------------------------------------------

def _draw_bars(scene: BarScene, rng: random.Random, look: str) -> tuple[Image.Image, Layout]:
    matplotlib = _matplotlib()
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    style = "default" if look == "default" else HELDOUT_STYLE if look == "heldout" else rng.choice(TRAIN_STYLES)
    names = [colour for colour, _ in scene.bars]
    values = [value for _, value in scene.bars]
    with matplotlib.style.context(style):
        if look == "default":
            dpi = rng.choice((50, 64, 72))
            width, height = rng.randint(128, 200), rng.randint(128, 200)
            colours, horizontal, bar_width = names, False, rng.uniform(0.5, 0.9)
        else:
            dpi = rng.choice((50, 64, 72, 80, 96))
            width = rng.randint(128, 220)
            height = max(96, min(256, round(width / rng.uniform(0.5, 2.0))))
            colours = names if rng.random() < 0.6 else [_TAB[name] for name in names]
            horizontal, bar_width = rng.random() < 0.25, rng.uniform(0.4, 0.9)
        figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        places = range(len(values))
        extra = {}
        if look != "default" and rng.random() < 0.3:
            extra = {"edgecolor": rng.choice(("black", "white", "grey")), "linewidth": rng.uniform(0.5, 1.5)}
        draw = axes.barh if horizontal else axes.bar
        bars = draw(places, values, rng.uniform(0.4, 0.9) if horizontal else bar_width, color=colours,
                    label=names, **extra)
        # the value axis ends at 10, or for the wide vocabulary's values at the next multiple of 10 (or 20)
        highest = max(values)
        step = 1 if highest <= 10 else 10 if highest <= 50 else 20
        end = 10 if highest <= 10 else step * -(-highest // step)
        top = end if look == "default" or rng.random() < 0.6 else rng.choice((None, end + step, end + 2 * step))
        set_limit, set_ticks = (axes.set_xlim, axes.set_yticks) if horizontal else (axes.set_ylim, axes.set_xticks)
        if top is not None:
            set_limit(0, top)
        set_ticks(places, names if rng.random() < 0.5 else [""] * len(names))
        if horizontal:
            axes.invert_yaxis()  # the first bar on top
        if look != "default" and rng.random() < 0.3:
            axes.bar_label(bars, fontsize=rng.choice((6, 7, 8)))
        if look != "default" and rng.random() < 0.2:
            axes.legend(fontsize=6, loc=rng.choice(("upper right", "upper left", "best")))
        if rng.random() < 0.5:
            value_axis, name_axis = (axes.set_xlabel, axes.set_ylabel) if horizontal else (axes.set_ylabel, axes.set_xlabel)
            value_axis("value")
            name_axis("colour")
        if rng.random() < 0.5:
            axes.set_title(rng.choice(("Values", "Counts", "Results")))
        if rng.random() < 0.5:
            axes.grid(axis="x" if horizontal else "y", alpha=0.5)
        figure.tight_layout(pad=0.3)
        figure.canvas.draw()
        width, height = figure.canvas.get_width_height()
        picture = Image.frombuffer("RGBA", (width, height), figure.canvas.buffer_rgba()).convert("RGB")
        boxes, ends = [], []
        for bar, (name, value) in zip(bars, scene.bars):
            extent = bar.get_window_extent()  # display pixels, origin at the bottom left
            left, right, top, bottom = extent.x0, extent.x1, height - extent.y1, height - extent.y0
            left, right, top, bottom = float(left), float(right), float(top), float(bottom)
            boxes.append((name, left, top, right, bottom))
            ends.append((value, right - 1, (top + bottom) / 2) if horizontal else (value, (left + right) / 2, top + 1))
        return picture, Layout(size=(width, height), boxes=tuple(boxes), ends=tuple(ends))


# --- documents ----------------------------------------------------------------------------------

@functools.cache
def _font_path(name: str) -> Path:
    return Path(_matplotlib().get_data_path()) / "fonts" / "ttf" / name


@functools.cache
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_font_path(name)), size)


def _writer(draw: ImageDraw.ImageDraw, glyphs: list[Glyph] | None):
    """A function that writes a line of text and, where ``glyphs`` is a list, adds each of its
    characters there with the line it belongs to (``title:NAME`` or ``line:FIELD``)."""
    def write(xy: tuple[float, float], text: str, font: ImageFont.FreeTypeFont, fill, line: str) -> None:
        draw.text(xy, text, font=font, fill=fill)
        if glyphs is not None:
            glyphs.extend((char, x, y, line) for char, x, y in glyph_centres(text, font, *xy))
    return write


def _draw_document(scene: DocumentScene, rng: random.Random, look: str, glyphs: list[Glyph] | None = None
                   ) -> Image.Image:
    if look == "default":
        return _plain_document(scene, rng, glyphs)
    fonts = HELDOUT_FONTS if look == "heldout" else TRAIN_FONTS
    title_font = _font(rng.choice(fonts), rng.randint(13, 24))
    body_font = _font(rng.choice(fonts), rng.randint(10, 17))
    title = rng.choice((scene.title.upper(), scene.title.capitalize(), scene.title))
    case = rng.choice((str.capitalize, str.upper, str.lower))
    separator = rng.choice((": ", ": ", " ", " - ", "\t"))
    rows = [(case(name), str(value)) for name, value in scene.fields]
    lines = [f"line:{name}" for name, _ in scene.fields]
    layout = rng.choices(("lines", "columns", "table"), weights=(0.7, 0.15, 0.15))[0]
    paper = (255, 255, 255) if rng.random() < 0.6 else tuple(rng.randint(232, 255) for _ in range(3))
    ink = rng.choice(((0, 0, 0), (0, 0, 0), (40, 40, 40), (20, 30, 90)))
    margin_x, margin_y = rng.randint(4, 20), rng.randint(4, 16)
    gap = rng.randint(4, 10)

    def height_of(text: str, font) -> int:
        box = font.getbbox(text)
        return box[3]

    def width_of(text: str, font) -> float:
        return font.getlength(text)

    label_width = max(width_of(name + ":", body_font) for name, _ in rows)
    if separator == "\t":
        texts = [(name + ":", value) for name, value in rows]
    else:
        texts = [(name + separator + value, None) for name, value in rows]
    # a tab-aligned line ends at its value, in the column after the longest name
    line_width = max(label_width + 10 + width_of(v, body_font) if v is not None else width_of(t, body_font)
                     for t, v in texts)
    title_width = width_of(title, title_font)
    needed_width = 2 * margin_x + max(title_width, line_width if layout != "columns" else line_width * 2 + 16)
    body_height = len(rows) * (height_of("Hg", body_font) + gap) if layout != "columns" else 2 * (height_of("Hg", body_font) + gap)
    needed_height = 2 * margin_y + height_of(title, title_font) + 14 + body_height + (8 if layout == "table" else 0)
    width = max(round(needed_width) + rng.randint(0, 40), rng.randint(128, 200))
    height = max(round(needed_height) + rng.randint(0, 30), rng.randint(110, 200))
    image = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(image)
    write = _writer(draw, glyphs)
    x = margin_x if rng.random() < 0.7 else max(margin_x, round((width - title_width) / 2))
    y = margin_y
    write((x, y), title, title_font, ink, f"title:{scene.title}")
    y = draw.textbbox((x, y), title, font=title_font)[3] + 4
    rule = rng.choice(("underline", "rule", "none"))
    if rule == "underline":
        draw.line((x, y, min(width - 4, x + round(title_width)), y), fill=ink, width=rng.choice((1, 2)))
    elif rule == "rule":
        draw.line((margin_x, y, width - margin_x, y), fill=ink, width=1)
    y += rng.randint(6, 10)
    x = margin_x
    line_height = height_of("Hg", body_font) + gap
    if layout == "table":
        column = x + round(label_width) + 12
        right = column + round(max(width_of(v, body_font) for _, v in rows)) + 8
        top = y - 3
        for (name, value), line in zip(rows, lines):
            write((x + 3, y), name, body_font, ink, line)
            write((column + 3, y), value, body_font, ink, line)
            y += line_height
        for line_y in range(top, y + 1, line_height):
            draw.line((x, line_y, right, line_y), fill=ink)
        for line_x in (x, column, right):
            draw.line((line_x, top, line_x, top + line_height * len(rows)), fill=ink)
        return image
    place = [(x, y + index * line_height) for index in range(len(rows))]
    if layout == "columns":
        half = round(line_width) + 16
        place = [(x + (index % 2) * half, y + (index // 2) * line_height) for index in range(len(rows))]
    for (text, value), (left, top), line in zip(texts, place, lines):
        write((left, top), text, body_font, ink, line)
        if value is not None:  # tab-aligned: the values in one column
            write((left + round(label_width) + 10, top), value, body_font, ink, line)
    return image


def _plain_document(scene: DocumentScene, rng: random.Random, glyphs: list[Glyph] | None = None) -> Image.Image:
    width, height = rng.randint(128, 200), rng.randint(128, 200)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    write = _writer(draw, glyphs)
    title_font = _font(rng.choice(DEFAULT_FONTS), rng.randint(15, 22))
    body_font = _font(rng.choice(DEFAULT_FONTS), rng.randint(12, 16))
    x, y = rng.randint(4, 16), rng.randint(4, 14)
    title = rng.choice((scene.title.upper(), scene.title.capitalize()))
    write((x, y), title, title_font, "black", f"title:{scene.title}")
    y = draw.textbbox((x, y), title, font=title_font)[3] + 4
    draw.line((x, y, min(width - 4, x + rng.randint(60, 110)), y), fill="black", width=rng.choice((1, 2)))
    y += rng.randint(6, 12)
    for name, value in scene.fields:
        line = f"{name.capitalize()}: {value}"
        write((x, y), line, body_font, "black", f"line:{name}")
        y = draw.textbbox((x, y), line, font=body_font)[3] + rng.randint(5, 10)
    return image
