"""The ``copy`` task's items: facts-style rationales about documents and bar charts that readers (OCR,
a bar-chart reader) write, a question, and the answer, which is a verbatim span of the rationale (or
the count of bars). Text only: RED's rationale branch has to *write* what the rationale says, strings
the standard vocabulary never has ("Sales by quarter", "$1,204.00", "INV-2041", "Team B", "27.5").

Two generator splits, drawn from disjoint word lists and value forms:

- ``train``: what the training task draws;
- ``heldout``: words (titles, field names, bar labels, colours) training never draws, and value forms
  it never draws either (pounds and Swiss francs, "March 15, 2024" and "15.03.2024" dates, slash and
  mixed ids, two-decimal and percentage bar values), to measure copying of strings never trained on.

Made-up words and random letter strings fall in one split or the other by a hash of their lower-case
spelling, so no generated word is in both. Every item is a pure function of ``(split, seed, index)``.
"""

from __future__ import annotations

import dataclasses
import random
import zlib
from dataclasses import dataclass

SPLITS = ("train", "heldout")
# The kinds of fact a copy item asks about (benchmarks/copy_skill.py reports each).
KINDS = ("title", "amount", "date", "id", "bar_label", "bar_value", "count", "colour")

_WORDS = {
    "train": """sales revenue budget receipt invoice summary report quarterly annual monthly weekly profit
        growth market share costs expenses income forecast review statement balance orders payments
        customers visitors traffic energy output production exports imports rainfall temperature survey
        results grades scores members tickets bookings deliveries shipments returns downloads users clicks
        plan notes memo agenda minutes schedule project status update overview analysis north region
        store branch office team staff hours payroll inventory stock supplies travel fuel rent services""".split(),
    "heldout": """turnover earnings outlay ledger voucher digest bulletin biannual nightly margin yield
        spending harvest census tally roster enrolment subscribers attendance readership velocity
        throughput emissions mileage ridership admissions pledges donations bids quotes
        dossier briefing docket timetable roadmap charter western province outlet kiosk crew lineup
        overtime catalogue freight wages utilities tuition premiums claims refunds""".split(),
}
_FIELDS = {
    "train": {
        "amount": ["Total", "Subtotal", "Tax", "Balance", "Amount due", "Coffee", "Blue widget", "Sandwich",
                   "Paper", "Service fee", "Tip", "Shipping", "Muffin", "Red cable", "Lunch", "Parking"],
        "date": ["Date", "Due date", "Issue date", "Order date", "Delivery date"],
        "id": ["Invoice number", "Order no.", "Account", "Reference", "Customer ID", "Receipt no."],
    },
    "heldout": {
        "amount": ["Grand total", "Net amount", "VAT", "Deposit", "Discount", "Green tea", "Bagel",
                   "Steel bolt", "Postage", "Croissant", "Handling"],
        "date": ["Payment date", "Ship date", "Valid until"],
        "id": ["Ticket no.", "Policy number", "Case ID", "Member ID"],
    },
}
_LABELS = {
    "train": [["Q1", "Q2", "Q3", "Q4"], ["North", "South", "East", "West", "Central"],
              ["Apples", "Pears", "Oranges", "Bananas", "Grapes", "Cherries", "Lemons", "Mangoes", "Kiwis"],
              ["Team A", "Team B", "Team C", "Team D", "Team E", "Team F"],
              ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
              ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep"],
              ["Bus", "Train", "Car", "Bike", "Walk", "Ferry"]],
    "heldout": [["H1", "H2", "H3"], ["Pacific", "Atlantic", "Midwest", "Alpine", "Coastal"],
                ["Plums", "Figs", "Dates", "Limes", "Peaches", "Melons"],
                ["Group X", "Group Y", "Group Z", "Group W"],
                ["Week 1", "Week 2", "Week 3", "Week 4", "Week 5"],
                ["Tram", "Taxi", "Scooter", "Metro", "Boat"]],
}
_COLOURS = {
    "train": ["blue", "red", "green", "orange", "purple", "grey", "black", "pink", "brown", "navy"],
    "heldout": ["teal", "maroon", "olive", "cyan", "magenta", "gold"],
}
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_MONTH_NAMES = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                "October", "November", "December"]
_ONSETS = ["b", "br", "c", "ch", "cl", "d", "dr", "f", "fl", "g", "gr", "h", "j", "k", "l", "m", "n", "p",
           "pl", "pr", "qu", "r", "s", "sh", "sl", "st", "t", "th", "tr", "v", "w", "z"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io", "y"]
_CODAS = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "x", "ck", "ng"]

