"""Reading a bar chart from its pixels and its OCR page: the bars, their labels, colours and values.

:func:`read_bar_chart` finds the plot area (its spines, its background patch or its gridlines),
segments the bars as filled rectangles of one colour standing on a common baseline, decides the
orientation from that baseline (a shared bottom: vertical bars; a shared left: horizontal bars),
calibrates the value axis from the numeric tick labels the OCR page holds (a least-squares line
``value = slope * pixel + intercept``, its residuals checked), and reads each bar twice where it
can: against the axis at the bar's end, and from a value label printed at that end. The two
readings are independent: where they disagree, one of them (or the chart) is wrong.

It abstains, saying why, rather than guess: no bars, stacked, floating or grouped bars, no axis it
can calibrate, tick labels that do not fit a straight line, a log axis.

It needs OpenCV (``cv2``, which RapidOCR brings). Boxes are ``(left, top, right, bottom)`` in the
picture's pixels, right and bottom exclusive.

Example:
    >>> reading = read_bar_chart(picture, text_reader().read(picture))  # doctest: +SKIP
    >>> reading.tallest().label, reading.tallest().value_text, reading.tallest().agree  # doctest: +SKIP
    ('Q2', '52', True)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from redgraph.errors import ConfigError, InputError
from redgraph.models.ocr import Box, OcrPage

Orientation = Literal["vertical", "horizontal"]

# How far (in value, as a share of the axis span) the axis reading and a printed value label may
# be apart and still agree.
AGREEMENT = 0.05
# The largest tick residual, as a share of the axis span, a linear axis may have.
MAX_RESIDUAL = 0.03
# Two bars whose ends are fewer pixels apart than this are tied (the reading's precision).
TIE_PIXELS = 2.0


@dataclass(frozen=True)
class Abstention:
    """A reader's refusal to read, and why, in words."""

    reader: str
    reason: str


@dataclass(frozen=True)
class TickLabel:
    """A numeric tick label used to calibrate the axis: as printed, where, and what it means."""

    text: str
    box: Box
    pixel: float  # its position along the axis (y for a vertical chart's value axis, x for a horizontal one's)
    value: float


@dataclass(frozen=True)
class AxisFit:
    """The value axis: ``value = slope * pixel + intercept`` fitted over the tick labels.

    ``pixel`` is a y coordinate for vertical bars and an x coordinate for horizontal bars.
    ``max_residual`` is the largest tick's distance from the line as a share of ``span``, the range
    of values the plot area covers. ``decimals``, ``prefix``, ``suffix``, ``unit`` and
    ``thousands`` are how the ticks are printed, used to print values read against the axis alike.
    """

    slope: float
    intercept: float
    ticks: tuple[TickLabel, ...]
    max_residual: float
    span: float
    decimals: int = 0  # negative: rounded left of the point (ticks "0.5" under an offset "1e6")
    prefix: str = ""
    suffix: str = ""
    unit: float = 1.0  # the ticks' multiplier: 1000 for "10k"
    thousands: bool = False

    def value_at(self, pixel: float) -> float:
        """The value at ``pixel`` along the axis."""
        return self.slope * pixel + self.intercept

    def format(self, value: float) -> str:
        """``value`` printed as the tick labels are (their decimals, currency sign, ``%`` or ``k``)."""
        scaled = round(value / self.unit, self.decimals)
        if scaled == 0:
            scaled = 0.0  # no "-0"
        places = max(0, self.decimals)
        digits = f"{abs(scaled):,.{places}f}" if self.thousands else f"{abs(scaled):.{places}f}"
        return f"{'-' if scaled < 0 else ''}{self.prefix}{digits}{self.suffix}"


@dataclass(frozen=True)
class BarReading:
    """One bar: its category label, where it is, its colour, and its value read two ways.

    ``axis_value`` is read against the fitted axis at the bar's end; ``label_value`` (and
    ``label_text``, as printed) comes from a value label printed at or inside the bar's end.
    ``value`` is the printed label's where there is one, else the axis's; ``value_text`` is the
    label as printed, else the axis value printed as the tick labels are. ``agree`` says whether the
    two readings are within 5% of the axis span of each other (None unless both exist).
    ``length_px`` is the bar's length from the baseline, negative for a bar below (left of) it.
    """

    label: str | None
    label_box: Box | None
    box: Box  # left, top, right, bottom (exclusive), in the picture's pixels
    colour: str
    rgb: tuple[int, int, int]  # the bar's median colour
    axis_value: float | None
    label_value: float | None
    label_text: str | None
    value_label_box: Box | None  # where label_text is printed
    value: float | None
    value_text: str | None
    agree: bool | None
    length_px: float = 0.0  # from the baseline to the bar's end, in pixels, positive towards larger values


@dataclass(frozen=True)
class ChartReading:
    """What :func:`read_bar_chart` read off a bar chart. ``bars`` are in reading order: left to right
    for vertical bars, top to bottom for horizontal ones."""

    title: str | None
    title_box: Box | None
    orientation: Orientation
    plot_area: Box
    bars: tuple[BarReading, ...]
    axis: AxisFit | None
    precision: float  # axis readings closer than this are tied (the reading cannot tell them apart)
    size: tuple[int, int] = (0, 0)

    def tallest(self) -> BarReading | None:
        """The bar with the largest value; None when another is tied with it within the precision."""
        return self._extreme(max)

    def shortest(self) -> BarReading | None:
        """The bar with the smallest value; None when another is tied with it within the precision."""
        return self._extreme(min)

    def bar(self, label: str) -> BarReading | None:
        """The bar whose category label is ``label`` (case and spacing ignored), else None."""
        wanted = _loose(label)
        if not wanted:
            return None
        for bar in self.bars:
            if bar.label is not None and _loose(bar.label) == wanted:
                return bar
        return None

    def _extreme(self, pick) -> BarReading | None:
        if not self.bars:
            return None
        # Printed values where every bar has one and none contradicts the axis; else the bars'
        # lengths, which no misread label can change.
        printed = all(bar.label_value is not None and bar.agree is not False for bar in self.bars)
        if printed:
            measure, tolerance = (lambda bar: bar.label_value), 0.0
        else:
            measure, tolerance = (lambda bar: bar.length_px), TIE_PIXELS
        best = pick(self.bars, key=measure)
        if sum(abs(measure(bar) - measure(best)) <= tolerance for bar in self.bars) > 1:
            return None
        return best


def _loose(text: str) -> str:
    return re.sub(r"\s+", "", text).casefold()


# ----------------------------------------------------------------------------------------------
# Colours


