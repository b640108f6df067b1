"""Reading a document from its OCR page: the title, ``Field: value`` pairs and line items.

:func:`read_document` takes an :class:`~redgraph.models.ocr.OcrPage` (any engine) and finds, row by
row (:meth:`OcrPage.rows`):

- ``Field: value`` pairs in their usual forms: ``Total: $1,204.00``, ``Total $1,204.00``,
  ``Due date — 15 Mar 2024``, ``Date 2024-03-15``, a label at the left and its value at the right
  margin, two pairs on one row;
- line items: a table row whose last cell is an amount (``Coffee   2   $3.50``): the item's name is
  its first cell, its price the amount at the right;
- the title: the tallest text among the rows of the page's top half that are not pairs or items
  (ties go to the topmost).

Values are kept as written (``$1,204.00``, ``11.25 EUR``, ``15 Mar 2024``). Each fact keeps its
box and the engine's confidence, which the trace and the HTML report show as evidence.

Example:
    >>> reading = read_document(text_reader().read(picture))  # doctest: +SKIP
    >>> reading.title.value, reading.field("total").value  # doctest: +SKIP
    ('RECEIPT', '$11.25')
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from redgraph.models.ocr import Box, OcrLine, OcrPage

_CURRENCY = r"(?:[$€£¥]|USD|EUR|GBP|CHF|JPY)"
_NUMBER = r"[-−]?\d[\d.,' ]*\d|\d"
AMOUNT = re.compile(rf"(?:{_CURRENCY}\s?(?:{_NUMBER})|(?:{_NUMBER})\s?(?:{_CURRENCY}|%)?)")
_CURRENCY_AMOUNT = re.compile(rf"{_CURRENCY}\s?\d[\d.,' ]*")
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
# Dates as printed; spaces between a month name and its numbers may be missing (the engine runs them together).
DATE = re.compile(rf"(?:\d{{4}}-\d{{1,2}}-\d{{1,2}}|\d{{1,2}}[/.]\d{{1,2}}[/.]\d{{2,4}}|\d{{1,2}}\s?{_MONTH}\s?\d{{4}}|"
                  rf"{_MONTH}\s?\d{{1,2}}[,.]?\s?\d{{4}})", re.IGNORECASE)
_IDENTIFIER = r"(?-i:[A-Z]{1,5})[-#]?\d[\w-]*|#\s?\d[\w-]*"  # "INV-2041", "PO-8755", "#10-443": capitals lead
# A value at the end of a run whose label has no colon: "Date 2024-03-15", "Total $83.00", "Due date — 15 Mar 2024";
# run together by the engine: "Date13 Mar 2024", "Due date-26/05/2023", "AccountACC-41-7228".
_TRAILING_VALUE = re.compile(rf"^(?P<name>[^:\d]*?[A-Za-z#.])\s*[-–—=|]?\s*(?P<value>{DATE.pattern}|{AMOUNT.pattern}|"
                             rf"{_IDENTIFIER})$", re.IGNORECASE)
_LABEL_EDGES = " :-–—=|.\t"
# Field names the question "What is the total?" means, best first (never the subtotal).
_TOTALS = ("total", "grand total", "total due", "amount due", "balance due", "total amount", "amount", "balance")
_DATES = ("date", "invoice date", "order date", "issue date", "issued", "receipt date", "statement date")


@dataclass(frozen=True)
class TextFact:
    """One thing read off the page: a name (``title``, a field's or an item's name, as printed) and its
    value as printed, where they are, and how sure the engine was (its least sure run's confidence)."""

    kind: str  # "title", "field" or "item"
    name: str
    value: str
    box: Box  # the value's box (the whole row's for a title)
    name_box: Box | None
    confidence: float
    engine: str

    def to_evidence(self, size: tuple[int, int]) -> dict:
        return {"reader": self.engine, "kind": self.kind, "name": self.name, "text": self.value,
                "box": list(self.box), "name_box": list(self.name_box) if self.name_box else None,
                "confidence": self.confidence, "image_size": list(size)}


@dataclass(frozen=True)
class DocumentReading:
    """What :func:`read_document` found on a page."""

    size: tuple[int, int]
    engine: str
    title: TextFact | None
    fields: tuple[TextFact, ...]  # pairs and line items, top to bottom

    def field(self, name: str) -> TextFact | None:
        """The pair or item ``name`` (as a question says it: "total", "invoice number", "coffee"): an
        exact name first, then the usual synonyms (a total is never the subtotal; a date is the
        document's own date), then the closest name at least 80% alike."""
        wanted = name_key(name)
        if not wanted:
            return None
        by_name = {}
        for fact in self.fields:
            by_name.setdefault(name_key(fact.name), fact)
        if wanted in by_name:
            return by_name[wanted]
        for group in (_TOTALS, _DATES):
            if wanted == group[0]:
                for synonym in group[1:]:
                    if synonym in by_name:
                        return by_name[synonym]
                if group is _DATES:
                    return next((f for f in self.fields if DATE.fullmatch(f.value.strip())), None)
                return None
        scored = [(difflib.SequenceMatcher(None, wanted, key).ratio(), -i, fact)
                  for i, (key, fact) in enumerate(by_name.items())]
        # A name the question shortens: "coffee" for "Coffee latte" (never "date" for "due date"); or
        # lengthens: "account number" for a field printed "Account".
        scored += [(0.85, -len(by_name), fact) for key, fact in by_name.items()
                   if len(wanted) > 3 and (key.split()[:len(wanted.split())] == wanted.split()
                                           or wanted in (f"{key} number", f"{key} id"))]
        best = max(scored, default=None, key=lambda row: row[:2])
        return best[2] if best is not None and best[0] >= 0.8 else None


def name_key(text: str) -> str:
    """How names are compared: case, edge punctuation and spacing do not matter, and "No.", "Nr",
    "#" all say "number"."""
    text = re.sub(r"[^\w\s#]", " ", text.lower()).replace("#", " number ")
    return " ".join("number" if word in ("no", "nr", "num") else word for word in text.split())


def read_document(page: OcrPage) -> DocumentReading:
    """The title, pairs and items on ``page`` (see the module's docstring)."""
    rows = page.rows()
    fields = [fact for row in rows for fact in _row_fields(row, page.engine)]
    return DocumentReading(page.size, page.engine, _title(rows, page), tuple(fields))


def _row_fields(row: OcrLine, engine: str) -> list[TextFact]:
    words = list(row.words)
    found: list[TextFact] = []
    if len(words) == 1:  # "Total: $83.00", "Date 2024-03-15", "Account — ACC-30-7964"
        fact = _inline_field(words[0], engine)
        return [fact] if fact is not None else []
    i = 0
    while i < len(words):  # pairs within the row: "Date: 2024-03-15   Invoice: INV-1", "Total:" then "$83.00"
        word = words[i]
        name, colon, value = word.text.strip().partition(":")
        if colon and value.strip() and _is_name(name):
            found.append(_fact("field", name, value, word.box, word.box, (word,), engine))
        elif colon and not value.strip() and _is_name(name) and i + 1 < len(words):
            value_words = words[i + 1:] if i == 0 and len(words) == 2 else [words[i + 1]]
            found.append(_fact("field", name, " ".join(w.text for w in value_words), _union(value_words),
                               word.box, (word, *value_words), engine))
            i += len(value_words)
        i += 1
    if found:
        return found
    # A label with its value at the right margin, or a table row whose last cell is an amount.
    first, last = words[0], words[-1]
    value = last.text.strip()
    if not _is_name(first.text):
        return []
    if len(words) == 2 and not re.search(r"\d", first.text):
        return [_fact("field", first.text, value, last.box, first.box, (first, last), engine)]
    if AMOUNT.fullmatch(value) or (_CURRENCY_AMOUNT.fullmatch(value)):
        return [_fact("item", first.text, value, last.box, first.box, (first, last), engine)]
    return []


def _inline_field(word, engine: str) -> TextFact | None:
    text = word.text.strip()
    name, colon, value = text.partition(":")
    if colon and value.strip() and _is_name(name):
        return _fact("field", name, value, word.box, word.box, (word,), engine)
    match = _TRAILING_VALUE.match(text)
    if match and _is_name(match.group("name")):
        return _fact("field", match.group("name"), match.group("value"), word.box, word.box, (word,), engine)
    match = re.fullmatch(r"(?P<name>.+?)\s+[-–—]\s+(?P<value>.+)", text) or \
        re.fullmatch(r"(?P<name>[^\d\-–—]+?)[-–—](?P<value>[^\s\-–—].*)", text)
    if match and _is_name(match["name"]):
        return _fact("field", match["name"], match["value"], word.box, word.box, (word,), engine)
    return None


def _is_name(text: str) -> bool:
    text = text.strip(_LABEL_EDGES)
    return bool(text) and len(text) <= 60 and sum(c.isalpha() for c in text) >= 2 and not AMOUNT.fullmatch(text)


def _fact(kind: str, name: str, value: str, box: Box, name_box: Box, words, engine: str) -> TextFact:
    return TextFact(kind, name.strip(_LABEL_EDGES), _spaced(value.strip(_LABEL_EDGES.replace(".", ""))), box, name_box,
                    min(w.confidence for w in words), engine)


_RUN_TOGETHER_DATE = re.compile(rf"(?P<month>{_MONTH})\s*(?P<day>\d{{1,2}})[,.]\s*(?P<year>\d{{4}})|"
                                rf"(?P<day2>\d{{1,2}})\s*(?P<month2>{_MONTH})\s*(?P<year2>\d{{4}})", re.IGNORECASE)


# A letter glued before an amount where a currency sign stands: the text reader's alphabet has "$"
# and "¥" but no "£" or "€", which it reads as "f", "E" or "e".
_UNREAD_SIGN = re.compile(r"[fFEe](?=\d[\d,]*\.\d\d$)")


def _spaced(value: str) -> str:
    """A value as it is printed, where the engine ran a date's parts together ("April2,2024" is
    "April 2, 2024"; "16 Sep2025" is "16 Sep 2025"), and without a letter that stands for a currency
    sign it cannot read ("f59.34" is 59.34: the sign is left out, not guessed)."""
    value = _UNREAD_SIGN.sub("", value)
    match = _RUN_TOGETHER_DATE.fullmatch(value)
    if match is None:
        return value
    if match["month"]:
        return f"{match['month']} {match['day']}, {match['year']}"
    return f"{match['day2']} {match['month2']} {match['year2']}"


def _union(words) -> Box:
    boxes = [w.box for w in words]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _title(rows: list[OcrLine], page: OcrPage) -> TextFact | None:
    """The largest text among the rows of the page's top half that hold no number or colon and are
    not a table's header; the topmost of those within a tenth of the largest size. A text's
    size is its letters' width (its box's width over its letters): a box's height also depends on
    whether its letters have descenders, which favoured "Maple & Co." over "STATEMENT"."""
    half = page.size[1] / 2
    # Horizontal text of one or two runs: a chart's rotated axis label is a tall, narrow box, and a
    # table's header ("Item  Qty  Amount") is three.
    candidates = [row for row in rows if row.box[1] < half and sum(c.isalpha() for c in row.text) >= 2
                  and not re.search(r"\d|:", row.text) and row.box[2] - row.box[0] >= row.box[3] - row.box[1]
                  and len(row.words) <= 2]
    if not candidates:
        return None

    def size(row: OcrLine) -> float:
        return sum(w.box[2] - w.box[0] for w in row.words) / max(1, sum(len(w.text.replace(" ", "")) for w in row.words))

    largest = max(size(row) for row in candidates)
    row = min((r for r in candidates if size(r) >= 0.9 * largest), key=lambda r: r.box[1])
    return TextFact("title", "title", row.text.strip(), row.box, None, row.confidence, page.engine)