_LISTED: frozenset[str] = frozenset()  # every listed word (made-up words are none of them); set below

TITLE_QUESTIONS = ("What is the title?", "What is the title of the chart?", "What does the title say?",
                   "What is the title of the document?")
TALLEST = ("tallest", "highest", "longest", "largest")
SHORTEST = ("shortest", "lowest", "smallest")


@dataclass(frozen=True)
class CopyItem:
    kind: str  # one of KINDS
    rationale: str
    question: str
    answer: str  # a verbatim span of the rationale, or the count of bars
    sentences: tuple[str, ...] = ()  # the rationale's sentences (joined by spaces: the rationale)
    key: str = ""  # the sentence that answers the question


def _listed() -> frozenset[str]:
    words = {w for split in SPLITS for w in _WORDS[split] + _COLOURS[split]}
    words |= {w.lower() for split in SPLITS for names in _FIELDS[split].values() for n in names for w in n.split()}
    words |= {w.lower() for split in SPLITS for labels in _LABELS[split] for n in labels for w in n.split()}
    return frozenset(words)


def _split_of(word: str) -> str:
    return "heldout" if zlib.crc32(word.lower().encode()) % 4 == 0 else "train"


def _made_up(rng: random.Random, split: str) -> str:
    """A pronounceable made-up word, or a random letter string, of ``split`` (by its hash)."""
    while True:
        if rng.random() < 0.6:
            word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                           for _ in range(rng.randint(1, 3)))
        else:
            word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8)))
        if _split_of(word) == split and word not in _LISTED:
            return word


def _case(rng: random.Random, word: str) -> str:
    r = rng.random()
    return word.upper() if r < 0.15 else word.capitalize() if r < 0.6 else word


def title(rng: random.Random, split: str) -> str:
    words = []
    for i in range(rng.randint(1, 4)):
        word = rng.choice(_WORDS[split]) if rng.random() < 0.55 else _made_up(rng, split)
        words.append(_case(rng, word))
    if rng.random() < 0.2:  # a year or a number in the title
        words.append(str(rng.randint(1990, 2030)) if split == "train" else f"FY{rng.randint(10, 40)}")
    if rng.random() < 0.3:
        words[0] = words[0].capitalize()
    return " ".join(words)


def _thousands(whole: int, sep: str = ",") -> str:
    return f"{whole:,}".replace(",", sep)


def amount(rng: random.Random, split: str) -> str:
    scale = rng.choice((10, 100, 1000, 100000))
    cents = rng.randint(0, scale * 100)
    whole, frac = divmod(cents, 100)
    form = rng.randrange(5)
    if split == "train":
        if form == 0:
            return f"${_thousands(whole)}.{frac:02d}"
        if form == 1:
            return f"{_thousands(whole)}.{frac:02d} {rng.choice(('EUR', 'USD'))}"
        if form == 2:
            return f"€{_thousands(whole)}.{frac:02d}"
        if form == 3:
            return f"{_thousands(whole, '.')},{frac:02d}"
        return f"${whole}"
    if form <= 1:
        return f"£{_thousands(whole)}.{frac:02d}"
    if form == 2:
        return f"CHF {_thousands(whole, chr(39))}.{frac:02d}"
    if form == 3:
        return f"{_thousands(whole, ' ')},{frac:02d} kr"
    return f"{_thousands(whole)}.{frac:02d} GBP"


def date(rng: random.Random, split: str) -> str:
    year, month, day = rng.randint(1995, 2035), rng.randint(1, 12), rng.randint(1, 28)
    form = rng.randrange(3)
    if split == "train":
        return (f"{year}-{month:02d}-{day:02d}", f"{day} {_MONTHS[month - 1]} {year}",
                f"{month:02d}/{day:02d}/{year}")[form]
    return (f"{_MONTH_NAMES[month - 1]} {day}, {year}", f"{day:02d}.{month:02d}.{year}",
            f"{_MONTH_NAMES[month - 1]} {day}, {year}")[form]