# Prototypes of the colour names people use, several per name (CSS colours and matplotlib's
# tab10): a bar is named after its nearest prototype in CIELAB.
_NAMED = {
    "red": ["#ff0000", "#d62728", "#b22222", "#dc143c", "#c44e52", "#e41a1c", "#cd5c5c", "#ff6347", "#8b0000"],
    "orange": ["#ffa500", "#ff7f0e", "#ff8c00", "#dd8452", "#f28e2b", "#ff7f50", "#e6550d"],
    "yellow": ["#ffff00", "#ffd700", "#f0e442", "#ffdf00", "#eedc5b", "#fff68f"],
    "olive": ["#808000", "#bcbd22", "#6b8e23", "#9acd32", "#aab530"],
    "green": ["#008000", "#2ca02c", "#32cd32", "#00ff00", "#55a868", "#228b22", "#90ee90", "#3cb371", "#006400",
              "#4daf4a", "#59a14f", "#8fbc8f"],
    "teal": ["#008080", "#20b2aa", "#2a9d8f", "#17a589"],
    "cyan": ["#00ffff", "#17becf", "#00ced1", "#40e0d0", "#64b5cd", "#76b7b2", "#afeeee"],
    "blue": ["#0000ff", "#1f77b4", "#4169e1", "#4682b4", "#6495ed", "#4c72b0", "#00008b", "#000080", "#1e90ff",
             "#87ceeb", "#add8e6", "#377eb8", "#4e79a7", "#348abd", "#0072b2", "#5975a4"],
    "purple": ["#800080", "#9467bd", "#8a2be2", "#9370db", "#8172b3", "#4b0082", "#984ea3", "#7b68ee", "#b07aa1",
               "#ee82ee", "#988ed5", "#6a3d9a"],
    "pink": ["#ffc0cb", "#e377c2", "#ff69b4", "#ff1493", "#da8bc3", "#ffb6c1", "#f781bf", "#ff9da7", "#fa8072",
             "#db7093"],
    "magenta": ["#ff00ff", "#c71585"],
    "brown": ["#8b4513", "#8c564b", "#a0522d", "#937860", "#a65628", "#9c755f", "#d2691e", "#6b4226"],
    "tan": ["#d2b48c", "#deb887", "#f5deb3"],
}


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (L 0-100) of an (N, 3) array of 0-255 RGB colours."""
    import cv2

    pixels = (np.asarray(rgb, dtype=np.float32) / 255.0).reshape(-1, 1, 3)
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB).reshape(-1, 3)


_PROTOTYPES: tuple[list[str], np.ndarray] | None = None


def colour_name(rgb: tuple[int, int, int]) -> str:
    """The everyday name of an RGB colour: ``red``, ``orange``, ``yellow``, ``olive``, ``green``,
    ``teal``, ``cyan``, ``blue``, ``purple``, ``pink``, ``magenta``, ``brown``, ``tan``, or for
    colours with little chroma ``black``, ``grey`` or ``white``.

    Args:
        rgb: the colour, three 0-255 channels.

    Returns:
        The name of the nearest prototype in CIELAB.
    """
    global _PROTOTYPES
    lab = _lab(np.array([rgb]))[0]
    lightness, chroma = float(lab[0]), math.hypot(float(lab[1]), float(lab[2]))
    if chroma < 12 or (chroma < 18 and (lightness < 25 or lightness > 90)):
        if lightness < 22:
            return "black"
        if lightness > 92:
            return "white"
        return "grey"
    if _PROTOTYPES is None:
        names = [name for name, hexes in _NAMED.items() for _ in hexes]
        values = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for hexes in _NAMED.values() for h in hexes])
        _PROTOTYPES = (names, _lab(values))
    names, labs = _PROTOTYPES
    # Hue matters more than lightness when people name a colour: lightness counts half.
    distance = ((labs - lab) * np.array([0.5, 1.0, 1.0])) ** 2
    return names[int(np.argmin(distance.sum(axis=1)))]


# ----------------------------------------------------------------------------------------------
# Texts and numbers


_NUMBER = re.compile(r"(?P<sign1>[-+]?)(?P<prefix>[$€£¥]?)(?P<sign2>[-+]?)"
                     r"(?P<int>\d{1,3}(?:,\d{3})+|\d+)?(?:\.(?P<frac>\d+))?"
                     r"(?P<suffix>%|[kKM])?")
# (No "B" for billions: the engine reads a 3 or an 8 as a B.)
_SCALE = {"k": 1e3, "K": 1e3, "M": 1e6}
# matplotlib's offset text: "1e6" multiplies the ticks, "+2.024e3" is added to them.
_OFFSET = re.compile(r"(?P<sign>[-+]?)(?P<mantissa>\d+(?:\.\d+)?)e(?P<exponent>[-+]?\d+)")


@dataclass(frozen=True)
class PrintedNumber:
    """A number as a chart prints it: its value (``10k``: 10000) and how it is printed."""

    value: float
    decimals: int  # digits after the point
    prefix: str  # a currency sign
    suffix: str  # "%", "k", "K" or "M"
    unit: float  # what the suffix multiplies by
    thousands: bool  # printed with thousands separators


def parse_number(text: str) -> PrintedNumber | None:
    """The number a tick or value label prints (``1,000``, ``2.5``, ``-3``, ``$5``, ``40%``,
    ``10k``, ``1.5M``), else None."""
    # A tick mark beside a label can be read as a trailing dash: "50-".
    cleaned = text.strip().rstrip("-\u2013\u2014_|").replace("\u2212", "-").replace("\u2013", "-")
    cleaned = cleaned.replace(" ", "").replace("\u202f", "")
    match = _NUMBER.fullmatch(cleaned)
    if not match or not (match["int"] or match["frac"]) or (match["sign1"] and match["sign2"]):
        return None
    sign = -1.0 if "-" in (match["sign1"] + match["sign2"]) else 1.0
    digits = (match["int"] or "0").replace(",", "") + ("." + match["frac"] if match["frac"] else "")
    suffix = match["suffix"] or ""
    unit = _SCALE.get(suffix, 1.0)
    return PrintedNumber(sign * float(digits) * unit, len(match["frac"] or ""), match["prefix"], suffix, unit,
                   "," in (match["int"] or ""))


@dataclass(frozen=True)
class _Text:
    text: str
    box: Box
    confidence: float

    @property
    def cx(self) -> float:
        return (self.box[0] + self.box[2]) / 2

    @property
    def cy(self) -> float:
        return (self.box[1] + self.box[3]) / 2

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    @property
    def rotated(self) -> bool:
        """Written upwards (an axis title beside the ticks, a rotated label)."""
        return len(self.text.replace(" ", "")) >= 2 and self.height > 1.5 * self.width

    @property
    def number(self) -> PrintedNumber | None:
        return parse_number(self.text)


def _texts(page: OcrPage) -> list[_Text]:
    """The page's text runs: each line's words, split where a gap is wider than a word space (one
    engine's line may hold every tick label of an axis)."""
    runs: list[_Text] = []
    for line in page.lines:
        words = sorted(line.words, key=lambda w: w.box[0])
        group = [words[0]] if words else []
        for word in words[1:]:
            height = max(1, min(word.box[3] - word.box[1], group[-1].box[3] - group[-1].box[1]))
            if word.box[0] - group[-1].box[2] > 0.9 * height:
                runs.append(_run(group))
                group = []
            group.append(word)
        if group:
            runs.append(_run(group))
    return [run for run in runs if run.text.strip()]


def _run(words) -> _Text:
    text = " ".join(w.text for w in words).strip()
    # A tick mark beside a label can be read as a dash or a bar glyph at its end: "West-", "|Q1".
    text = text.strip(" \u2013\u2014_|'`") if len(text) > 1 else text
    if len(text) > 1 and not parse_number(text.lstrip("-")):
        text = text.strip("-").strip()
    box = (min(w.box[0] for w in words), min(w.box[1] for w in words), max(w.box[2] for w in words),
           max(w.box[3] for w in words))
    return _Text(text, box, min(w.confidence for w in words))


# ----------------------------------------------------------------------------------------------
# Pixels


def _ink_runs(image: np.ndarray, box: Box, gap: int) -> list[tuple[int, int]]:
    """The column ranges (picture x, end exclusive) of ink inside ``box``, split by ``gap`` or more
    empty columns."""
    left, top = max(0, box[0]), max(0, box[1])
    right, bottom = min(image.shape[1], box[2]), min(image.shape[0], box[3])
    crop = image[top:bottom, left:right].astype(np.int16)
    if crop.size == 0:
        return []
    edge = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]]).astype(np.uint8)
    difference = np.abs(crop - _mode_colour(edge)).max(axis=2)
    if difference.max() < 40:
        return []
    xs = np.nonzero((difference > 0.4 * difference.max()).any(axis=0))[0]
    breaks = np.nonzero(np.diff(xs) > gap)[0]
    starts, ends = np.r_[xs[0], xs[breaks + 1]], np.r_[xs[breaks] + 1, xs[-1] + 1]
    return [(int(a) + left, int(b) + left) for a, b in zip(starts, ends)]


