"""The reading reasoner: facts-style rationales written from what the readers read, each claim with
its evidence; and the team that decides, picture by picture, which reasoner writes.

:class:`ReadingReasoner` reads the picture with the text reader (RapidOCR, :mod:`redgraph.models.ocr`)
and, where the picture is a bar chart, the chart reader (:mod:`redgraph.readers.charts`), then writes
the facts the question needs in the claim forms the critic checks:

    The title is RECEIPT. The total is $11.25.
    The Q2 bar is the tallest.      The Q3 bar is 27.      There are 4 bars.      The Q1 bar is blue.

Each claim keeps its evidence (the reader, the text or bar it read, its box), and the rationale
records what the readers read for the question itself (``reading``), so the answer can be held to
it. Where the readers find nothing the question asks, it writes nothing and says why.

:class:`ReasonerTeam` is the default reasoner of the graph: on pictures in the model's calibrated
range (the project's own kinds) the model's own reasoner writes, as before; beyond it, where the
model's eyes cannot read (BENCHMARKS.md, "Reading the user's pictures"), the reading reasoner does,
and the model's reasoner only where the readers cannot read the picture.

Example:
    >>> reasoner = ReadingReasoner()  # doctest: +SKIP
    >>> [r.text for r in reasoner.write("receipt.png", "What is the total?")]  # doctest: +SKIP
    ['The total is $11.25.']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from redgraph.agents.reasoner import LocalReasoner, Rationale
from redgraph.errors import ConfigError, check_question, check_whole_number
from redgraph.models.images import ImageInput, ready_image
from redgraph.models.ocr import KeptReadings

AskedKind = Literal["title", "field", "tallest", "shortest", "bar_value", "bar_count", "bar_colour"]
READING_MODEL = "readers"  # the name a reading rationale's writer goes by (with its engines: see ``model``)
_MOST = r"tallest|highest|longest|largest|biggest|greatest|most|maximum|max|top"
_LEAST = r"shortest|lowest|smallest|least|fewest|minimum|min|bottom"


@dataclass(frozen=True)
class Asked:
    """What a question asks, as the readers can answer it: a kind and the thing it names."""

    kind: AskedKind
    name: str | None = None  # a field or item ("total", "price of coffee"), a bar's label


def parse_question(question: str) -> Asked | None:
    """What ``question`` asks of a document or a bar chart, or None when the readers cannot answer it.

    >>> parse_question("Which bar is the tallest?")
    Asked(kind='tallest', name=None)
    >>> parse_question("What is the value of the Q3 bar?")
    Asked(kind='bar_value', name='Q3')
    >>> parse_question("How much is the Coffee?")
    Asked(kind='field', name='price of Coffee')
    """
    text = " ".join(question.strip().split()).rstrip("?. ")
    low = text.lower()
    if re.search(r"\bhow many bars\b", low):
        return Asked("bar_count")
    if re.fullmatch(r"what(?:'s| is| was)? the (?:title|heading|headline)(?: of (?:the|this) \w+)?", low) \
            or re.fullmatch(r"what is (?:the|this) (?:document|chart|picture|page) (?:called|titled)", low):
        return Asked("title")
    if re.search(rf"\bwhich\b.*\b(?:{_MOST})\b", low) and not re.search(rf"\b(?:{_LEAST})\b", low):
        return Asked("tallest")
    if re.search(rf"\bwhich\b.*\b(?:{_LEAST})\b", low):
        return Asked("shortest")
    if match := re.fullmatch(r"what colou?r is (?:the )?(.+?)(?: bar)?", text, re.IGNORECASE):
        return Asked("bar_colour", match.group(1))
    for pattern in (r"what(?:'s| is| was) the value (?:of|for) (?:the )?(.+?)(?: bar)?",
                    r"what(?:'s| is| was) (?:the )?(.+?)(?: bar)?'s value", r"how (?:high|tall|long) is (?:the )?(.+?)(?: bar)?",
                    r"what(?:'s| is| was) the (.+?) bar"):
        if match := re.fullmatch(pattern, text, re.IGNORECASE):
            return Asked("bar_value", match.group(1))
    for pattern in (r"what(?:'s| is| was) the (?:price|cost|amount) (?:of|for) (?:the |an? )?(.+?)",
                    r"how much (?:is|was|does|did|are) (?:the |an? )?(.+?)(?: cost)?"):
        if match := re.fullmatch(pattern, text, re.IGNORECASE):
            return Asked("field", f"price of {match.group(1)}")
    if match := re.fullmatch(r"what(?:'s| is| was) (?:the |its )?(.+?)(?: on (?:the|this) \w+)?", text, re.IGNORECASE):
        name = match.group(1)
        if not re.fullmatch(r"(?:answer|question|picture|image|this|it)", name, re.IGNORECASE):
            return Asked("field", name)
    return None


def field_name(asked_name: str) -> str:
    """The document's own name for a field a question names: "price of Coffee" is the item "Coffee"."""
    match = re.fullmatch(r"(?:price|cost|amount) of (?:the )?(.+)", asked_name, re.IGNORECASE)
    return match.group(1) if match else asked_name


