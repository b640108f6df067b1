"""The words and numbers the synthetic scenes are made of: the standard vocabulary the embedded model
was trained on, a wide one, and words neither holds, to measure reading what training never showed.

- :data:`STANDARD`: five colours, ten document titles, six field names, bar values 1-9 and field
  values 10-99. Every scene the generator has drawn so far, and the shipped model's world.
- :data:`WIDE`: eleven colours (the five and orange, pink, brown, grey, black and cyan, by the names
  matplotlib uses), 50 titles and 50 field names a receipt, invoice, form or report has, bar values
  1-100 read against the axis, and field values as documents write them: whole numbers up to 999,
  decimals (``12.50``), thousands (``1,204``) and amounts (``$3.99``).
- :data:`UNSEEN_TITLES`, :data:`UNSEEN_FIELDS` and :func:`unseen_value`: titles, field names and
  value forms in neither vocabulary (``benchmarks/unseen_words.py`` reads them).

A scene's vocabulary is the smallest of these that holds all of it
(:func:`redgraph.data.scenes.vocabulary_of`), so a
scene record needs no extra field, and the standard scenes, their records and their splits are
what they were.

Example:
    >>> import random
    >>> WIDE.field_value(random.Random(3))  # doctest: +SKIP
    '$41.07'
    >>> value_of("12"), value_of("1,204")
    (12, '1,204')
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from redgraph.errors import InputError, RedgraphError

_STANDARD_COLOURS = ("red", "green", "blue", "yellow", "purple")
_STANDARD_TITLES = ("receipt", "invoice", "menu", "report", "order", "budget", "sales", "ticket", "notes", "agenda")
_STANDARD_FIELDS = ("total", "tax", "price", "items", "score", "room")

# Each colour as the project's own renderer paints it. The five standard ones are its own shades; the
# wide ones are matplotlib's CSS colours of the same names (a test compares them).
RGB = {
    "red": (220, 30, 30),
    "green": (30, 160, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 200, 20),
    "purple": (140, 50, 170),
    "orange": (255, 165, 0),
    "pink": (255, 192, 203),
    "brown": (165, 42, 42),
    "grey": (128, 128, 128),
    "black": (0, 0, 0),
    "cyan": (0, 255, 255),
}

_WIDE_TITLES = _STANDARD_TITLES + (
    "application", "appointment", "assessment", "booking", "cashflow", "claim", "complaint", "confirmation",
    "consent", "donation", "enrolment", "evaluation", "feedback", "grades", "guarantee", "incident", "insurance",
    "itinerary", "loan", "membership", "mileage", "notice", "overtime", "packing", "payment", "payroll", "pension",
    "purchase", "quotation", "rental", "reminder", "renewal", "reservation", "results", "return", "salary",
    "shipment", "subscription", "tender", "warranty",
)
_WIDE_FIELDS = _STANDARD_FIELDS + (
    "amount", "balance", "discount", "subtotal", "tip", "fee", "charge", "change", "cash", "card", "quantity",
    "weight", "volume", "height", "width", "length", "age", "year", "month", "day", "hours", "rate", "wage",
    "bonus", "cost", "rent", "interest", "debit", "units", "pages", "seats", "floor", "gate", "account", "code",
    "batch", "size", "grade", "level", "points", "votes", "guests", "nights", "miles",
)

# Titles and field names no vocabulary here holds: what a model reads of them it reads letter by letter.
UNSEEN_TITLES = (
    "memo", "quote", "statement", "bill", "summary", "minutes", "schedule", "roster", "payslip", "voucher",
    "estimate", "manifest", "inventory", "checklist", "timesheet", "expenses", "delivery", "refund", "credit",
    "deposit", "contract", "lease", "permit", "license", "certificate", "diploma", "prescription", "referral",
    "waybill", "docket", "catalog", "brochure", "flyer", "poster", "bulletin", "newsletter", "journal", "ledger",
    "register", "survey", "census", "ballot", "petition", "proposal", "review", "audit", "forecast", "plan",
    "profile", "transcript",
)
UNSEEN_FIELDS = (
    "freight", "duty", "surcharge", "commission", "premium", "margin", "profit", "loss", "stock", "capacity",
    "mass", "depth", "radius", "altitude", "rating", "rank", "tariff", "toll", "quota", "headcount",
)

# How a document writes a field's value, by form. ``whole`` is an int; the others are text.
VALUE_FORMS = ("whole", "decimal", "thousands", "currency")
_PATTERNS = {
    "whole": r"\d+",
    "decimal": r"\d+\.\d\d",
    "thousands": r"\d{1,3}(?:,\d{3})+",
    "currency": r"\$\d+\.\d\d",
}
_WHOLE = re.compile(r"[1-9]\d*|0")


def value_of(text: str) -> int | str:
    """A field's value as scenes hold it: a whole number without leading zeros as an int, anything
    else (``12.50``, ``1,204``, ``$3.99``) as its text."""
    return int(text) if _WHOLE.fullmatch(text) else text


@dataclass(frozen=True)
class Vocabulary:
    """What a scene can hold. ``whole`` is the range of a whole field value; ``forms`` the forms of
    field values (:data:`VALUE_FORMS`); ``bar_values`` the range of a bar's value."""

    name: str
    colours: tuple[str, ...]
    titles: tuple[str, ...]
    fields: tuple[str, ...]
    bar_values: range
    whole: range
    forms: tuple[str, ...]

    @property
    def seed_prefix(self) -> str:
        """What this vocabulary's random streams put before their seed: nothing for the standard one
        (its items and charts are the ones they always were), else its name and a colon."""
        return "" if self.name == "standard" else f"{self.name}:"

    def field_value(self, rng: random.Random) -> int | str:
        """A random field value of this vocabulary (see :func:`value_of` for its type)."""
        return self._of_form(self.forms[0] if len(self.forms) == 1 else rng.choice(self.forms), rng)

    def other_field_value(self, value: int | str, rng: random.Random) -> int | str:
        """Another value of ``value``'s form (a misleading rationale's, a false claim's)."""
        form = form_of(value)
        if form == "whole":
            return rng.choice([v for v in self.whole if v != value])
        while (other := self._of_form(form, rng)) == value:
            pass
        return other

    def _of_form(self, form: str, rng: random.Random) -> int | str:
        if form == "whole":
            return rng.randint(self.whole.start, self.whole.stop - 1)
        if form == "decimal":
            return f"{rng.randint(1, 99)}.{rng.randint(0, 99):02d}"
        if form == "thousands":
            return f"{rng.randint(1, 9)},{rng.randint(0, 999):03d}"
        return f"${rng.randint(1, 99)}.{rng.randint(0, 99):02d}"

    def holds_value(self, value: int | str) -> bool:
        return value in self.whole if isinstance(value, int) else form_of(value) in self.forms

    def value_pattern(self) -> str:
        """A regular expression for a field value this vocabulary writes (longest forms first)."""
        return "|".join(_PATTERNS[form] for form in ("currency", "thousands", "decimal", "whole") if form in self.forms)