def identifier(rng: random.Random, split: str) -> str:
    letters = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(rng.randint(2, 3)))
    digits = str(rng.randint(1, 99999))
    form = rng.randrange(3)
    if split == "train":
        return (f"{letters}-{digits}", f"#{rng.randint(1, 99)}-{rng.randint(100, 999)}", f"{letters}{digits}")[form]
    return (f"{letters}/{rng.randint(2000, 2030)}/{rng.randint(1, 9999):04d}",
            f"{rng.choice('ABCDEFGHJKLMNPQRSTUVWXYZ')}{rng.randint(1, 9)}-{letters}{rng.randint(1, 9)}",
            f"No. {digits}-{letters}")[form]


def bar_value(rng: random.Random, split: str) -> tuple[float, str]:
    form = rng.randrange(3)
    if split == "train":
        if form == 0:
            v = rng.randint(0, rng.choice((10, 100, 1000, 100000)))
            return float(v), str(v)
        if form == 1:
            v = rng.randint(0, rng.choice((100, 1000))) / 10
            return v, f"{v:.1f}"
        v = rng.randint(1000, 100000)
        return float(v), f"{v:,}"
    if form == 2:
        v = rng.randint(0, 100)
        return float(v), f"{v}%"
    v = rng.randint(0, rng.choice((1000, 100000))) / 100
    return v, f"{v:.2f}"


def bar_labels(rng: random.Random, split: str, n: int) -> list[str]:
    r = rng.random()
    if r < 0.5:
        pool = [p for p in _LABELS[split] if len(p) >= n]
        if pool:
            return rng.sample(rng.choice(pool), n)
    if r < 0.65:
        start = rng.randint(1990, 2025) if split == "train" else rng.randint(1950, 1985)
        return [str(start + i) for i in range(n)]
    labels: list[str] = []
    while len(labels) < n:
        label = _case(rng, _made_up(rng, split))
        if label.lower() not in {l.lower() for l in labels}:
            labels.append(label)
    return labels


def _field_name(rng: random.Random, split: str, kind: str) -> str:
    if rng.random() < 0.7:
        return rng.choice(_FIELDS[split][kind])
    suffixes = {"amount": ("", "", " fee", " total"), "date": (" date",), "id": (" no.", " number", " ID")}[kind]
    return _made_up(rng, split).capitalize() + rng.choice(suffixes)


def document_item(rng: random.Random, split: str, kind: str) -> CopyItem:
    """A receipt or invoice: a title and 2-6 fields; asks about the title or one field."""
    title_text = title(rng, split)
    makers = {"amount": amount, "date": date, "id": identifier}
    fields: dict[str, tuple[str, str]] = {}
    wanted = [kind] if kind in makers else []
    wanted += [rng.choice(("amount", "amount", "date", "id")) for _ in range(rng.randint(1, 5))]
    for field_kind in wanted:
        for _ in range(5):
            name = _field_name(rng, split, field_kind)
            if name.lower() not in {n.lower() for n in fields} and name.lower() != "title":
                fields[name] = (field_kind, makers[field_kind](rng, split))
                break
    sentences = [f"The {name} is {value}." for name, (_, value) in fields.items()]
    if kind == "title" or rng.random() < 0.8:
        sentences.append(f"The title is {title_text}.")
    rng.shuffle(sentences)
    if kind == "title":
        if rng.random() < 0.7:  # the title first, as readers write it
            sentences.remove(f"The title is {title_text}.")
            sentences.insert(0, f"The title is {title_text}.")
        return CopyItem("title", " ".join(sentences), rng.choice(TITLE_QUESTIONS), title_text, tuple(sentences),
                        f"The title is {title_text}.")
    name = next(n for n, (k, _) in fields.items() if k == kind)
    value = fields[name][1]
    lower = name if rng.random() < 0.3 else name.lower()
    if kind == "amount":
        question = rng.choice((f"What is the {lower}?", f"How much is the {lower}?", f"What is the price of {name}?",
                               f"What is the {lower} amount?"))
    elif kind == "date":
        question = rng.choice((f"What is the {lower}?", f"What does the {lower} say?", f"When is the {lower}?"))
    else:
        question = rng.choice((f"What is the {lower}?", f"What is the {lower} on the document?"))
    return CopyItem(kind, " ".join(sentences), question, value, tuple(sentences), f"The {name} is {value}.")


