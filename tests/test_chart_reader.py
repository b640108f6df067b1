"""The bar-chart reader (redgraph.readers.charts) on charts matplotlib draws, read by RapidOCR."""

from __future__ import annotations

import io
import math
import re

import pytest
from PIL import Image

pytest.importorskip("cv2")
pytest.importorskip("matplotlib")
rapidocr = pytest.importorskip("rapidocr_onnxruntime")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from redgraph.errors import InputError  # noqa: E402
from redgraph.models.ocr import OcrLine, OcrPage, OcrWord  # noqa: E402
from redgraph.readers.charts import (  # noqa: E402
    Abstention,
    ChartReading,
    colour_name,
    parse_number,
    read_bar_chart,
)


@pytest.fixture(scope="module")
def ocr():
    """Pictures to OcrPages through RapidOCR: one word per text run, as RapidOCR boxes them."""
    # One thread: on a shared two-core machine it costs less time than onnxruntime's default pool.
    engine = rapidocr.RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)

    def read(picture: Image.Image) -> OcrPage:
        found, _ = engine(np.ascontiguousarray(np.asarray(picture.convert("RGB"))[:, :, ::-1]))  # it reads BGR
        lines = []
        for quad, text, score in found or []:
            xs, ys = [p[0] for p in quad], [p[1] for p in quad]
            box = (math.floor(min(xs)), math.floor(min(ys)), math.ceil(max(xs)), math.ceil(max(ys)))
            lines.append(OcrLine((OcrWord(text, box, float(score)),)))
        return OcrPage(picture.size, tuple(sorted(lines, key=lambda line: (line.box[1], line.box[0]))))

    return read


def render(draw, style: str = "default", size=(4.2, 3.0), dpi: int = 100, layout: bool = False):
    """The chart ``draw`` draws, as a picture; with ``layout``, also an OcrPage of its texts where
    matplotlib put them (no OCR: for tests that the shapes decide, or that need exact boxes)."""
    with plt.style.context(style):
        figure, axes = plt.subplots(figsize=size, dpi=dpi)
        draw(axes)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        page = layout_page(figure) if layout else None
        plt.close(figure)
    buffer.seek(0)
    picture = Image.open(buffer).convert("RGB")
    return (picture, OcrPage(picture.size, page)) if layout else picture


def layout_page(figure) -> tuple[OcrLine, ...]:
    from matplotlib.text import Text

    renderer = figure.canvas.get_renderer()
    height = figure.canvas.get_width_height()[1]
    lines = []
    for artist in figure.findobj(Text):
        # A log axis's "10^1", as an OCR engine reads it: "101".
        text = re.sub(r"\$\\mathdefault\{10\^\{(.+?)\}\}\$", r"10\1", artist.get_text()).strip()
        if not artist.get_visible() or not text:
            continue
        x0, y0, x1, y1 = artist.get_window_extent(renderer).extents
        if x1 <= 0 or y1 <= 0 or x0 >= figure.canvas.get_width_height()[0] or y0 >= height:
            continue
        box = (math.floor(x0), math.floor(height - y1), math.ceil(x1), math.ceil(height - y0))
        lines.append(OcrLine((OcrWord(text, box, 1.0),)))
    return tuple(lines)


def read(picture, ocr) -> ChartReading:
    reading = read_bar_chart(picture, ocr(picture))
    assert isinstance(reading, ChartReading), reading
    return reading


def loose(text: str | None) -> str:
    return (text or "").replace(" ", "").lower()