@dataclass(frozen=True)
class Reading:
    """What the readers read for one question: the claims that answer it (text, evidence), the
    answer itself as read, and the readers that read it."""

    claims: tuple[tuple[str, dict], ...]
    answer: str | None
    readers: tuple[str, ...]
    abstained: tuple[str, ...] = ()  # readers that could not read the picture, and why


def read_for(picture, question: str) -> Reading:
    """Read ``picture`` for ``question``: a bar chart through the chart reader, else a document through
    the text reader. Raises :class:`~redgraph.errors.ExpertError` or ConfigError when a reader is
    missing or fails (the caller says so by name)."""
    from redgraph.readers.charts import Abstention
    from redgraph.readers.documents import read_document

    asked = parse_question(question)
    page, chart = read_picture(picture)
    abstained = (f"chart: {chart.reason}",) if isinstance(chart, Abstention) else ()
    if asked is None:
        return Reading((), None, (), (*abstained, f"readers: the question {question!r} is not one they answer"))
    if not isinstance(chart, Abstention) and asked.kind != "field":
        return _chart_reading(chart, asked, page.engine, picture.size)
    if asked.kind not in ("title", "field"):
        return Reading((), None, (), abstained)
    document = read_document(page)
    fact = document.title if asked.kind == "title" else document.field(field_name(asked.name))
    if fact is None:
        what = "a title" if asked.kind == "title" else f"a field or item named {field_name(asked.name)!r}"
        return Reading((), None, (), (*abstained, f"{page.engine}: found no {what} on the picture"))
    sentence = f"The title is {fact.value}." if asked.kind == "title" else f"The {asked.name} is {fact.value}."
    return Reading(((sentence, fact.to_evidence(document.size)),), fact.value, (page.engine,), abstained)


class _ChartReadings(KeptReadings):
    """The chart reader's readings of the last pictures it read (on the text reader's pages)."""

    def _read(self, picture):
        from redgraph.models.ocr import text_reader
        from redgraph.readers.charts import read_bar_chart

        return read_bar_chart(picture, text_reader().read(picture))


_CHARTS = _ChartReadings(keep=64)


def read_picture(picture):
    """The text reader's page of ``picture`` and the chart reader's reading of it (a
    :class:`~redgraph.readers.charts.ChartReading` or its abstention), each made once per picture:
    the reading reasoner and the critic's experts share them."""
    from redgraph.models.ocr import text_reader

    return text_reader().read(picture), _CHARTS.read(picture)


def _chart_reading(chart, asked: Asked, engine: str, size: tuple[int, int]) -> Reading:
    def evidence(bar, how: str) -> dict:
        return {"reader": "chart", "text_reader": engine, "kind": how, "name": bar.label or bar.colour,
                "text": bar.value_text, "box": list(bar.box), "colour": bar.colour,
                "value_source": "label" if bar.label_text is not None else "axis",
                "image_size": list(size)}

    def name(bar) -> str:
        return bar.label or bar.colour

    if asked.kind == "title":
        if not chart.title:
            return Reading((), None, (), ("chart: found no title above the plot",))
        return Reading(((f"The title is {chart.title}.", {"reader": "chart", "text_reader": engine, "kind": "title",
                                                           "text": chart.title, "box": list(chart.title_box),
                                                           "image_size": list(size)}),),
                       chart.title, ("chart",))
    if asked.kind == "bar_count":
        return Reading(((f"There are {len(chart.bars)} bars.", {"reader": "chart", "kind": "bar_count",
                                                                 "text": str(len(chart.bars)),
                                                                 "boxes": [list(b.box) for b in chart.bars],
                                                                 "image_size": list(size)}),),
                       str(len(chart.bars)), ("chart",))
    if asked.kind in ("tallest", "shortest"):
        bar = chart.tallest() if asked.kind == "tallest" else chart.shortest()
        if bar is None:
            return Reading((), None, (), (f"chart: no single {asked.kind} bar (the longest bars tie)",))
        which = "tallest" if asked.kind == "tallest" else "shortest"
        return Reading(((f"The {name(bar)} bar is the {which}.", evidence(bar, asked.kind)),), name(bar), ("chart",))
    bar = chart.bar(asked.name)
    if bar is None:
        return Reading((), None, (), (f"chart: no bar labelled {asked.name!r}",))
    if asked.kind == "bar_colour":
        return Reading(((f"The {name(bar)} bar is {bar.colour}.", evidence(bar, "bar_colour")),), bar.colour, ("chart",))
    return Reading(((f"The {name(bar)} bar is {bar.value_text}.", evidence(bar, "bar_value")),), bar.value_text,
                   ("chart",))