def form_of(value: int | str) -> str:
    """The form (:data:`VALUE_FORMS`) of a field value; InputError for text of none of them."""
    if isinstance(value, int):
        return "whole"
    for form in ("decimal", "thousands", "currency"):
        if re.fullmatch(_PATTERNS[form], value):
            return form
    raise InputError(f"field value {value!r} is of no known form; write it as 12, 12.50, 1,204 or $3.99")


STANDARD = Vocabulary("standard", _STANDARD_COLOURS, _STANDARD_TITLES, _STANDARD_FIELDS, range(1, 10),
                      range(10, 100), ("whole",))
WIDE = Vocabulary("wide", tuple(RGB), _WIDE_TITLES, _WIDE_FIELDS, range(1, 101), range(1, 1000), VALUE_FORMS)
VOCABULARIES = {vocabulary.name: vocabulary for vocabulary in (STANDARD, WIDE)}


def vocabulary_named(name: str, error: type[RedgraphError] = InputError) -> Vocabulary:
    """The vocabulary called ``name``; ``error`` naming the known ones otherwise."""
    if not isinstance(name, str) or name not in VOCABULARIES:
        raise error(f"unknown vocabulary {name!r}; choose one of {', '.join(VOCABULARIES)}")
    return VOCABULARIES[name]


def unseen_value(rng: random.Random) -> str:
    """A field value in a form neither vocabulary writes: five digits with a separator (``12,345``), a
    pound amount (``£4.20``) or a percentage (``12.5%``)."""
    form = rng.choice(("thousands", "pounds", "percent"))
    if form == "thousands":
        return f"{rng.randint(10, 99)},{rng.randint(0, 999):03d}"
    if form == "pounds":
        return f"£{rng.randint(1, 99)}.{rng.randint(0, 99):02d}"
    return f"{rng.randint(1, 99)}.{rng.randint(1, 9)}%"