def test_vertical_bars_default_style(ocr):
    values = {"Q1": 35, "Q2": 52, "Q3": 18, "Q4": 44}

    def draw(axes):
        axes.bar(list(values), list(values.values()))
        axes.set_title("Sales by quarter")
        axes.set_ylabel("Sales ($)")

    reading = read(render(draw), ocr)
    assert reading.orientation == "vertical"
    assert [bar.label for bar in reading.bars] == list(values)
    assert loose(reading.title) == "salesbyquarter"
    for bar, value in zip(reading.bars, values.values()):
        assert abs(bar.value - value) <= 0.05 * reading.axis.span
        assert bar.axis_value == bar.value and bar.label_value is None and bar.agree is None
        assert abs(float(bar.value_text) - value) <= 0.05 * reading.axis.span
        assert bar.colour == "blue"
    assert reading.tallest().label == "Q2" and reading.shortest().label == "Q3"
    assert reading.bar(" q2 ") is reading.bars[1] and reading.bar("Q9") is None
    assert len(reading.axis.ticks) >= 2 and reading.axis.max_residual < 0.03
    left, top, right, bottom = reading.bars[0].box
    assert reading.plot_area[1] <= top < bottom <= reading.plot_area[3] + 1


def test_horizontal_bars_ggplot_printed_values_and_colours(ocr):
    names = ["North", "South", "East", "West"]
    values = [1200, 3400, 2600, 800]
    colours = ["tab:red", "tab:green", "tab:purple", "tab:orange"]

    def draw(axes):
        bars = axes.barh(names, values, color=colours)
        axes.bar_label(bars)
        axes.set_title("Visitors by region")
        axes.set_xlabel("Visitors")

    reading = read(render(draw, "ggplot"), ocr)
    assert reading.orientation == "horizontal"
    # matplotlib draws the first category at the bottom: reading order is top to bottom.
    assert [bar.label for bar in reading.bars] == names[::-1]
    for name, value, colour in zip(names, values, ["red", "green", "purple", "orange"]):
        bar = reading.bar(name)
        assert bar.colour == colour
        assert bar.label_text == str(value) and bar.label_value == value and bar.value == value
        assert abs(bar.axis_value - value) <= 0.05 * reading.axis.span and bar.agree is True
    assert reading.tallest().label == "South" and reading.shortest().label == "West"
    assert loose(reading.title) == "visitorsbyregion"


def test_vertical_bars_seaborn_decimals_printed_and_a_tie(ocr):
    names = ["Mon", "Tue", "Wed", "Thu", "Fri"]
    values = [2.5, 4.25, 1.75, 4.25, 0.5]

    def draw(axes):
        axes.bar_label(axes.bar(names, values))
        axes.set_title("Rainfall")

    reading = read(render(draw, "seaborn-v0_8"), ocr)
    assert [bar.label for bar in reading.bars] == names
    assert {bar.colour for bar in reading.bars} == {"blue"}
    for bar, value in zip(reading.bars, values):
        assert abs(bar.axis_value - value) <= 0.05 * reading.axis.span
        if bar.label_value is not None:  # a printed label the OCR read
            assert bar.label_value == value and bar.agree is True
    assert reading.tallest() is None  # Tue and Thu tie
    assert reading.shortest().label == "Fri"
    assert loose(reading.title) == "rainfall"


def test_negative_values_and_an_offset_multiplier():
    names = ["Alpha", "Beta", "Gamma", "Delta"]
    values = [1.2e6, -0.7e6, 3.0e6, 1.8e6]

    def draw(axes):
        axes.bar(names, values, color="tab:pink")
        axes.set_title("Profit")

    reading = read_bar_chart(*render(draw, layout=True))
    assert isinstance(reading, ChartReading), reading
    assert [bar.label for bar in reading.bars] == names
    for bar, value in zip(reading.bars, values):  # the ticks read "0.5" ... "3.0" under "1e6"
        assert abs(bar.value - value) <= 0.05 * reading.axis.span and bar.colour == "pink"
    assert reading.bar("beta").length_px < 0 < reading.bar("alpha").length_px
    assert reading.shortest().label == "Beta" and reading.tallest().label == "Gamma"
    assert reading.bar("gamma").value_text == "3000000"


def test_abstains_on_a_log_axis():
    def draw(axes):
        axes.bar(["a", "b", "c"], [10, 1000, 50])
        axes.set_yscale("log")

    reading = read_bar_chart(*render(draw, layout=True))
    assert isinstance(reading, Abstention) and reading.reason == "a log axis is not supported"