_WEIGHT = {".": 0.5, ",": 0.5, "-": 1.3, "%": 1.5, "$": 1.0}


def _split_numbers(texts: list[_Text], image: np.ndarray) -> list[_Text]:
    """Numeric runs the engine merged across a wide gap ("0 20 40" read as one run, or "02040")
    split at the gaps in the ink, characters shared by width (a chart's digits are equally wide)."""
    out: list[_Text] = []
    for text in texts:
        compact = text.text.replace(" ", "")
        if len(compact) < 2 or text.rotated or not re.fullmatch(r"[-+$%.,\d\u2212kKM]+", compact):
            out.append(text)
            continue
        tokens = _tokens(text.text)
        pieces, runs = None, []
        if len(tokens) > 1:
            for share in (0.5, 0.35, 0.25):
                runs = _ink_runs(image, text.box, max(3, int(share * text.height)))
                if len(runs) == len(tokens):
                    pieces = tokens
                    break
            if pieces is None:
                out.extend(_evenly(text, tokens, image) or [text])
                continue
        else:
            runs = _ink_runs(image, text.box, max(4, int(0.5 * text.height)))
            pieces = _share(compact, [b - a for a, b in runs]) if len(runs) >= 2 else None
        if not pieces or any(parse_number(piece) is None for piece in pieces):
            out.append(text)
            continue
        for piece, (a, b) in zip(pieces, runs):
            out.append(_Text(piece, (a, text.box[1], b, text.box[3]), text.confidence))
    return out


def _evenly(text: _Text, tokens: list[str], image: np.ndarray) -> list[_Text]:
    """Tick labels printed so close that their ink touches, read as one run: where their values step
    evenly (a linear axis's ticks do), they stand evenly spaced between the first and the last,
    whose centres are half their width in from the run's ends. Empty where that does not hold."""
    numbers = [parse_number(token) for token in tokens]
    if len(tokens) < 3 or any(n is None for n in numbers):
        return []
    steps = np.diff([n.value for n in numbers])
    if steps[0] == 0 or not np.allclose(steps, steps[0], rtol=1e-6):
        return []
    glyphs = _ink_runs(image, text.box, 1)
    if len(glyphs) < 4:
        return []
    left, right = glyphs[0][0], glyphs[-1][1]
    pitch = float(np.median(np.diff([a for a, _ in glyphs])))

    def width(token: str) -> float:
        return sum(_WEIGHT.get(c, 1.0) for c in token) * pitch

    first, last = left + width(tokens[0]) / 2, right - width(tokens[-1]) / 2
    if last <= first:
        return []
    out = []
    for k, token in enumerate(tokens):
        centre = first + (last - first) * k / (len(tokens) - 1)
        half = width(token) / 2
        out.append(_Text(token, (int(round(centre - half)), text.box[1], int(round(centre + half)), text.box[3]),
                         text.confidence))
    return out


def _tokens(text: str) -> list[str]:
    """Numbers run together, cut where the printing makes it plain: at spaces, before a currency
    sign, after a percent sign."""
    if " " in text.strip():
        return text.split()
    if re.search(r"[$€£¥]", text):
        return [t for t in re.split(r"(?=[-\u2212]?[$€£¥])", text) if t]
    if "%" in text[:-1]:
        return [t for t in re.split(r"(?<=%)", text) if t]
    return [text]


def _share(text: str, widths: list[int]) -> list[str] | None:
    """``text`` cut into pieces whose character widths match the ink ``widths``, else None. Each
    piece's ink is a little narrower than its characters' advance (the side bearings): a few
    such losses are tried."""
    weights = [_WEIGHT.get(c, 1.0) for c in text]
    for loss in (0.0, 0.1, 0.2, 0.3):
        per = sum(widths) / max(1e-9, sum(weights) - loss * len(widths))
        prefix = np.cumsum([0.0, *weights]) * per
        pieces, start, used = [], 0, 0.0
        for width in widths[:-1]:
            used += width + loss * per
            index = min(range(start + 1, len(text)), key=lambda i: abs(prefix[i] - used), default=None)
            if index is None or abs(prefix[index] - used) > 0.35 * per:
                break
            pieces.append(text[start:index])
            start = index
        else:
            pieces.append(text[start:])
            if all(pieces):
                return pieces
    return None


def _word_cuts(raw: str) -> list[int]:
    """Where one word may end and the next begin: a space, a capital after a small letter or a digit."""
    return [i for i in range(1, len(raw)) if raw[i] != " " and (raw[i - 1] == " " or (
        raw[i].isupper() and (raw[i - 1].islower() or raw[i - 1].isdigit())))]


def _covers(text: _Text, centres: list[float], slot: float) -> int:
    return sum(text.box[0] + 0.5 * slot <= c <= text.box[2] - 0.5 * slot for c in centres)


