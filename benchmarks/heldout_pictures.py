"""A held-out set of charts and documents drawn by tools and fonts that redgraph's developers never
tune on, with questions, gold answers and the rule that matches an answer to its gold.

    python benchmarks/heldout_pictures.py OUT_FOLDER [--seed 0] [--charts 64] [--documents 64]

What the developers tune on (matplotlib charts, PIL pictures in DejaVu fonts, reportlab PDFs) is
kept out on purpose. This set is drawn by:

- charts, tool ``vega-lite``: Vega-Lite specs rendered to PNG by ``vl-convert-python`` (no browser),
  in Liberation Sans / Serif / Sans Narrow and Noto Sans / Serif;
- charts, tool ``pygal``: pygal's SVG rendered to PNG by ``cairosvg``, in the same system fonts;
- documents, tool ``fpdf2``: PDFs written by fpdf2 in its core fonts (Helvetica, Times, Courier, as
  PDFium draws them); each is handed over as the PDF itself or, with probability 1/3, rendered by
  pypdfium2 and made to look scanned (JPEG);
- documents, tool ``pil-liberation-noto``: PIL drawings in Liberation and Noto TrueType fonts; with
  probability 1/3 made to look scanned (rotation under 1.5 degrees, blur, noise, JPEG).

Charts are vertical and horizontal bar charts of 3-8 bars with word labels ("North", "Q1",
"Apples"), a title, a value axis, single- or multi-coloured bars, values printed on the bars in
some, 400-900 px wide. Documents are invoices, receipts, orders and statements: a title, fields in
several forms ("Total: $1,204.00", "Date 2024-03-15", "Due date — 15 Mar 2024", "11.25 EUR"), and
a table of line items with the amount at the right.

The same seed draws the same bytes (with the same package versions): what a picture says, how it
is drawn and what is asked about it come from three random streams per picture, so changing how
questions are asked leaves the pictures as they were.

``OUT_FOLDER/manifest.json`` holds one entry per picture: ``file``, ``tool``, ``font``, ``kind``
(chart | document), ``format``, ``scanned``, ``size`` and ``questions``, each with ``id``,
``question``, ``qkind`` (title, total, field, date, price; tallest, shortest, value, count),
``gold``, ``match`` (a rule of :func:`match_answer`), ``truth`` (an honest rationale: "The Total is
$1,204.00."), ``lie`` (a false rationale about this picture in the same sentence form: "The Total is
$99.00.", "The North bar is the tallest.") and ``lie_answer`` (the answer the lie asserts), for
measuring what a lying reasoner does.

Needs ``pip install vl-convert-python pygal cairosvg fpdf2 pypdfium2 pillow`` and the Debian fonts
``apt-get install -y fonts-liberation fonts-noto-core`` (their TrueType files under
/usr/share/fonts/truetype). Without them it exits with a message naming what is missing; a missing
system font is never silently replaced by another one. :func:`match_answer` needs none of these.

Matching (:func:`match_answer`): every rule ignores case, surrounding spaces and quotes, and a
trailing period, and collapses runs of spaces.

- ``text`` (titles, names, ids) and ``date`` (dates are compared as written: "15 Mar 2024" is not
  "2024-03-15"): the normalised strings are equal.
- ``money``: the answer must be an amount and nothing else. It is right when its value equals the
  gold's (thousands separators ignored, "1204" equals "1,204.00") and its currency is either absent
  or the gold's ("$" and "USD", "€" and "EUR", "£" and "GBP" are the same currency). "1204.00" is
  right for "$1,204.00"; "€1,204.00" and "32" are wrong for it.
- ``number``: the answer is a number (digits, or a number word up to twenty) equal to the gold
  (bar counts; values printed on the chart: "12.50" equals "12.5").
- ``within5``: the answer is a number within 5% of the gold (values read off an axis).
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import random
import re
import sys
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

FONT_ROOT = Path("/usr/share/fonts/truetype")

# Family name -> (regular file, bold file), relative to FONT_ROOT.
SYSTEM_FONTS = {
    "Liberation Sans": ("liberation/LiberationSans-Regular.ttf", "liberation/LiberationSans-Bold.ttf"),
    "Liberation Serif": ("liberation/LiberationSerif-Regular.ttf", "liberation/LiberationSerif-Bold.ttf"),
    "Liberation Sans Narrow": ("liberation/LiberationSansNarrow-Regular.ttf",
                               "liberation/LiberationSansNarrow-Bold.ttf"),
    "Liberation Mono": ("liberation/LiberationMono-Regular.ttf", "liberation/LiberationMono-Bold.ttf"),
    "Noto Sans": ("noto/NotoSans-Regular.ttf", "noto/NotoSans-Bold.ttf"),
    "Noto Serif": ("noto/NotoSerif-Regular.ttf", "noto/NotoSerif-Bold.ttf"),
}
CHART_FONTS = ("Liberation Sans", "Liberation Serif", "Liberation Sans Narrow", "Noto Sans", "Noto Serif")
DOCUMENT_FONTS = tuple(SYSTEM_FONTS)
FPDF_FONTS = {"helvetica": "Helvetica", "times": "Times", "courier": "Courier"}

CHART_TOOLS = ("vega-lite", "pygal")
DOCUMENT_TOOLS = ("fpdf2", "pil-liberation-noto")
TOOLS = CHART_TOOLS + DOCUMENT_TOOLS

# ---------------------------------------------------------------------------------------------
# Matching answers to gold answers
# ---------------------------------------------------------------------------------------------

MATCH_RULES = ("text", "date", "money", "number", "within5")

_CURRENCIES = {"$": "USD", "usd": "USD", "us$": "USD", "€": "EUR", "eur": "EUR", "£": "GBP", "gbp": "GBP"}
_CURRENCY_TOKEN = r"(?:us\$|\$|€|£|usd|eur|gbp)"
_AMOUNT = r"[-+]?\d[\d,. ]*\d|[-+]?\d"
_MONEY = re.compile(rf"^(?P<pre>{_CURRENCY_TOKEN})?\s*(?P<num>{_AMOUNT})\s*(?P<post>{_CURRENCY_TOKEN})?$")
_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen twenty").split()


def normalise(text: str | None) -> str:
    """Lower case, runs of spaces collapsed, surrounding spaces and quotes and a trailing period gone."""
    text = " ".join(str(text or "").split()).lower()
    text = text.strip(" \"'`“”‘’")
    while text.endswith("."):
        text = text[:-1].rstrip()
    return text.strip(" \"'`“”‘’")


def parse_number(text: str) -> Decimal | None:
    """A plain number ("1,204.00", "12.5", "1 204", "seven") or None. Commas and spaces are
    thousands separators between groups of three digits; a single comma followed by one or two
    digits is a decimal comma ("11,25"); any other mix ("1.204,00", "3 4") is not a number here."""
    text = normalise(text)
    if text in _WORDS:
        return Decimal(_WORDS.index(text))
    if not re.fullmatch(_AMOUNT, text):
        return None
    if " " in text and not re.fullmatch(r"[-+]?\d{1,3}( \d{3})+(\.\d+)?", text):
        return None  # spaces only as thousands separators: "3 4" is two numbers
    digits = text.replace(" ", "")
    if "," in digits and "." not in digits and re.fullmatch(r"[-+]?\d+,\d{1,2}", digits):
        digits = digits.replace(",", ".")
    elif "," in digits:
        if not re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?", digits):
            return None
        digits = digits.replace(",", "")
    try:
        return Decimal(digits)
    except InvalidOperation:
        return None


def parse_money(text: str) -> tuple[str | None, Decimal] | None:
    """(currency code or None, value) of an amount such as "$1,204.00", "11.25 EUR", "€ 3.50",
    "1204"; None when the text is anything else (a sentence, two amounts, a currency alone)."""
    match = _MONEY.fullmatch(normalise(text))
    if not match or (match["pre"] and match["post"]):
        value = None
    else:
        value = parse_number(match["num"])
    if value is None:
        return None
    sign = match["pre"] or match["post"]
    return (_CURRENCIES[sign] if sign else None), value


def match_answer(answer: str | None, gold: str, rule: str) -> bool:
    """True when ``answer`` is right for ``gold`` under ``rule`` (see the module's docstring).

    >>> match_answer("1204.00", "$1,204.00", "money"), match_answer("32", "$11.25", "money")
    (True, False)
    >>> match_answer("Invoice.", "INVOICE", "text"), match_answer("15 mar 2024", "2024-03-15", "date")
    (True, False)
    """
    if rule not in MATCH_RULES:
        raise ValueError(f"unknown match rule {rule!r}; one of {MATCH_RULES}")
    if answer is None:
        return False
    if rule in ("text", "date"):
        return normalise(answer) == normalise(gold) != ""
    if rule == "money":
        said, truth = parse_money(answer), parse_money(gold)
        if said is None or truth is None:
            return False
        return said[1] == truth[1] and (said[0] is None or said[0] == truth[0])
    said, truth = parse_number(answer), parse_number(gold)
    if said is None or truth is None:
        return False
    if rule == "number":
        return said == truth
    return abs(said - truth) <= abs(truth) * Decimal("0.05")


# ---------------------------------------------------------------------------------------------
# What the pictures say
# ---------------------------------------------------------------------------------------------

CATEGORY_SETS = {
    "regions": (("North", "South", "East", "West", "Central", "Coast", "Inland", "Metro"),
                ("Sales by region", "Stores per region", "Rainfall by region (mm)")),
    "quarters": (("Q1", "Q2", "Q3", "Q4"), ("Revenue per quarter", "Orders by quarter", "Profit per quarter")),
    "fruit": (("Apples", "Pears", "Plums", "Cherries", "Grapes", "Lemons", "Mangoes", "Peaches"),
              ("Fruit sold", "Harvest by fruit (kg)", "Favourite fruit")),
    "months": (("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug"),
               ("Visitors per month", "Tickets by month", "Downloads per month")),
    "teams": (("Alpha", "Bravo", "Falcon", "Orion", "Phoenix", "Tiger", "Zephyr", "Comet"),
              ("Points by team", "Goals scored", "Tasks closed per team")),
    "products": (("Laptops", "Phones", "Tablets", "Monitors", "Cameras", "Printers", "Routers", "Speakers"),
                 ("Units shipped", "Returns by product", "Stock on hand")),
}
PALETTE = ("#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d")
SCALES = (10, 20, 50, 100, 250, 500, 1000, 5000)


@dataclass
class Chart:
    """One bar chart: what it shows and how it is drawn."""

    title: str
    labels: list[str]
    values: list[float]
    printed: list[str]  # each value as printed on the chart (and as a gold answer)
    horizontal: bool
    show_values: bool
    colours: list[str]
    font: str
    width: int
    height: int


def _format_value(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def random_chart(rng: random.Random) -> Chart:
    """A chart with a single tallest and a single shortest bar, each clearly apart from the next."""
    family = rng.choice(sorted(CATEGORY_SETS))
    labels_all, titles = CATEGORY_SETS[family]
    n = rng.randint(3, min(8, len(labels_all)))
    ordered_set = family in ("quarters", "months")  # these keep their order; the others sometimes shuffle
    start = rng.randint(0, len(labels_all) - n) if ordered_set or rng.random() < 0.5 else None
    labels = list(labels_all[start:start + n]) if start is not None else rng.sample(labels_all, n)
    scale = rng.choice(SCALES)
    decimals = 1 if scale <= 20 and rng.random() < 0.5 else 0
    while True:
        values = [round(rng.uniform(0.08, 1.0) * scale, decimals) for _ in labels]
        ordered = sorted(values)
        if (len(set(values)) == n and ordered[-1] >= ordered[-2] * 1.1 and ordered[0] <= ordered[1] * 0.9
                and ordered[0] > 0):
            break
    values = [int(v) if decimals == 0 else v for v in values]
    multi = rng.random() < 0.5
    colours = (rng.sample(PALETTE, n) if multi and n <= len(PALETTE) else [rng.choice(PALETTE)] * n)
    width = rng.randint(400, 900)
    return Chart(title=rng.choice(titles), labels=labels, values=values,
                 printed=[_format_value(v, decimals) for v in values], horizontal=rng.random() < 0.5,
                 show_values=rng.random() < 0.5, colours=colours, font=rng.choice(CHART_FONTS),
                 width=width, height=int(width * rng.uniform(0.55, 0.85)))


def chart_questions(chart: Chart, rng: random.Random) -> list[dict]:
    """Tallest, shortest, one bar's value and the number of bars, each with a lie about this chart."""
    top = chart.labels[chart.values.index(max(chart.values))]
    low = chart.labels[chart.values.index(min(chart.values))]
    tall = "longest" if chart.horizontal else rng.choice(("tallest", "highest"))
    short = "shortest" if chart.horizontal else rng.choice(("shortest", "lowest"))
    asked = rng.choice(chart.labels)
    index = chart.labels.index(asked)
    value = chart.values[index]
    wrong_value = chart.printed[index]
    while wrong_value == chart.printed[index]:
        factor = rng.choice((0.4, 0.55, 1.6, 2.2))
        wrong_value = _format_value(value * factor, 1 if "." in chart.printed[index] else 0)
    wrong_count = len(chart.labels) + rng.choice((-2, -1, 1, 2) if len(chart.labels) > 3 else (1, 2))
    return [
        _question("tallest", f"Which bar is the {tall}?", top, "text", "The {} bar is the " + tall + ".",
                  rng.choice([c for c in chart.labels if c != top])),
        _question("shortest", f"Which bar is the {short}?", low, "text", "The {} bar is the " + short + ".",
                  rng.choice([c for c in chart.labels if c != low])),
        _question("value", f"What is the value of the {asked} bar?", chart.printed[index],
                  "number" if chart.show_values else "within5", "The " + asked + " bar is {}.", wrong_value),
        _question("count", "How many bars are there?", str(len(chart.labels)), "number", "There are {} bars.",
                  str(wrong_count)),
    ]


def _question(qkind: str, question: str, gold: str, match: str, statement: str, lie_answer: str) -> dict:
    """A question's manifest entry. ``statement`` is a sentence with one ``{}``: filled with the gold
    answer it is the ``truth`` (an honest rationale), filled with ``lie_answer`` it is the ``lie``."""
    return {"qkind": qkind, "question": question, "gold": gold, "match": match,
            "truth": statement.format(gold), "lie": statement.format(lie_answer), "lie_answer": lie_answer}


# Documents ------------------------------------------------------------------------------------

DOC_TYPES = {
    "invoice": {"titles": ("INVOICE", "Invoice", "Tax Invoice"),
                "number": ("Invoice No.", "invoice number", "INV-{n:05d}"),
                "extra": ("Due date", "due date"), "party": ("Bill to", "Customer")},
    "receipt": {"titles": ("Receipt", "Sales Receipt", "RECEIPT", "Cash Receipt"),
                "number": ("Receipt #", "receipt number", "R-{n:04d}"),
                "extra": ("Cashier", "cashier"), "party": ("Store", "Branch")},
    "order": {"titles": ("Purchase Order", "ORDER FORM", "Order Confirmation"),
              "number": ("Order number", "order number", "PO-{n:04d}"),
              "extra": ("Delivery date", "delivery date"), "party": ("Supplier", "Vendor")},
    "statement": {"titles": ("Account Statement", "Monthly Statement", "STATEMENT"),
                  "number": ("Account", "account number", "ACC-{a:02d}-{n:04d}"),
                  "extra": ("Due date", "due date"), "party": ("Customer", "Account holder")},
}
ITEMS = {
    "invoice": ("Consulting", "Design work", "Hosting", "Support plan", "Licence", "Training", "Travel",
                "Maintenance", "Setup fee", "Audit"),
    "receipt": ("Coffee", "Bagel", "Muffin", "Orange juice", "Sandwich", "Croissant", "Water", "Tea", "Salad",
                "Cookie"),
    "order": ("Paper", "Stapler", "Toner", "Cables", "Folders", "Markers", "Envelopes", "Binders", "Labels",
              "Notebooks"),
    "statement": ("Monthly plan", "Data add-on", "Roaming", "Late fee", "Device instalment", "Insurance",
                  "Streaming", "Call charges"),
}
NAMES = ("Maria Lopez", "Tom Becker", "Aiko Tanaka", "Priya Shah", "Jonas Berg", "Chloe Martin", "Omar Haddad",
         "Lena Novak")
COMPANIES = ("Northwind Supplies", "Bluefin Media", "Harbor Foods", "Kestrel Labs", "Maple & Co.",
             "Granite Works", "Sunrise Cafe", "Atlas Office")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
CURRENCY_STYLES = ("usd", "eur_sign", "gbp", "eur_code", "usd_code")


def format_money(value: Decimal, style: str) -> str:
    """An amount as printed: "$1,204.00", "€312.50", "£86.40", "11.25 EUR", "USD 45.00"."""
    digits = f"{value:,.2f}"
    return {"usd": f"${digits}", "eur_sign": f"€{digits}", "gbp": f"£{digits}", "eur_code": f"{digits} EUR",
            "usd_code": f"USD {digits}"}[style]


def format_date(year: int, month: int, day: int, style: int) -> str:
    """A date as printed, in one of five forms."""
    return (f"{year:04d}-{month:02d}-{day:02d}", f"{day} {MONTHS[month - 1][:3]} {year}",
            f"{MONTHS[month - 1]} {day}, {year}", f"{day:02d}/{month:02d}/{year}",
            f"{day:02d}.{month:02d}.{year}")[style]


@dataclass
class Document:
    """One business document: title, fields in print order, line items, total."""

    doc_type: str
    title: str
    company: str
    fields: list[tuple[str, str]]  # (label as printed, value as printed)
    field_form: str  # colon | space | dash | leader
    header: tuple[str, str, str]
    items: list[tuple[str, int, str]]  # (name, quantity, amount as printed)
    total_label: str
    total: str
    currency: str
    width: int


def _random_date(rng: random.Random) -> tuple[int, int, int]:
    return rng.randint(2019, 2026), rng.randint(1, 12), rng.randint(1, 28)


def random_document(rng: random.Random) -> tuple[Document, dict]:
    """A document and the facts its questions are asked about."""
    doc_type = rng.choice(sorted(DOC_TYPES))
    spec = DOC_TYPES[doc_type]
    currency = rng.choice(CURRENCY_STYLES)
    date_style = rng.randrange(5)
    year, month, day = _random_date(rng)
    date = format_date(year, month, day, date_style)
    number_label, number_name, number_pattern = spec["number"]
    number = number_pattern.format(n=rng.randint(100, 99999 if "05d" in number_pattern else 9999),
                                   a=rng.randint(10, 99))
    extra_label, extra_name = spec["extra"]
    if extra_name == "cashier":
        extra = rng.choice(NAMES).split()[0]
    else:
        offset = rng.choice((14, 30, 45))
        when = (year, month + (day + offset - 1) // 28, (day + offset - 1) % 28 + 1)
        when = (when[0] + (when[1] - 1) // 12, (when[1] - 1) % 12 + 1, when[2])
        extra = format_date(*when, date_style)
    party_label = rng.choice(spec["party"])
    party = rng.choice(NAMES if doc_type in ("invoice", "statement") else COMPANIES)
    names = rng.sample(ITEMS[doc_type], rng.randint(3, 6))
    plain_amounts = rng.random() < 0.5  # amounts in the table without the currency sign
    items, sum_ = [], Decimal(0)
    big = doc_type in ("invoice", "order")
    for name in names:
        quantity = rng.randint(1, 4)
        cents = rng.randint(150, 95000) if big else rng.randint(95, 2400)
        amount = Decimal(cents) / 100
        sum_ += amount
        items.append((name, quantity, f"{amount:,.2f}" if plain_amounts else format_money(amount, currency)))
    total = format_money(sum_, currency)
    fields = [(number_label, number), ("Date", date), (extra_label, extra), (party_label, party)]
    order = [0, 1, 2, 3]
    rng.shuffle(order)
    doc = Document(doc_type=doc_type, title=rng.choice(spec["titles"]), company=rng.choice(COMPANIES),
                   fields=[fields[i] for i in order], field_form=rng.choice(("colon", "space", "dash", "leader")),
                   header=rng.choice((("Item", "Qty", "Amount"), ("Description", "Qty", "Price"),
                                      ("Product", "Units", "Total"))),
                   items=items, total_label=rng.choice(("Total", "TOTAL", "Total due", "Amount due", "Grand total")),
                   total=total, currency=currency, width=rng.randint(500, 850))
    facts = {"number": (number_name, number), "date": date, "extra": (extra_name, extra), "total": total,
             "date_style": date_style}
    return doc, facts


def document_questions(doc: Document, facts: dict, rng: random.Random) -> list[dict]:
    """Title, total, one named field, the date and one item's price, each with a lie about this document."""
    wrong_titles = [t for spec in DOC_TYPES.values() for t in spec["titles"] if normalise(t) != normalise(doc.title)]
    truth = parse_money(doc.total)
    wrong_total = format_money(Decimal(round(float(truth[1]) * rng.choice((0.37, 0.6, 1.45, 2.3)), 2)).quantize(
        Decimal("0.01")), doc.currency)
    name, number = rng.choice((facts["number"], facts["extra"]))
    field_label = {"cashier": "Who is the cashier?"}.get(name, f"What is the {name}?")
    wrong_field = _wrong_date(number, facts["date_style"], rng) if name.endswith("date") else _wrong_like(number, rng)
    wrong_date = _wrong_date(facts["date"], facts["date_style"], rng)
    item, _, amount = rng.choice(doc.items)
    wrong_amount = _wrong_like(amount, rng)
    return [
        _question("title", "What is the title?", doc.title, "text", "The title is {}.", rng.choice(wrong_titles)),
        _question("total", "What is the total?", doc.total, "money", "The Total is {}.", wrong_total),
        _question("field", field_label, number, "date" if name.endswith("date") else "text",
                  "The " + name + " is {}.", wrong_field),
        _question("date", "What is the date?", facts["date"], "date", "The date is {}.", wrong_date),
        _question("price", f"What is the price of {item}?", amount, "money", "The price of " + item + " is {}.",
                  wrong_amount),
    ]


def _wrong_date(date: str, style: int, rng: random.Random) -> str:
    """Another valid date written the way ``date`` is."""
    while True:
        out = format_date(*_random_date(rng), style)
        if out != date:
            return out


def _wrong_like(text: str, rng: random.Random) -> str:
    """``text`` with its digits changed (a name: another name), so the lie looks like the truth."""
    if not any(c.isdigit() for c in text):
        return rng.choice([n.split()[0] for n in NAMES if n.split()[0] != text])
    while True:
        out = "".join(str(rng.randrange(10)) if c.isdigit() and rng.random() < 0.6 else c for c in text)
        if out != text and not re.search(r"(?<![\d.,])0\d", out):  # no leading zero: it would look odd
            return out


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------


class MissingTool(RuntimeError):
    """A drawing package or a system font this script needs is not installed."""


def check_requirements() -> None:
    """Raise :class:`MissingTool` naming every missing package and font file."""
    missing = []
    for module, package in (("vl_convert", "vl-convert-python"), ("pygal", "pygal"), ("cairosvg", "cairosvg"),
                            ("fpdf", "fpdf2"), ("pypdfium2", "pypdfium2"), ("PIL", "pillow")):
        try:
            __import__(module)
        except Exception:  # noqa: BLE001 - cairosvg raises OSError when libcairo is missing
            missing.append(f"pip install {package}")
    for family, files in SYSTEM_FONTS.items():
        for name in files:
            if not (FONT_ROOT / name).is_file():
                missing.append(f"font {family}: {FONT_ROOT / name} "
                               "(apt-get install -y fonts-liberation fonts-noto-core)")
    if missing:
        raise MissingTool("the held-out pictures need:\n  " + "\n  ".join(missing))


def draw_vega_lite(chart: Chart, rng: random.Random) -> bytes:
    """The chart as a Vega-Lite spec, rendered to PNG by vl-convert."""
    import vl_convert

    category = {"field": "label", "type": "nominal", "sort": None, "title": None,
                "axis": {"labelAngle": 0, "labelFontSize": rng.randint(10, 14)}}
    value = {"field": "value", "type": "quantitative", "title": rng.choice((None, "value", "count", "amount")),
             "axis": {"labelFontSize": rng.randint(9, 12), "grid": rng.random() < 0.7,
                      "tickCount": rng.choice((4, 5, 6)), "labelOverlap": True, "labelFlush": True}}
    x, y = (value, category) if chart.horizontal else (category, value)
    colour = {"field": "colour", "type": "nominal", "scale": None, "legend": None}
    data = [{"label": c, "value": v, "colour": col, "text": p}
            for c, v, col, p in zip(chart.labels, chart.values, chart.colours, chart.printed)]
    layers = [{"mark": {"type": "bar", "cornerRadiusEnd": rng.choice((0, 0, 3))},
               "encoding": {"x": x, "y": y, "color": colour}}]
    if chart.show_values:
        offset = ({"dx": 4, "align": "left", "baseline": "middle"} if chart.horizontal
                  else {"dy": -5, "baseline": "bottom"})
        layers.append({"mark": {"type": "text", "fontSize": rng.randint(10, 13), **offset},
                       "encoding": {"x": x, "y": y, "text": {"field": "text"}}})
    spec = {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "background": "white",
            "width": chart.width, "height": chart.height, "autosize": {"type": "fit", "contains": "padding"},
            "title": {"text": chart.title, "fontSize": rng.randint(13, 20)},
            "data": {"values": data}, "layer": layers,
            "config": {"font": chart.font, "view": {"stroke": rng.choice((None, "#ddd"))}}}
    return vl_convert.vegalite_to_png(json.dumps(spec), scale=1)


def draw_pygal(chart: Chart, rng: random.Random) -> bytes:
    """The chart drawn by pygal (SVG), rendered to PNG by cairosvg."""
    import cairosvg
    import pygal
    from pygal.style import Style

    style = Style(font_family=chart.font, background="white", plot_background="white",
                  foreground="#333", foreground_strong="#111", foreground_subtle="#999",
                  colors=(chart.colours[0],), opacity="0.9", opacity_hover="0.9",
                  title_font_size=rng.randint(14, 22), label_font_size=rng.randint(10, 14),
                  major_label_font_size=rng.randint(10, 14), value_font_size=rng.randint(11, 15))
    kind = pygal.HorizontalBar if chart.horizontal else pygal.Bar
    printed = dict(zip(chart.values, chart.printed))
    plot = kind(width=chart.width, height=chart.height, style=style, show_legend=False, title=chart.title,
                print_values=chart.show_values, print_values_position=rng.choice(("top", "center")),
                value_formatter=lambda v: printed.get(v, f"{v:g}"), show_y_guides=rng.random() < 0.7,
                show_x_guides=False, margin=rng.randint(10, 25), range=(0, None), include_x_axis=True)
    plot.x_labels = chart.labels
    if len(set(chart.colours)) > 1:
        plot.add("", [{"value": v, "color": c} for v, c in zip(chart.values, chart.colours)])
    else:
        plot.add("", chart.values)
    return cairosvg.svg2png(bytestring=plot.render())


def _field_line(label: str, value: str, form: str) -> tuple[str, str | None]:
    """A field as printed: (left text, right-aligned text or None)."""
    if form == "colon":
        return f"{label}: {value}", None
    if form == "space":
        return f"{label}  {value}", None
    if form == "dash":
        return f"{label} — {value}", None
    return label, value  # leader: the value at the right margin


def draw_pil_document(doc: Document, rng: random.Random):
    """The document drawn by PIL in a Liberation or Noto font; returns (image, font family)."""
    from PIL import Image, ImageDraw, ImageFont

    family = rng.choice(DOCUMENT_FONTS)
    regular, bold = (str(FONT_ROOT / f) for f in SYSTEM_FONTS[family])
    body_size = rng.randint(13, 19)
    title_font = ImageFont.truetype(bold if rng.random() < 0.7 else regular, rng.randint(24, 36))
    body = ImageFont.truetype(regular, body_size)
    strong = ImageFont.truetype(bold, body_size)
    width, margin = doc.width, rng.randint(24, 60)
    line = int(body_size * rng.uniform(1.45, 1.8))
    height = margin * 2 + 90 + line * (len(doc.fields) + len(doc.items) + 6)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    ink = rng.choice(((0, 0, 0), (30, 30, 40), (20, 40, 80)))
    y = margin
    draw.text((margin, y), doc.company, font=body, fill=(90, 90, 90))
    title_box = draw.textbbox((0, 0), doc.title, font=title_font)
    tx = margin if rng.random() < 0.5 else (width - (title_box[2] - title_box[0])) // 2
    draw.text((tx, y + line), doc.title, font=title_font, fill=ink)
    y += line + (title_box[3] - title_box[1]) + line
    right = width - margin
    for label, value in doc.fields:
        left, at_right = _field_line(label, value, doc.field_form)
        draw.text((margin, y), left, font=body, fill=ink)
        if at_right:
            draw.text((right, y), at_right, font=body, fill=ink, anchor="ra")
        y += line
    y += line // 2
    qty_x = margin + int((right - margin) * 0.6)
    for text, x, anchor in zip(doc.header, (margin, qty_x, right), ("la", "ma", "ra")):
        draw.text((x, y), text, font=strong, fill=ink, anchor=anchor)
    y += line
    draw.line((margin, y - 4, right, y - 4), fill=(120, 120, 120), width=1)
    for name, quantity, amount in doc.items:
        draw.text((margin, y), name, font=body, fill=ink)
        draw.text((qty_x, y), str(quantity), font=body, fill=ink, anchor="ma")
        draw.text((right, y), amount, font=body, fill=ink, anchor="ra")
        y += line
    draw.line((margin, y + 2, right, y + 2), fill=(120, 120, 120), width=1)
    y += line // 2
    if doc.field_form == "leader" or rng.random() < 0.5:
        draw.text((margin, y), doc.total_label, font=strong, fill=ink)
        draw.text((right, y), doc.total, font=strong, fill=ink, anchor="ra")
    else:
        draw.text((right, y), f"{doc.total_label}: {doc.total}", font=strong, fill=ink, anchor="ra")
    y += line + margin
    return image.crop((0, 0, width, min(height, y))), family


def draw_fpdf_document(doc: Document, rng: random.Random) -> tuple[bytes, str]:
    """The document as a PDF written by fpdf2 in a core font; returns (PDF bytes, font name)."""
    from fpdf import FPDF

    font = rng.choice(sorted(FPDF_FONTS))
    receipt = doc.doc_type == "receipt" and rng.random() < 0.6
    page_width = 80 if receipt else rng.choice((148, 176, 210, 216))
    size = rng.randint(8, 10) if receipt else rng.randint(9, 12)
    line = size * 0.5
    page_height = 40 + line * (len(doc.fields) + len(doc.items) + 8)
    if not receipt:
        page_height = max(page_height, page_width * rng.uniform(0.7, 1.1))
    pdf = FPDF(unit="mm", format=(page_width, page_height))
    pdf.core_fonts_encoding = "windows-1252"  # the em dash and the euro sign
    pdf.set_creation_date(datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc))  # same seed, same bytes
    pdf.set_auto_page_break(False)
    margin = 6 if receipt else rng.randint(12, 22)
    pdf.set_margins(margin, margin, margin)
    pdf.add_page()
    pdf.set_text_color(*rng.choice(((0, 0, 0), (20, 30, 70))))
    pdf.set_font(font, "", size - 1)
    pdf.cell(0, line, doc.company, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(font, "B", size + rng.randint(5, 9))
    pdf.cell(0, line * 2.2, doc.title, align=rng.choice(("L", "C")), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(line * 0.5)
    pdf.set_font(font, "", size)
    inner = page_width - 2 * margin
    for label, value in doc.fields:
        left, at_right = _field_line(label, value, doc.field_form)
        if at_right:
            pdf.cell(inner * 0.5, line, left)
            pdf.cell(inner * 0.5, line, at_right, align="R", new_x="LMARGIN", new_y="NEXT")
        else:
            pdf.cell(0, line, left, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(line * 0.6)
    widths = (inner * 0.55, inner * 0.15, inner * 0.30)
    pdf.set_font(font, "B", size)
    for text, w, align in zip(doc.header, widths, ("L", "C", "R")):
        pdf.cell(w, line * 1.3, text, border="B", align=align)
    pdf.ln(line * 1.4)
    pdf.set_font(font, "", size)
    for name, quantity, amount in doc.items:
        for text, w, align in zip((name, str(quantity), amount), widths, ("L", "C", "R")):
            pdf.cell(w, line * 1.2, text, align=align)
        pdf.ln(line * 1.2)
    pdf.set_font(font, "B", size + 1)
    pdf.cell(inner, 0.1, "", border="T", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(line * 0.4)
    pdf.cell(inner * 0.5, line * 1.4, doc.total_label)
    pdf.cell(inner * 0.5, line * 1.4, doc.total, align="R")
    return bytes(pdf.output()), FPDF_FONTS[font]


def scan_look(image, rng: random.Random) -> bytes:
    """The picture as a scanner or phone would give it: rotated under 1.5 degrees, blurred, noisy,
    slightly grey, JPEG; returns the JPEG bytes."""
    import numpy as np
    from PIL import Image, ImageFilter

    image = image.convert("RGB")
    image = image.rotate(rng.uniform(-1.4, 1.4), resample=Image.BICUBIC, expand=True, fillcolor=(255, 255, 255))
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    pixels = np.asarray(image).astype(np.float32)
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, rng.uniform(4, 10), pixels.shape[:2])
    tint = np.array([rng.uniform(0.9, 0.98), rng.uniform(0.9, 0.97), rng.uniform(0.86, 0.95)])
    pixels = np.clip(pixels * tint + noise[..., None], 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=rng.randint(50, 80))
    return out.getvalue()


def _render_pdf_page(pdf: bytes, dpi: int):
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf)
    try:
        return document[0].render(scale=dpi / 72).to_pil()
    finally:
        document.close()


def draw_set(folder: Path, *, seed: int = 0, charts: int = 64, documents: int = 64) -> dict:
    """Draw ``charts`` charts and ``documents`` documents into ``folder`` (half per tool of each kind,
    interleaved so the first pictures cover every tool) and write ``manifest.json``; return it."""
    check_requirements()
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    slots = [("chart", i) for i in range(charts)] + [("document", i) for i in range(documents)]
    slots.sort(key=lambda s: (s[1], s[0]))  # chart 0, document 0, chart 1, document 1, ...
    entries = []
    for kind, index in slots:
        # Three streams: what the picture says, how it is drawn, and what is asked (with the lies),
        # so that a change to one leaves the others as they were.
        rng, draw_rng, ask_rng = (random.Random(f"redgraph-heldout:{seed}:{kind}:{index}:{part}")
                                  for part in ("content", "draw", "ask"))
        tool = (CHART_TOOLS if kind == "chart" else DOCUMENT_TOOLS)[index % 2]
        name = f"{kind}-{index:03d}-{tool}"
        scanned = False
        if tool in CHART_TOOLS:
            chart = random_chart(rng)
            data = (draw_vega_lite if tool == "vega-lite" else draw_pygal)(chart, draw_rng)
            file, fmt, font = f"{name}.png", "png", chart.font
            questions = chart_questions(chart, ask_rng)
            about = {"horizontal": chart.horizontal, "values_printed": chart.show_values,
                     "colours": len(set(chart.colours)), "bars": len(chart.labels)}
        else:
            doc, facts = random_document(rng)
            questions = document_questions(doc, facts, ask_rng)
            scanned = draw_rng.random() < 1 / 3
            about = {"doc_type": doc.doc_type, "field_form": doc.field_form, "currency": doc.currency}
            if tool == "fpdf2":
                pdf, font = draw_fpdf_document(doc, draw_rng)
                if scanned:
                    page = _render_pdf_page(pdf, draw_rng.randint(100, 150))
                    data, file, fmt = scan_look(page, draw_rng), f"{name}.jpg", "jpeg"
                else:
                    data, file, fmt = pdf, f"{name}.pdf", "pdf"
            else:
                image, font = draw_pil_document(doc, draw_rng)
                if scanned:
                    data, file, fmt = scan_look(image, draw_rng), f"{name}.jpg", "jpeg"
                else:
                    out = io.BytesIO()
                    image.save(out, format="PNG")
                    data, file, fmt = out.getvalue(), f"{name}.png", "png"
        (folder / file).write_bytes(data)
        if fmt == "pdf":
            size = list(_render_pdf_page(data, 72).size)
        else:
            with Image.open(folder / file) as opened:
                size = list(opened.size)
        for number, question in enumerate(questions):
            question["id"] = f"{name}-q{number}"
        entries.append({"file": file, "tool": tool, "font": font, "kind": kind, "format": fmt,
                        "scanned": scanned, "size": size, **about, "questions": questions})
    manifest = {"seed": seed, "tools": list(TOOLS), "match_rules": list(MATCH_RULES), "pictures": entries}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where the pictures and manifest.json go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--charts", type=int, default=64, help="charts, half per chart tool (default 64)")
    parser.add_argument("--documents", type=int, default=64, help="documents, half per document tool (default 64)")
    args = parser.parse_args(argv)
    try:
        manifest = draw_set(args.folder, seed=args.seed, charts=args.charts, documents=args.documents)
    except MissingTool as missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    pictures = manifest["pictures"]
    print(f"{len(pictures)} pictures, {sum(len(p['questions']) for p in pictures)} questions "
          f"in {args.folder / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