def no_text(picture: Image.Image) -> OcrPage:
    """An empty page: where the shapes alone decide, the test spares the OCR's time."""
    return OcrPage(picture.size, ())


def test_abstains_on_a_line_chart():
    picture = render(lambda axes: (axes.plot([1, 2, 3, 4], [3, 1, 4, 2]), axes.set_title("Trend")))
    reading = read_bar_chart(picture, no_text(picture))
    assert isinstance(reading, Abstention) and reading.reader == "chart" and "no bars" in reading.reason


def test_abstains_on_stacked_bars():
    def draw(axes):
        axes.bar(["A", "B", "C"], [3, 5, 2], label="one")
        axes.bar(["A", "B", "C"], [2, 1, 4], bottom=[3, 5, 2], label="two")
        axes.legend()

    reading = read_bar_chart(*render(draw, layout=True))
    assert isinstance(reading, Abstention) and "common baseline" in reading.reason


def test_abstains_on_grouped_bars():
    def draw(axes):
        x = np.arange(3)
        axes.bar(x - 0.2, [3, 5, 2], 0.4, label="2023")
        axes.bar(x + 0.2, [2, 1, 4], 0.4, label="2024")
        axes.set_xticks(x, ["A", "B", "C"])
        axes.legend()

    reading = read_bar_chart(*render(draw, layout=True))
    assert isinstance(reading, Abstention) and "grouped" in reading.reason


def test_abstains_on_a_pie_chart():
    picture = render(lambda axes: axes.pie([3, 2, 5], labels=["a", "b", "c"]))
    reading = read_bar_chart(picture, no_text(picture))
    assert isinstance(reading, Abstention)


def test_abstains_without_text(ocr):
    def draw(axes):
        axes.bar(["A", "B", "C"], [3, 5, 2], color="tab:green")
        axes.axis("off")

    picture = render(draw)
    page = ocr(picture)
    assert not page.lines
    reading = read_bar_chart(picture, page)
    assert isinstance(reading, Abstention) and "axis" in reading.reason
    blank = Image.new("RGB", (120, 80), "white")
    assert read_bar_chart(blank, OcrPage(blank.size, ())).reason == "no bars found"


@pytest.mark.parametrize(("colour", "names"), [
    ("tab:blue", {"blue"}), ("tab:orange", {"orange"}), ("tab:green", {"green"}), ("tab:red", {"red"}),
    ("tab:purple", {"purple"}), ("tab:brown", {"brown"}), ("tab:pink", {"pink"}), ("tab:gray", {"grey"}),
    ("tab:olive", {"olive", "green"}), ("tab:cyan", {"cyan", "teal"}), ("black", {"black"}), ("white", {"white"}),
    ("navy", {"blue"}), ("gold", {"yellow"}), ("crimson", {"red"}), ("teal", {"teal", "cyan"}),
    ("skyblue", {"blue"}), ("darkgreen", {"green"}), ("silver", {"grey"}), ("indigo", {"purple"}),
])
def test_colour_names(colour, names):
    from matplotlib.colors import to_rgb

    assert colour_name(tuple(round(255 * c) for c in to_rgb(colour))) in names


def test_tick_numbers():
    assert parse_number("1,000").value == 1000 and parse_number("1,000").thousands
    assert parse_number("2.5").value == 2.5 and parse_number("2.5").decimals == 1
    assert parse_number("\u22125").value == -5  # matplotlib's minus sign
    assert parse_number("$5").prefix == "$" and parse_number("40%").value == 40
    assert parse_number("10k").value == 10000 and parse_number("1.5M").value == 1.5e6
    for text in ("Q1", "abc", "", "-", "1.2.3", "5 apples"):
        assert parse_number(text) is None


def test_bad_input():
    with pytest.raises(InputError, match="not a picture"):
        read_bar_chart("not a picture", OcrPage((1, 1), ()))
    picture = Image.new("RGB", (50, 40), "white")
    with pytest.raises(InputError):
        read_bar_chart(picture, OcrPage((10, 10), ()))