def _split_labels(text: _Text, centres: list[float], slot: float, image: np.ndarray) -> list[tuple[int, _Text]]:
    """A category-label run the engine merged across several bars ("OsloLemonTue") cut at its word
    boundaries (spaces, a capital after a small letter, letters after digits), one piece per bar.
    Empty when the boundaries cannot be matched to the bars."""
    covered = [i for i, c in enumerate(centres) if text.box[0] - 0.25 * slot <= c <= text.box[2] + 0.25 * slot]
    if len(covered) < 2:
        return []
    raw = text.text
    cuts = _word_cuts(raw)
    # How wide each bar's share of the ink is: the ink between the midpoints of its neighbours.
    runs = _ink_runs(image, text.box, 1)
    bounds = [-math.inf] + [(centres[a] + centres[b]) / 2 for a, b in zip(covered, covered[1:])] + [math.inf]
    widths = []
    for k in range(len(covered)):
        inside = [(max(a, bounds[k]), min(b, bounds[k + 1])) for a, b in runs]
        widths.append(sum(max(0.0, b - a) for a, b in inside))
    if min(widths) <= 0:
        return []
    letters = len(raw.replace(" ", ""))
    total = sum(widths)
    # Where each bar's share of the letters ends, if letters were all as wide.
    ends = [0.0, *(np.cumsum(widths) / total * letters)]

    def position(cut: int) -> int:
        return len(raw[:cut].replace(" ", ""))

    chosen: list[int] | None = None
    if len(cuts) == len(covered) - 1:
        chosen = cuts
    elif len(cuts) >= len(covered):
        chosen = []
        for end in ends[1:-1]:
            options = [c for c in cuts if not chosen or c > chosen[-1]]
            nearest = min(options, key=lambda c: abs(position(c) - end), default=None)
            if nearest is None or abs(position(nearest) - end) > max(2.0, 0.45 * letters / len(covered)):
                chosen = None
                break
            chosen.append(nearest)

    def piece_box(k: int) -> Box:
        return (int(max(text.box[0], bounds[k])), text.box[1], int(min(text.box[2], bounds[k + 1])), text.box[3])

    if chosen is not None:
        pieces = [raw[a:b].strip() for a, b in zip([0, *chosen], [*chosen, len(raw)])]
        if all(pieces):
            return [(index, _Text(piece, piece_box(k), text.confidence))
                    for k, (index, piece) in enumerate(zip(covered, pieces))]
    # Some words misread (two labels run into one): each word that fills one bar's share of the
    # letters, and no other's, is that bar's label; the rest stay unread.
    out: list[tuple[int, _Text]] = []
    taken: set[int] = set()
    for a, b in zip([0, *cuts], [*cuts, len(raw)]):
        word, start, stop = raw[a:b].strip(), position(a), position(b)
        if len(word) < 2:
            continue
        shares = [max(0.0, min(stop, ends[k + 1]) - max(start, ends[k])) for k in range(len(covered))]
        k = int(np.argmax(shares))
        if k not in taken and shares[k] >= 0.8 * (stop - start) and shares[k] >= 0.6 * (ends[k + 1] - ends[k]):
            taken.add(k)
            out.append((covered[k], _Text(word, piece_box(k), text.confidence)))
    return out


@dataclass
class _Rect:
    left: int
    top: int
    right: int  # exclusive
    bottom: int  # exclusive
    area: int
    rgb: tuple[int, int, int]
    group: int  # the colour cluster it was segmented from

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def box(self) -> Box:
        return (self.left, self.top, self.right, self.bottom)

    @property
    def fill(self) -> float:
        return self.area / max(1, self.width * self.height)


def _rgb_array(picture: Image.Image) -> np.ndarray:
    if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
        white = Image.new("RGBA", picture.size, (255, 255, 255, 255))
        picture = Image.alpha_composite(white, picture.convert("RGBA"))
    return np.asarray(picture.convert("RGB"), dtype=np.uint8)


def _mode_colour(pixels: np.ndarray) -> np.ndarray:
    packed = (pixels[:, 0].astype(np.int32) << 16) | (pixels[:, 1].astype(np.int32) << 8) | pixels[:, 2]
    values, counts = np.unique(packed, return_counts=True)
    top = int(values[np.argmax(counts)])
    return np.array([(top >> 16) & 255, (top >> 8) & 255, top & 255], dtype=np.int16)


def _near(image: np.ndarray, colour: np.ndarray, tolerance: int) -> np.ndarray:
    """Where every channel of ``image`` is within ``tolerance`` of ``colour``."""
    import cv2

    colour = np.asarray(colour, dtype=np.int16)
    low = np.clip(colour - tolerance, 0, 255).astype(np.uint8)
    high = np.clip(colour + tolerance, 0, 255).astype(np.uint8)
    return cv2.inRange(np.ascontiguousarray(image), low, high) > 0


def _plot_area(image: np.ndarray, background: np.ndarray, texts: list[_Text]) -> tuple[Box | None, Box | None]:
    """The box of the long straight lines and bands that frame a plot (spines, the axes' own
    background patch, gridlines; text blanked out first, so that no title makes a line), and a
    looser box around all of them. None and None where there are none."""
    import cv2

    height, width = image.shape[:2]
    ink = (~_near(image, background, 12)).astype(np.uint8)
    for text in texts:
        left, top, right, bottom = text.box
        ink[max(0, top - 1):bottom + 1, max(0, left - 1):right + 1] = 0
    # Bridge thin gaps (white gridlines across a grey patch) before looking for long runs.
    ink = cv2.morphologyEx(ink, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    rows = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((1, max(8, int(0.3 * width))), np.uint8))
    columns = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((max(8, int(0.3 * height)), 1), np.uint8))
    if not rows.any() and not columns.any():
        return None, None
    lines = rows | columns
    ys, xs = np.nonzero(lines)
    outer = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    inner = list(outer)
    # A tick mark and a tick label the engine missed can carry a spine's run a little across the
    # axis: beyond the other direction's outermost line, where no more than two runs reach the far
    # half (gridlines of a chart with no spines all do), is not plot.
    if rows.any():
        row_ys = np.nonzero(rows.any(axis=1))[0]
        for side, edge in ((3, int(row_ys.max()) + 1), (1, int(row_ys.min()))):
            far = (edge + outer[3]) // 2, (outer[1] + edge + 1) // 2
            band = columns[far[0]:outer[3]] if side == 3 else columns[outer[1]:far[1]]
            if band.size and _groups(band.any(axis=0)) <= 2:
                inner[side] = edge
    if columns.any():
        column_xs = np.nonzero(columns.any(axis=0))[0]
        for side, edge in ((2, int(column_xs.max()) + 1), (0, int(column_xs.min()))):
            far = (edge + outer[2]) // 2, (outer[0] + edge + 1) // 2
            band = rows[:, far[0]:outer[2]] if side == 2 else rows[:, outer[0]:far[1]]
            if band.size and _groups(band.any(axis=1)) <= 2:
                inner[side] = edge
    return tuple(inner), tuple(outer)


def _groups(flags: np.ndarray) -> int:
    """How many runs of True ``flags`` holds."""
    flags = flags.astype(np.int8)
    return int(np.count_nonzero(np.diff(np.concatenate([[0], flags])) == 1))