def chart_item(rng: random.Random, split: str, kind: str) -> CopyItem:
    """A bar chart as a bar-chart reader describes it; asks about its title, a bar, or the count."""
    n = rng.randint(2, 9)
    labels = bar_labels(rng, split, n)
    values: list[tuple[float, str]] = []
    while len(values) < n:
        value = bar_value(rng, split)
        if value[0] not in {v for v, _ in values}:
            values.append(value)
    title_text = title(rng, split)
    tallest = labels[max(range(n), key=lambda i: values[i][0])]
    shortest = labels[min(range(n), key=lambda i: values[i][0])]
    colours = {label: rng.choice(_COLOURS[split]) for label in rng.sample(labels, rng.randint(0, min(3, n)))}
    if kind == "colour" and not colours:
        colours[rng.choice(labels)] = rng.choice(_COLOURS[split])
    head = [f"The title is {title_text}.", f"There are {n} bars.", f"The {tallest} bar is the tallest.",
            f"The {shortest} bar is the shortest."]
    body = [f"The {label} bar is {text}." for label, (_, text) in zip(labels, values)]
    body += [f"The {label} bar is {colour}." for label, colour in colours.items()]
    if rng.random() < 0.5:  # as the reader writes it, or shuffled
        sentences = head + body
    else:
        sentences = head + body
        rng.shuffle(sentences)
    rationale = " ".join(sentences)
    kept = tuple(sentences)
    if kind == "title":
        return CopyItem(kind, rationale, rng.choice(TITLE_QUESTIONS), title_text, kept, head[0])
    if kind == "count":
        return CopyItem(kind, rationale, rng.choice(("How many bars are there?", "How many bars does the chart have?")),
                        str(n), kept, head[1])
    if kind == "bar_label":
        if rng.random() < 0.5:
            return CopyItem(kind, rationale, f"Which bar is the {rng.choice(TALLEST)}?", tallest, kept, head[2])
        return CopyItem(kind, rationale, f"Which bar is the {rng.choice(SHORTEST)}?", shortest, kept, head[3])
    if kind == "colour":
        label = rng.choice(list(colours))
        return CopyItem(kind, rationale, rng.choice((f"What colour is the {label} bar?", f"What color is the {label} bar?")),
                        colours[label], kept, f"The {label} bar is {colours[label]}.")
    index = rng.randrange(n)
    label = labels[index]
    question = rng.choice((f"What is the value of the {label} bar?", f"What is {label}'s value?",
                           f"How high is the {label} bar?", f"What is the value of {label}?"))
    return CopyItem("bar_value", rationale, question, values[index][1], kept, body[index])


_LISTED = _listed()
_KIND_WEIGHTS = {"title": 2, "amount": 3, "date": 2, "id": 2, "bar_label": 2, "bar_value": 3, "count": 1, "colour": 1}


def copy_item(split: str, index: int, seed: int = 0, kind: str | None = None, short: float = 0.0) -> CopyItem:
    """Item ``index`` of ``split`` (``kind``: one kind of fact; None draws one). ``short``: the share of
    items cut to the answering sentence and 0-2 others (an easier start for learning to copy; the
    first draws of an item are the same either way)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    rng = random.Random(f"redgraph-copy:{split}:{seed}:{index}")
    if kind is None:
        kind = rng.choices(list(_KIND_WEIGHTS), weights=list(_KIND_WEIGHTS.values()))[0]
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind in ("amount", "date", "id") or (kind == "title" and rng.random() < 0.5):
        item = document_item(rng, split, kind)
    else:
        item = chart_item(rng, split, kind)
    if short and rng.random() < short:
        others = [s for s in item.sentences if s != item.key]
        kept = [item.key] + rng.sample(others, min(len(others), rng.randint(0, 2)))
        rng.shuffle(kept)
        item = dataclasses.replace(item, rationale=" ".join(kept), sentences=tuple(kept))
    return item