class ReadingReasoner:
    """Writes one facts-style rationale from what the readers read (see the module's docstring).

    Readers are deterministic: asked for K rationales it writes one; a revision after a critique
    reads again and writes the same facts (the critic then decides on them again).
    """

    model_name = READING_MODEL

    def write(self, image: ImageInput, question: str, k: int = 1, *, critique: str | None = None) -> list[Rationale]:
        check_question(question)
        check_whole_number("k (rationales per question)", k)
        picture = ready_image(image)
        return rationales_of(read_for(picture, question))


def rationales_of(reading: Reading) -> list[Rationale]:
    """The reading reasoner's rationale from what the readers read: none where they read nothing."""
    if not reading.claims:
        return []
    text = " ".join(sentence for sentence, _ in reading.claims)
    return [Rationale(text, "facts", f"{READING_MODEL}:{'+'.join(reading.readers)}",
                      evidence=tuple({"claim": s, **e} for s, e in reading.claims), reading=reading.answer,
                      notes=reading.abstained)]


WHEN = ("out_of_range", "always", "never")
# How a rationale's notes say the readers failed (the graph flags such a run reader_failed).
READERS_FAILED = "readers failed"


class ReasonerTeam:
    """The reasoners of one run, and who writes for a picture.

    Args:
        lvlm_reasoner: the run's reasoner: the model's own (:class:`~redgraph.agents.reasoner.LocalReasoner`),
            which the readers replace beyond the model's range, or another (a remote model, a
            script), which writes beside them.
        lvlm: the model whose calibrated range decides (its ``calibration``); None: every picture is
            in range.
        readers: when the reading reasoner writes: ``"out_of_range"`` (the default: pictures beyond the
            model's calibrated range, where its eyes read 0.04-0.17 of other tools' pictures),
            ``"always"`` (beside the model's reasoner on every picture) or ``"never"``.

    A reader that is missing or fails is recorded by name on the rationales the model's reasoner then
    writes (``notes``), and the run's answer is flagged (``reader_failed``).
    """

    def __init__(self, lvlm_reasoner, lvlm=None, *, readers: str = "out_of_range") -> None:
        if readers not in WHEN:
            raise ConfigError(f"readers must be one of {', '.join(WHEN)}, got {readers!r}")
        self.lvlm_reasoner, self.lvlm, self.readers = lvlm_reasoner, lvlm, readers
        self.model_name = getattr(lvlm_reasoner, "model_name", "reasoner")

    def write(self, image: ImageInput, question: str, k: int = 1, *, critique: str | None = None) -> list[Rationale]:
        import dataclasses

        picture = ready_image(image, max_pixels=getattr(self.lvlm, "max_image_pixels", 64_000_000))
        if self.readers == "never" or (self.readers == "out_of_range" and not picture_out_of_range(self.lvlm, picture)):
            return self.lvlm_reasoner.write(picture, question, k, critique=critique)
        check_question(question)
        try:
            reading = read_for(picture, question)
            notes = () if reading.claims else ("readers wrote nothing", *reading.abstained)
        except Exception as exc:  # noqa: BLE001 - a missing or failing reader on any picture: said, never silent
            reading, notes = None, (f"{READERS_FAILED}: {type(exc).__name__}: {exc}",)
        read = rationales_of(reading) if reading is not None else []
        if read and self.readers == "out_of_range" and isinstance(self.lvlm_reasoner, LocalReasoner):
            return read  # the model's own reasoner would write with eyes that cannot read this picture
        written = self.lvlm_reasoner.write(picture, question, k, critique=critique)
        return read + [dataclasses.replace(r, notes=(*r.notes, *notes)) if notes else r for r in written]


def picture_out_of_range(lvlm, picture) -> bool:
    """Whether ``picture`` lies beyond ``lvlm``'s calibrated range (False without a calibration)."""
    calibration = getattr(lvlm, "calibration", None)
    if calibration is None:
        return False
    return calibration.is_novel(calibration.novelty(lvlm, picture))