def _rectangles(image: np.ndarray, region: Box, excluded: list[np.ndarray], texts: list[_Text]) -> list[_Rect]:
    """Solid rectangles of one colour (not a background colour) inside ``region``, pieces split by a
    thin line (a gridline drawn over a bar) joined again."""
    import cv2

    left, top, right, bottom = region
    crop = image[top:bottom, left:right]
    if crop.size == 0:
        return []
    tolerance = 18
    keep = np.ones(crop.shape[:2], dtype=bool)
    for colour in excluded:
        keep &= ~_near(crop, colour, 14)
    pixels = crop[keep]
    min_area = 12
    if len(pixels) < min_area:
        return []
    packed = (pixels[:, 0].astype(np.int32) << 16) | (pixels[:, 1].astype(np.int32) << 8) | pixels[:, 2]
    values, counts = np.unique(packed, return_counts=True)
    order = np.argsort(-counts)
    seeds: list[np.ndarray] = []
    for index in order[:400]:
        if counts[index] < min_area:
            break
        value = int(values[index])
        colour = np.array([(value >> 16) & 255, (value >> 8) & 255, value & 255], dtype=np.int16)
        if all(np.abs(colour - seed).max() > tolerance for seed in seeds):
            seeds.append(colour)
        if len(seeds) >= 32:
            break
    kernel = np.ones((3, 3), np.uint8)
    found: list[_Rect] = []
    for group, seed in enumerate(seeds):
        mask = (_near(crop, seed, tolerance) & keep).astype(np.uint8)
        # Close the thin cuts a gridline drawn over a bar makes, then open away lines and glyphs.
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        if not mask.any():
            continue
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
        pieces = []
        for label in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[label])
            if w < 3 or h < 3 or area < min_area:
                continue
            pieces.append(_Rect(x + left, y + top, x + w + left, y + h + top, area, (0, 0, 0), group))
        for rect in _join_pieces(pieces, texts):
            if rect.fill < 0.8 or _inside_text(rect, texts):
                continue
            window = crop[rect.top - top:rect.bottom - top, rect.left - left:rect.right - left]
            inside = window[_near(window, seed, tolerance)]
            rect.rgb = tuple(int(v) for v in np.median(inside, axis=0)) if len(inside) else tuple(int(v) for v in seed)
            found.append(rect)
    # Bars do not nest: a rectangle inside another is a piece of it (where a gridline or a label
    # crosses it) or a swatch inside a legend's frame.
    return [r for r in found if not any(o is not r and o.area > r.area and _within(r, o) for o in found)]


def _within(inner: _Rect, outer: _Rect) -> bool:
    width = min(inner.right, outer.right) - max(inner.left, outer.left)
    height = min(inner.bottom, outer.bottom) - max(inner.top, outer.top)
    return width > 0 and height > 0 and width * height >= 0.5 * inner.width * inner.height


def _join_pieces(pieces: list[_Rect], texts: list[_Text]) -> list[_Rect]:
    """Join pieces of one colour that line up across a gap of a few pixels (a bar cut by gridlines)
    or across a text printed over the bar (a value label as wide as the bar)."""

    def bridged(gap: tuple[int, int, int, int]) -> bool:
        left, top, right, bottom = gap
        if min(right - left, bottom - top) <= 4:
            return True
        return any(t.box[0] <= left + 2 and t.box[2] >= right - 2 and t.box[1] <= top + 2 and t.box[3] >= bottom - 2
                   for t in texts)

    pieces = sorted(pieces, key=lambda r: (r.left, r.top))
    joined = True
    while joined:
        joined = False
        for i, a in enumerate(pieces):
            for j in range(i + 1, len(pieces)):
                b = pieces[j]
                upper, lower = (a, b) if a.top <= b.top else (b, a)
                first, second = (a, b) if a.left <= b.left else (b, a)
                # (Pieces cut apart by a text may overlap: the text cuts across them on a slant.)
                stacked = (abs(a.left - b.left) <= 1 and abs(a.right - b.right) <= 1
                           and bridged((a.left, upper.bottom, a.right, max(upper.bottom, lower.top))))
                side = (abs(a.top - b.top) <= 1 and abs(a.bottom - b.bottom) <= 1
                        and bridged((first.right, a.top, max(first.right, second.left), a.bottom)))
                if stacked or side:
                    pieces[i] = _Rect(min(a.left, b.left), min(a.top, b.top), max(a.right, b.right),
                                      max(a.bottom, b.bottom), a.area + b.area, a.rgb, a.group)
                    del pieces[j]
                    joined = True
                    break
            if joined:
                break
    return pieces


def _inside_text(rect: _Rect, texts: list[_Text]) -> bool:
    """Mostly inside a text's box: a glyph of heavy type, not a bar."""
    for text in texts:
        overlap_w = min(rect.right, text.box[2]) - max(rect.left, text.box[0])
        overlap_h = min(rect.bottom, text.box[3]) - max(rect.top, text.box[1])
        if overlap_w > 0 and overlap_h > 0 and overlap_w * overlap_h >= 0.6 * rect.width * rect.height:
            return True
    return False


def _swatch(rect: _Rect, texts: list[_Text]) -> bool:
    """A legend's swatch: a small rectangle with a text just right of it at the same height."""
    if rect.width > 60 or rect.height > 30:
        return False
    for text in texts:
        gap = text.box[0] - rect.right
        if -2 <= gap <= max(12, rect.width) and text.box[1] - 4 <= (rect.top + rect.bottom) / 2 <= text.box[3] + 4:
            return True
    return False


# ----------------------------------------------------------------------------------------------
# Bars


@dataclass
class _Layout:
    orientation: Orientation
    bars: list[_Rect]  # in reading order
    baseline: float
    others: list[_Rect]  # rectangles of the bars' thickness off the baseline


def _layout(rects: list[_Rect], orientation: Orientation) -> _Layout | None:
    """The largest set of rectangles of one thickness standing on one baseline in ``orientation``."""
    if not rects:
        return None
    vertical = orientation == "vertical"

    def thickness(r: _Rect) -> int:
        return r.width if vertical else r.height

    def edges(r: _Rect) -> tuple[int, int]:  # the two ends along the value axis
        return (r.bottom, r.top) if vertical else (r.left, r.right)

    best: tuple[int, int, int] | None = None  # how many bars, their area, the baseline (signed)
    best_members: list[_Rect] = []
    for size in sorted({thickness(r) for r in rects}):
        same = [r for r in rects if abs(thickness(r) - size) <= 2]
        for candidate in sorted({e for r in same for e in edges(r)}):
            members = [r for r in same if any(abs(e - candidate) <= 2 for e in edges(r))]
            members = _disjoint(members, vertical)
            # Bars all of one length share both ends: standing on the bottom (the left) wins.
            score = (len(members), sum(r.area for r in members), candidate if vertical else -candidate)
            if best is None or score > best:
                best, best_members = score, members
    if best is None or not best_members:
        return None
    bars = sorted(best_members, key=lambda r: r.left if vertical else r.top)
    size = float(np.median([thickness(r) for r in bars]))
    others = [r for r in rects if r not in bars and abs(thickness(r) - size) <= 2]
    return _Layout(orientation, bars, float(best[2] if vertical else -best[2]), others)


def _disjoint(members: list[_Rect], vertical: bool) -> list[_Rect]:
    """Members that do not overlap across the bars' direction (the larger kept)."""
    kept: list[_Rect] = []
    for rect in sorted(members, key=lambda r: -r.area):
        span = (rect.left, rect.right) if vertical else (rect.top, rect.bottom)
        if all(min(span[1], (o.right if vertical else o.bottom)) <= max(span[0], (o.left if vertical else o.top))
               for o in kept):
            kept.append(rect)
    return kept


def _stacked_or_floating(layout: _Layout, texts: list[_Text]) -> bool:
    """Rectangles of the bars' thickness off the baseline: stacked segments or floating bars (not a
    legend's swatch, nor a fringe of a bar's own colour along its end, as JPEG leaves)."""
    return any(not _swatch(other, texts) and not any(_fringe(other, bar) for bar in layout.bars)
               for other in layout.others)


def _fringe(other: _Rect, bar: _Rect) -> bool:
    touching = (min(other.right, bar.right) - max(other.left, bar.left) >= -1
                and min(other.bottom, bar.bottom) - max(other.top, bar.top) >= -1)
    return touching and max(abs(a - b) for a, b in zip(other.rgb, bar.rgb)) <= 40


def _grouped(layout: _Layout) -> bool:
    """Bars of several colours in repeating clusters: a grouped bar chart."""
    bars = layout.bars
    groups = [bar.group for bar in bars]
    kinds = len(set(groups))
    if kinds < 2 or len(bars) < 2:
        return False
    vertical = layout.orientation == "vertical"
    gaps = [(b.left - a.right) if vertical else (b.top - a.bottom) for a, b in zip(bars, bars[1:])]
    touching = [gap <= 2 and a.group != b.group for gap, a, b in zip(gaps, bars, bars[1:])]
    if any(touching) and max(gaps) > 4:
        return True
    periodic = len(bars) >= 2 * kinds and all(groups[i] == groups[i % kinds] for i in range(len(bars)))
    if periodic:
        inner = [g for i, g in enumerate(gaps) if (i + 1) % kinds]
        between = [g for i, g in enumerate(gaps) if not (i + 1) % kinds]
        return bool(inner and between and np.mean(between) > np.mean(inner) + 3)
    return False


# ----------------------------------------------------------------------------------------------
# The axis


def _tick_candidates(texts: list[_Text], plot: Box, orientation: Orientation) -> list[list[_Text]]:
    """Groups of numeric texts lined up beside the value axis, nearest side first: left of the plot
    (then right) for vertical bars, below it (then above) for horizontal ones."""
    left, top, right, bottom = plot
    numeric = [t for t in texts if t.number is not None and not t.rotated]
    groups: list[list[_Text]] = []
    if orientation == "vertical":
        sides = [
            ([t for t in numeric if t.box[2] <= left + 3 and top - t.height <= t.cy <= bottom + t.height],
             lambda t: t.box[2]),
            ([t for t in numeric if t.box[0] >= right - 3 and top - t.height <= t.cy <= bottom + t.height],
             lambda t: t.box[0]),
        ]
    else:
        sides = [
            ([t for t in numeric if t.box[1] >= bottom - 3 and left - t.width <= t.cx <= right + t.width],
             lambda t: t.cy),
            ([t for t in numeric if t.box[3] <= top + 3 and left - t.width <= t.cx <= right + t.width],
             lambda t: t.cy),
        ]
    for found, key in sides:
        clusters: list[list[_Text]] = []
        for text in sorted(found, key=key):
            tolerance = max(6.0, 0.6 * text.height)
            if clusters and abs(key(text) - key(clusters[-1][-1])) <= tolerance:
                clusters[-1].append(text)
            else:
                clusters.append([text])
        clusters = [c for c in clusters if len(c) >= 2]
        clusters.sort(key=len, reverse=True)
        groups.extend(clusters[:1])
    return groups


def _offset(texts: list[_Text], plot: Box, orientation: Orientation) -> tuple[float, float, _Text | None]:
    """matplotlib's offset text near the axis's far end: ``1e6`` (a factor) or ``+2.024e3`` (a sum)."""
    left, top, right, bottom = plot
    for text in texts:
        match = _OFFSET.fullmatch(text.text.replace(" ", "").replace("\u2212", "-").replace("x", "").replace("×", ""))
        if not match:
            continue
        near = (text.box[3] <= top + 4 and text.box[0] <= left + 0.4 * (right - left)) if orientation == "vertical" \
            else (text.box[1] >= bottom - 4 and text.box[2] >= right - 0.4 * (right - left))
        if not near:
            continue
        amount = float(match["mantissa"]) * 10.0 ** int(match["exponent"])
        if match["sign"]:
            return 1.0, (-amount if match["sign"] == "-" else amount), text
        return amount, 0.0, text
    return 1.0, 0.0, None


def _fit_axis(texts: list[_Text], plot: Box, orientation: Orientation,
              image: np.ndarray) -> tuple[AxisFit | None, str, list[_Text]]:
    """The axis fitted over the best group of tick labels, else None and why."""
    vertical = orientation == "vertical"
    extent = (plot[3] - plot[1]) if vertical else (plot[2] - plot[0])
    factor, shift, offset_text = _offset(texts, plot, orientation)
    reasons: list[str] = []
    for group in _tick_candidates(texts, plot, orientation):
        if sum(_superscript(t, image) for t in group) >= 2:
            reasons.append("a log axis is not supported")
            continue
        numbers = [t.number for t in group]
        pixels = np.array([t.cy if vertical else t.cx for t in group], dtype=float)
        values = np.array([n.value * factor + shift for n in numbers])
        if len(set(values.tolist())) < 2 or np.ptp(pixels) < 5:
            continue
        chosen = np.arange(len(group))
        slope, intercept, worst = _least_squares(pixels, values, extent)
        if len(group) >= 4:
            # One misread tick ("1" for "0") among several that line up is dropped, never more:
            # where without it the others fit within 3% of a tick step and it is off by over 5%.
            step = float(np.median(np.abs(np.diff(values[np.argsort(pixels)]))))
            trials = []
            for drop in range(len(group)):
                rest = np.delete(np.arange(len(group)), drop)
                s, i, _ = _least_squares(pixels[rest], values[rest], extent)
                fit_rest = float(np.abs(values[rest] - (s * pixels[rest] + i)).max())
                trials.append((fit_rest, abs(s * pixels[drop] + i - values[drop]), s, i, rest))
            fit_rest, miss, s, i, rest = min(trials, key=lambda trial: trial[0])
            if step and fit_rest <= 0.03 * step and miss > 0.05 * step:
                slope, intercept, chosen = s, i, rest
                worst = fit_rest / (abs(s) * extent)
        if worst > MAX_RESIDUAL:
            if _logarithmic(pixels, values, extent):
                reasons.append("a log axis is not supported")
            else:
                reasons.append(f"the tick labels do not fit a linear axis (largest residual {100 * worst:.0f}% of "
                               f"the span)")
            continue
        used = [group[i] for i in chosen]
        ticks = tuple(TickLabel(t.text, t.box, float(p), float(v))
                      for t, p, v in zip(used, pixels[chosen], values[chosen]))
        style = [t.number for t in used]
        decimals = max(n.decimals for n in style)
        unit = max(n.unit for n in style)
        if factor != 1.0:
            # "0.5" under "1e6" is 500000: its precision is 1e5 (negative decimals round left of the point).
            decimals, unit = decimals - int(round(math.log10(factor))), 1.0
        fit = AxisFit(slope=float(slope), intercept=float(intercept), ticks=ticks, max_residual=float(worst),
                      span=float(abs(slope) * extent), decimals=decimals,
                      prefix=next((n.prefix for n in style if n.prefix), ""),
                      suffix=next((n.suffix for n in style if n.suffix), "") if unit == 1.0 or factor == 1.0 else "",
                      unit=unit, thousands=any(n.thousands for n in style))
        return fit, "", used + ([offset_text] if offset_text else [])
    return None, (reasons[0] if reasons else "no axis with at least two numeric tick labels could be calibrated"), []


def _superscript(text: _Text, image: np.ndarray) -> bool:
    """A power of ten as a log axis prints it (10 and a raised exponent), which the engine reads as
    one number ("101" for 10 to the 1)."""
    if not re.fullmatch(r"10[-\u2212]?\d{1,2}", text.text.replace(" ", "")):
        return False
    left, top, right, bottom = text.box
    crop = image[max(0, top):bottom, max(0, left):right].astype(np.int16)
    if crop.size == 0:
        return False
    edge = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]]).astype(np.uint8)
    difference = np.abs(crop - _mode_colour(edge)).max(axis=2)
    ink = difference > 0.4 * max(1, difference.max())
    columns = np.nonzero(ink.any(axis=0))[0]
    glyphs = np.split(columns, np.nonzero(np.diff(columns) > 1)[0] + 1)
    if len(glyphs) < 3:
        return False
    rows_ten = np.nonzero(ink[:, np.concatenate(glyphs[:2])].any(axis=1))[0]
    rows_power = np.nonzero(ink[:, np.concatenate(glyphs[2:])].any(axis=1))[0]
    ten = rows_ten.max() - rows_ten.min() + 1
    return bool(rows_power.max() < rows_ten.max() - 0.25 * ten)


def _least_squares(pixels: np.ndarray, values: np.ndarray, extent: float) -> tuple[float, float, float]:
    slope, intercept = np.polyfit(pixels, values, 1)
    span = abs(slope) * extent
    if span == 0:
        return float(slope), float(intercept), math.inf
    residual = np.abs(values - (slope * pixels + intercept)).max() / span
    return float(slope), float(intercept), float(residual)


def _logarithmic(pixels: np.ndarray, values: np.ndarray, extent: float) -> bool:
    if len(values) < 3 or (values <= 0).any():
        return False
    _, _, worst = _least_squares(pixels, np.log10(values), extent)
    return worst <= MAX_RESIDUAL


# ----------------------------------------------------------------------------------------------
# The reader


def read_bar_chart(picture: Image.Image, page: OcrPage) -> ChartReading | Abstention:
    """Read a bar chart: its title, its bars (category labels, colours, values) and its value axis.

    Each bar's value is read against the axis calibrated from the numeric tick labels, and from
    the value label printed at its end where there is one; the two are independent checks of
    each other (:attr:`BarReading.agree`).

    Args:
        picture: the chart, a PIL image (any mode; transparency is put on white).
        page: the OCR page read off ``picture`` by any engine (boxes in its pixels).

    Returns:
        A :class:`ChartReading`, or an :class:`Abstention` saying why the picture cannot be read
        as a single-series bar chart (no bars, stacked, floating or grouped bars, no axis to
        calibrate, tick labels off a straight line, a log axis).

    Raises:
        InputError: ``picture`` is not a PIL image, or ``page`` is not an OCR page of its size.
        ConfigError: OpenCV (``opencv-python``) is not installed.
    """
    if not isinstance(picture, Image.Image):
        raise InputError(f"read_bar_chart reads a PIL image, got {picture!r:.80}")
    if not isinstance(page, OcrPage):
        raise InputError(f"read_bar_chart needs the picture's OcrPage, got {page!r:.80}")
    if tuple(page.size) != tuple(picture.size):
        raise InputError(f"the OCR page is of a {page.size[0]}x{page.size[1]} picture, not of this "
                         f"{picture.size[0]}x{picture.size[1]} one")
    try:
        import cv2  # noqa: F401
    except ImportError as exc:  # pragma: no cover - opencv comes with rapidocr
        raise ConfigError("the chart reader needs OpenCV: pip install opencv-python-headless") from exc

    def abstain(reason: str) -> Abstention:
        return Abstention(reader="chart", reason=reason)

    image = _rgb_array(picture)
    height, width = image.shape[:2]
    if width < 16 or height < 16:
        return abstain("no bars found (the picture is too small)")
    if _flat_share(image) < 0.4:
        return abstain("no bars found (the picture is not drawn in a few flat colours, as charts are)")
    texts = _split_numbers(_texts(page), image)
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    background = _mode_colour(border)
    plot, outer = _plot_area(image, background, texts)
    excluded = [background]
    if plot is not None:
        left, top, right, bottom = plot
        inset = 3
        bands = [image[top + inset:top + inset + 4, left + inset:right - inset].reshape(-1, 3),
                 image[top + inset:bottom - inset, right - inset - 4:right - inset].reshape(-1, 3)]
        band = np.concatenate([b for b in bands if b.size]) if any(b.size for b in bands) else np.empty((0, 3))
        if len(band):
            patch = _mode_colour(band.astype(np.uint8))
            if np.abs(patch - background).max() > 6:
                excluded.append(patch)
    region = (0, 0, width, height) if outer is None else (
        max(0, outer[0] - 2), max(0, outer[1] - 2), min(width, outer[2] + 2), min(height, outer[3] + 2))
    layout = _find_layout(image, region, excluded, texts)
    if isinstance(layout, str) and len(excluded) > 1:
        # What looked like the plot's own background may be its bars (bars reaching its edges).
        layout = _find_layout(image, region, excluded[:1], texts)
    if isinstance(layout, str):
        return abstain(layout)
    vertical = layout.orientation == "vertical"
    bars = layout.bars
    spread = (min(r.left for r in bars), min(r.top for r in bars), max(r.right for r in bars),
              max(r.bottom for r in bars))
    plot = spread if plot is None else (min(plot[0], spread[0]), min(plot[1], spread[1]), max(plot[2], spread[2]),
                                        max(plot[3], spread[3]))
    axis, why, used = _fit_axis(texts, plot, layout.orientation, image)
    used_ids = {id(t) for t in used}
    free = [t for t in texts if id(t) not in used_ids]
    labels = _value_labels(bars, layout, free)
    used_ids |= {id(t) for t in labels.values()}
    free = [t for t in texts if id(t) not in used_ids]
    if axis is None and len(labels) < len(bars):
        return abstain(why)
    categories = _category_labels(bars, layout, plot, free, image)
    used_ids |= {id(t) for t in categories.values()}
    title = _title([t for t in texts if id(t) not in used_ids], plot)
    precision = (abs(axis.slope) * TIE_PIXELS) if axis is not None else 0.0
    # Which way along the axis values grow: up and right unless the axis says otherwise.
    growing = 1.0
    if axis is not None and (axis.slope > 0) == vertical:  # an inverted axis
        growing = -1.0
    readings = []
    for index, bar in enumerate(bars):
        end = _bar_end(bar, layout)
        axis_value = axis.value_at(end) if axis is not None else None
        printed = labels.get(index)
        label_value = None
        if printed is not None:
            number = printed.number
            label_value = number.value if number is not None else None
        agree = None
        if axis_value is not None and label_value is not None:
            agree = abs(axis_value - label_value) <= AGREEMENT * axis.span
        category = categories.get(index)
        readings.append(BarReading(
            label=category.text if category else None, label_box=category.box if category else None,
            box=bar.box, colour=colour_name(bar.rgb), rgb=bar.rgb, axis_value=axis_value, label_value=label_value,
            label_text=printed.text if printed else None, value_label_box=printed.box if printed else None,
            value=label_value if label_value is not None else axis_value,
            value_text=(printed.text if printed is not None and label_value is not None
                        else axis.format(axis_value) if axis_value is not None else None),
            agree=agree, length_px=growing * ((layout.baseline - end) if vertical else (end - layout.baseline))))
    return ChartReading(title=title.text if title else None, title_box=title.box if title else None,
                        orientation=layout.orientation, plot_area=plot, bars=tuple(readings), axis=axis,
                        precision=precision, size=(width, height))


def _flat_share(image: np.ndarray) -> float:
    """The share of the picture's pixels in its 32 commonest colours (at 5 bits a channel): most of
    a chart's (even a JPEG's), next to none of a photograph's."""
    quantised = (image >> 3).astype(np.int32)
    counts = np.bincount(((quantised[..., 0] << 10) | (quantised[..., 1] << 5) | quantised[..., 2]).ravel(),
                         minlength=1 << 15)
    return float(np.sort(counts)[-32:].sum() / max(1, counts.sum()))


def _find_layout(image: np.ndarray, region: Box, excluded: list[np.ndarray], texts: list[_Text]) -> _Layout | str:
    """The bars in ``region`` (colours ``excluded`` are background), else why there are none."""
    height, width = image.shape[:2]
    rects = _rectangles(image, region, excluded, texts)
    rects = [r for r in rects if r.width < 0.98 * width and r.height < 0.98 * height]
    if not rects:
        return "no bars found"
    rects = sorted(rects, key=lambda r: -r.area)[:120]
    layouts = [layout for layout in (_layout(rects, "vertical"), _layout(rects, "horizontal")) if layout]
    layouts.sort(key=lambda lay: (len(lay.bars), sum(r.area for r in lay.bars)), reverse=True)
    layout = layouts[0]
    if len(layout.bars) < 2:
        return "no bars found (fewer than two bar-shaped rectangles on a common baseline)"
    if _stacked_or_floating(layout, texts):
        return "bars are not on a common baseline (stacked or floating bars are not supported)"
    if _grouped(layout):
        return "grouped bars (several colours per category) are not supported"
    return layout


def _bar_end(bar: _Rect, layout: _Layout) -> float:
    """The pixel coordinate of the bar's end away from the baseline."""
    if layout.orientation == "vertical":
        return float(bar.top) if abs(bar.bottom - layout.baseline) <= 2 else float(bar.bottom)
    return float(bar.right) if abs(bar.left - layout.baseline) <= 2 else float(bar.left)


def _value_labels(bars: list[_Rect], layout: _Layout, texts: list[_Text]) -> dict[int, _Text]:
    """A numeric text printed just beyond each bar's end, or inside the bar."""
    vertical = layout.orientation == "vertical"
    found: dict[int, _Text] = {}
    taken: set[int] = set()
    for index, bar in enumerate(bars):
        end = _bar_end(bar, layout)
        best, best_distance = None, math.inf
        for text in texts:
            if text.number is None or text.rotated or id(text) in taken:
                continue
            if vertical:
                if not bar.left - 3 <= text.cx <= bar.right + 3:
                    continue
                inside = bar.top - 2 <= text.cy <= bar.bottom + 2
                reach = max(20.0, 2.5 * text.height)
                # (An engine's box has a margin: it may reach a few pixels into the bar.)
                slack = max(4.0, 0.35 * text.height)
                if end == bar.top:
                    beyond = end - reach <= text.box[3] <= end + slack
                else:
                    beyond = end - slack <= text.box[1] <= end + reach
                distance = abs(text.cy - end)
            else:
                if not bar.top - 3 <= text.cy <= bar.bottom + 3:
                    continue
                inside = bar.left - 2 <= text.cx <= bar.right + 2
                reach = max(20.0, 1.5 * text.height)
                slack = max(4.0, 0.35 * text.height)
                if end == bar.right:
                    beyond = end - slack <= text.box[0] <= end + reach
                else:
                    beyond = end - reach <= text.box[2] <= end + slack
                distance = abs(text.cx - end)
            if (inside or beyond) and distance < best_distance:
                best, best_distance = text, distance
        if best is not None:
            found[index] = best
            taken.add(id(best))
    return found


def _category_labels(bars: list[_Rect], layout: _Layout, plot: Box, texts: list[_Text],
                     image: np.ndarray) -> dict[int, _Text]:
    """The text under each vertical bar's centre (left of each horizontal bar's centre), outside the
    plot area, nearest to it."""
    vertical = layout.orientation == "vertical"
    centres = [((b.left + b.right) / 2) if vertical else ((b.top + b.bottom) / 2) for b in bars]
    steps = np.diff(centres) if len(centres) > 1 else np.array([bars[0].width if vertical else bars[0].height])
    slot = float(np.min(steps)) / 2 if len(steps) else 20.0
    if vertical:
        outside = [t for t in texts if t.box[1] >= plot[3] - 3 and not t.rotated]
    else:
        outside = [t for t in texts if t.box[2] <= plot[0] + 3 and not t.rotated]
    if not outside:
        return {}
    if vertical:
        # The engine may read the labels under several bars as one run: cut it, one piece per bar.
        for text in list(outside):
            pieces = _split_labels(text, centres, slot * 2, image)
            if pieces:
                outside.remove(text)
                outside.extend(piece for _, piece in pieces)
            elif _covers(text, centres, slot) >= 2 and _word_cuts(text.text):
                outside.remove(text)  # several labels read as one that cannot be cut: none of them
        if not outside:
            return {}
    # The band of labels nearest the plot: an axis title further out is not a label.
    nearest = min((t.box[1] - plot[3]) if vertical else (plot[0] - t.box[2]) for t in outside)
    line = float(np.median([t.height for t in outside]))
    band = [t for t in outside if ((t.box[1] - plot[3]) if vertical else (plot[0] - t.box[2])) <= nearest + 1.5 * line]
    found: dict[int, _Text] = {}
    owners: dict[int, tuple[int, float]] = {}
    for index, centre in enumerate(centres):
        best, best_distance = None, math.inf
        for text in band:
            middle = text.cx if vertical else text.cy
            distance = abs(middle - centre)
            if distance <= slot and distance < best_distance:
                best, best_distance = text, distance
        if best is not None:
            previous = owners.get(id(best))
            if previous is not None and previous[1] <= best_distance:
                continue
            if previous is not None:
                found.pop(previous[0], None)
            owners[id(best)] = (index, best_distance)
            found[index] = best
    return found


def _title(texts: list[_Text], plot: Box) -> _Text | None:
    """The largest text above the plot area (ties go to the topmost): not a number, not rotated."""
    above = [t for t in texts if t.box[3] <= plot[1] + 2 and not t.rotated and t.number is None
             and _OFFSET.fullmatch(t.text.replace(" ", "")) is None and any(c.isalpha() for c in t.text)]
    if not above:
        return None
    tallest = max(t.height for t in above)
    return min((t for t in above if t.height >= 0.85 * tallest), key=lambda t: (t.box[1], t.box[0]))
