"""Experts beside the critic's own eyes: each reads the image for a probe and says what it found.

An *expert* gets the image and probes (a question, the claimed answer, the alternatives) and, per
probe, either abstains (None: not its kind of question) or returns an :class:`ExpertReading`: its
own answer, its support for the claimed one, whether it is sure enough to count, and its evidence
(words and their boxes). The LVLM's image branch is always one expert (the local critic scores
every probe with it); :class:`OcrExpert` is a second, independent one for text probes: titles and
``Field: value`` lines, read by an OCR engine (:mod:`redgraph.models.ocr`).

How readings combine into a probe's verdict (:func:`combine`), among the experts that are sure:

- ``"agree"`` (the default): all support the claimed answer → supported; all contradict it →
  unsupported; they disagree → unsure, naming who disagreed. No sure expert → unsure.
- ``"veto"``: any sure contradiction → unsupported; else any sure support → supported; else unsure.

The LVLM is not sure of a probe whose answer it gives with less than its calibrated
``unsure_below``, nor of anything on a picture out of its calibrated range; the OCR expert is not
sure of a line it read with confidence below ``sure_at``, nor of a field it did not find.

Example:
    >>> expert = OcrExpert()  # doctest: +SKIP
    >>> [reading] = expert.read(picture, [Probe("What is the total?", "83", family="field")])  # doctest: +SKIP
    >>> reading.answer, reading.support, reading.evidence[0].text  # doctest: +SKIP
    ('83', 0.96, 'Total: 83')
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from redgraph.decoding.probes import Probe
from redgraph.errors import ConfigError

Combine = Literal["agree", "veto"]
COMBINES: tuple[str, ...] = ("agree", "veto")
EXPERT_NAMES: tuple[str, ...] = ("lvlm", "ocr")
ProbeStatus = Literal["supported", "unsupported", "unsure"]


@dataclass(frozen=True)
class Evidence:
    """What an expert saw: a piece of text and where it is (left, top, right, bottom, in pixels of
    a picture ``image_size`` large)."""

    text: str
    box: tuple[int, int, int, int]
    confidence: float
    image_size: tuple[int, int]


@dataclass(frozen=True)
class ExpertReading:
    """One expert's reading of one probe.

    Attributes:
        expert: its name (``"lvlm"``, ``"ocr"``).
        probe: the probe's index among the claim's probes.
        answer: its own answer to the probe's question (None: it found nothing to read).
        support: its support for the claimed answer, from 0 to 1.
        sure: whether the reading counts as evidence.
        evidence: the text it read and where.
        note: why it is not sure, in words (empty when it is).
    """

    expert: str
    probe: int
    answer: str | None
    support: float
    sure: bool
    evidence: tuple[Evidence, ...] = ()
    note: str = ""

    def to_dict(self) -> dict:
        return {"expert": self.expert, "probe": self.probe, "answer": self.answer, "support": self.support,
                "sure": self.sure, "note": self.note,
                "evidence": [{"text": e.text, "box": list(e.box), "confidence": e.confidence,
                              "image_size": list(e.image_size)} for e in self.evidence]}


@runtime_checkable
class Expert(Protocol):
    """Reads probes off an image; None for a probe that is not its kind."""

    name: str

    def read(self, picture, probes: Sequence[Probe]) -> list[ExpertReading | None]: ...


def combine(readings: Sequence[ExpertReading], accept_at: float, rule: Combine = "agree") -> tuple[ProbeStatus, float, tuple[str, ...]]:
    """One probe's status, support and the experts that disagreed, from its experts' readings.

    The support is the least of the sure readings' supports (the LVLM's when none is sure)."""
    sure = [r for r in readings if r.sure]
    if not sure:
        fallback = next((r.support for r in readings if r.expert == "lvlm"), min(r.support for r in readings))
        return "unsure", fallback, ()
    support = min(r.support for r in sure)
    yes = [r.expert for r in sure if r.support >= accept_at]
    no = [r.expert for r in sure if r.support < accept_at]
    if rule == "veto":
        return ("unsupported" if no else "supported"), support, tuple(no) if no and yes else ()
    if yes and no:
        return "unsure", support, tuple(sorted({*yes, *no}))
    return ("supported" if yes else "unsupported"), support, ()


def _check_shares(**values: object) -> None:
    """Refuse a setting that must be a number from 0 to 1, naming it."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} must be between 0 and 1, got {value!r}")


def check_combine(rule: object) -> str:
    if rule not in COMBINES:
        raise ConfigError(f"combine must be one of {', '.join(COMBINES)}, got {rule!r}")
    return rule


def parse_experts(value: object) -> tuple[str, ...]:
    """``"lvlm"``, ``"lvlm,ocr"`` or a sequence of those names, checked: the LVLM is always one."""
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"experts must be names such as 'lvlm,ocr', got {value!r}")
    names = tuple(dict.fromkeys(n.strip().lower() for n in names if n.strip()))
    unknown = [n for n in names if n not in EXPERT_NAMES]
    if unknown:
        raise ConfigError(f"unknown expert {unknown[0]!r}; the experts are {', '.join(EXPERT_NAMES)} (e.g. 'lvlm,ocr')")
    if "lvlm" not in names:
        raise ConfigError(f"experts {value!r} leave out the model's own eyes; the LVLM (lvlm) is always one expert: "
                          "use 'lvlm' or 'lvlm,ocr'")
    return names


def make_experts(names: object) -> tuple[Expert, ...]:
    """The experts beside the LVLM that ``names`` (see :func:`parse_experts`) asks for."""
    return tuple(OcrExpert() for name in parse_experts(names) if name == "ocr")


def make_readers() -> tuple[Expert, ...]:
    """The readers that check claims on pictures beyond the model's range: the text reader
    (RapidOCR, installed with redgraph), Tesseract where it is installed (a second, independent
    engine), and the chart reader's two readings of a bar's value (against the axis; a printed
    label). A text reader that is not installed stays in the list as a :class:`MissingReader`, so
    each run that needs it says so by name."""
    from redgraph.models.ocr import OcrEngine, ocr_available, rapidocr_available, text_reader

    missing = rapidocr_available()
    if missing:
        readers: list[Expert] = [MissingReader("rapidocr", missing)]
    else:
        readers = [DocumentExpert(text_reader()), ChartExpert("axis"), ChartExpert("label")]
    if ocr_available() is None:
        readers.append(DocumentExpert(OcrEngine()))
    return tuple(readers)


class MissingReader:
    """A reader that is not installed: asked, it fails with what to install (the critic names it)."""

    def __init__(self, name: str, install: str) -> None:
        self.name, self.install = name, install

    def read(self, picture, probes: Sequence[Probe]) -> list[ExpertReading | None]:
        raise ConfigError(self.install)


# --- OCR ---------------------------------------------------------------------------------------

_FIELD_QUESTION = re.compile(r"what is the (.+?)\s*\??", re.IGNORECASE)
_SEPARATORS = ":-–—=|\t "
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def _key(text: str) -> str:
    """How OCR text and a claimed answer are compared: case, spacing, thousands commas and edge
    punctuation do not matter."""
    text = _THOUSANDS.sub("", text.lower())
    return re.sub(r"\s+", " ", text).strip().strip(".,;:!?'\"()[]").strip()


def _field_value(line_text: str, name: str) -> str | None:
    """What follows the field's name on a line that starts with it (``Total: 83``, ``Total:83``,
    ``Total 83``, ``Total - 83``, tab-aligned), else None. The name is matched loosely (80% alike),
    as OCR misreads a letter now and then."""
    wanted = _key(name)
    text = " ".join(line_text.split())
    cut = next((i for i, ch in enumerate(text) if ch in ":=\t–—"), None)
    candidates = [] if cut is None else [(text[:cut], text[cut + 1:])]
    words = text.split(" ")
    size = len(wanted.split())
    if len(words) > size:
        candidates.append((" ".join(words[:size]), " ".join(words[size:])))
    for label, value in candidates:
        label = _key(label).rstrip(_SEPARATORS)
        if label and difflib.SequenceMatcher(None, label, wanted).ratio() >= 0.8:
            return value.strip(_SEPARATORS)
    return None


class OcrExpert:
    """Answers text probes with an OCR engine: a document's title (its topmost line) and a field's
    value (what follows the field's name on the first line that starts with it: ``Total: 83``,
    ``Total 83``, ``Total - 83`` or tab-aligned). Other probes: it abstains.

    Args:
        engine: an :class:`~redgraph.models.ocr.OcrEngine` (default: Tesseract with its defaults).
        sure_at: the least line confidence (the engine's, 0-1) for a reading to count as evidence.
        accuracy: how often a reading that counts is right: the support it gives the answer it read
            (1 − accuracy to any other). The engine's confidences are not probabilities; measured
            on the project's documents and documents in DejaVu fonts, clean and scanned, 0 of
            about 1,000 sure readings were wrong (BENCHMARKS.md, "OCR expert"), so 0.99 is a
            conservative figure. A reading that does not count keeps the engine's confidence.

    Raises:
        ConfigError: the OCR engine is not installed (it says what to install).
    """

    name = "ocr"
    families = ("title", "field")

    def __init__(self, engine=None, *, sure_at: float = 0.6, accuracy: float = 0.99) -> None:
        from redgraph.models.ocr import OcrEngine

        _check_shares(sure_at=sure_at, accuracy=accuracy)
        self.engine = OcrEngine() if engine is None else engine
        self.sure_at, self.accuracy = float(sure_at), float(accuracy)

    def read(self, picture, probes: Sequence[Probe]) -> list[ExpertReading | None]:
        if not any(p.family in self.families for p in probes):
            return [None] * len(probes)
        page = self.engine.read(picture)
        return [self._reading(page, probe, index) if probe.family in self.families else None
                for index, probe in enumerate(probes)]

    def _reading(self, page, probe: Probe, index: int) -> ExpertReading:
        if probe.family == "title":
            if not page.lines:
                return ExpertReading(self.name, index, None, 0.5, False, note="no text was read on the picture")
            line = page.lines[0]
            return self._judge(index, line.text, line, probe.claimed, page.size)
        match = _FIELD_QUESTION.fullmatch(probe.question.strip())
        if match is None:
            return ExpertReading(self.name, index, None, 0.5, False, note="the question names no field")
        name = match.group(1)
        for line in page.lines:
            value = _field_value(line.text, name)
            if value is not None:
                return self._judge(index, value, line, probe.claimed, page.size)
        return ExpertReading(self.name, index, None, 0.5, False, note=f"no line starts with the field name {name!r}")

    def _judge(self, index: int, answer: str, line, claimed: str, size: tuple[int, int]) -> ExpertReading:
        confidence = line.confidence
        agrees = bool(answer) and _key(answer) == _key(claimed)
        sure = confidence >= self.sure_at and bool(answer)
        right = self.accuracy if sure else confidence
        support = right if agrees else 1.0 - right
        evidence = (Evidence(line.text, line.box, confidence, size),)
        note = ("" if sure else "the line names the field but no value was read" if not answer
                else f"read with confidence {confidence:.2f}, below {self.sure_at:.2f}")
        return ExpertReading(self.name, index, answer or None, round(support, 4), sure, evidence, note)


# --- the readers: documents and bar charts ----------------------------------------------------------

_NUMBER_TEXT = re.compile(r"[-−]?\d[\d,.' ]*\d|\d")


def reading_key(text: str) -> str:
    """How a reader's value and a claimed one are compared: :func:`_key`, with spaces inside
    amounts and dates ignored ("$ 11.25", "15 Mar2024")."""
    return _key(text).replace(" ", "")


class DocumentExpert:
    """Answers title and field probes (``What is the total?``, ``What is the price of Coffee?``) from
    an OCR engine's page read as a document (:func:`redgraph.readers.documents.read_document`).

    Its name is its engine's (``rapidocr``, ``tesseract``), so a claim's check says which engine read
    it, and a claim an engine wrote is known to be checked by another engine or by itself only.

    Args:
        engine: an OCR engine with ``name`` and ``read(picture) -> OcrPage``.
        sure_at, accuracy: as :class:`OcrExpert`'s.
    """

    families = ("title", "field")

    def __init__(self, engine, *, sure_at: float = 0.6, accuracy: float = 0.99) -> None:
        _check_shares(sure_at=sure_at, accuracy=accuracy)
        self.engine, self.name = engine, engine.name
        self.sure_at, self.accuracy = float(sure_at), float(accuracy)

    def read(self, picture, probes: Sequence[Probe]) -> list[ExpertReading | None]:
        from redgraph.agents.reading import field_name, parse_question
        from redgraph.readers.documents import read_document

        if not any(p.family in self.families for p in probes):
            return [None] * len(probes)
        document = read_document(self.engine.read(picture))
        readings: list[ExpertReading | None] = []
        for index, probe in enumerate(probes):
            asked = parse_question(probe.question) if probe.family in self.families else None
            if asked is None or asked.kind not in ("title", "field"):
                readings.append(None)
                continue
            fact = document.title if asked.kind == "title" else document.field(field_name(asked.name))
            if fact is None:
                what = "no title" if asked.kind == "title" else f"no field or item named {field_name(asked.name)!r}"
                readings.append(ExpertReading(self.name, index, None, 0.5, False, note=f"{what} was read"))
                continue
            agrees = reading_key(fact.value) == reading_key(probe.claimed)
            sure = fact.confidence >= self.sure_at
            right = self.accuracy if sure else fact.confidence
            evidence = (Evidence(fact.value, fact.box, fact.confidence, document.size),)
            note = "" if sure else f"read with confidence {fact.confidence:.2f}, below {self.sure_at:.2f}"
            readings.append(ExpertReading(self.name, index, fact.value, round(right if agrees else 1 - right, 4), sure,
                                          evidence, note))
        return readings


class ChartExpert:
    """Answers bar-chart probes from the chart reader (:mod:`redgraph.readers.charts`), one of its two
    readings of a bar's value: ``source="axis"`` (the bar's end against the fitted axis; it also
    answers which bar is the tallest or shortest, how many bars there are and a bar's colour, from
    the bars' pixels) or ``source="label"`` (the value printed at the bar's end, where there is one).
    The two are independent readings of the same value: where both read it, both are used.

    Args:
        source: ``"axis"`` or ``"label"``.
        tolerance: an axis reading agrees with a claimed value within this share of the value (or of
            the axis's span, for values near 0); a printed label must match exactly.
        accuracy: the support a sure reading gives the answer it read (1 − accuracy to another).
    """

    families = ("bar_value", "bar_extreme", "bar_count", "bar_colour")

    def __init__(self, source: str = "axis", *, tolerance: float = 0.05, accuracy: float = 0.98) -> None:
        if source not in ("axis", "label"):
            raise ConfigError(f"source must be 'axis' or 'label', got {source!r}")
        _check_shares(tolerance=tolerance, accuracy=accuracy)
        self.source, self.name = source, f"chart_{source}"
        self.tolerance, self.accuracy = float(tolerance), float(accuracy)

    def read(self, picture, probes: Sequence[Probe]) -> list[ExpertReading | None]:
        from redgraph.agents.reading import read_picture
        from redgraph.readers.charts import Abstention

        mine = [p.family in self.families and (self.source == "axis" or p.family == "bar_value") for p in probes]
        if not any(mine):
            return [None] * len(probes)
        _, chart = read_picture(picture)
        if isinstance(chart, Abstention):
            return [ExpertReading(self.name, i, None, 0.5, False, note=f"the chart reader abstains: {chart.reason}")
                    if wanted else None for i, wanted in enumerate(mine)]
        return [self._reading(chart, probe, i) if wanted else None for i, (probe, wanted) in enumerate(zip(probes, mine))]

    def _reading(self, chart, probe: Probe, index: int) -> ExpertReading:
        from redgraph.agents.reading import parse_question

        asked = parse_question(probe.question)
        size = chart.size
        if asked is None:
            return ExpertReading(self.name, index, None, 0.5, False, note="the question is not one the chart reader answers")
        if asked.kind == "bar_count":
            return self._judge(index, str(len(chart.bars)), _key(probe.claimed) == str(len(chart.bars)), (), size)
        if asked.kind in ("tallest", "shortest"):
            bar = chart.tallest() if asked.kind == "tallest" else chart.shortest()
            if bar is None:
                return ExpertReading(self.name, index, None, 0.5, False, note=f"no single {asked.kind} bar: they tie")
            name = bar.label or bar.colour
            return self._judge(index, name, reading_key(name) == reading_key(probe.claimed), (bar,), size)
        bar = chart.bar(asked.name or "") or next((b for b in chart.bars if b.label is None
                                                  and b.colour == _key(asked.name or "")), None)
        if bar is None:
            return ExpertReading(self.name, index, None, 0.5, False, note=f"no bar labelled {asked.name!r} was read")
        if asked.kind == "bar_colour":
            return self._judge(index, bar.colour, _key(probe.claimed) in (bar.colour, bar.colour.replace("grey", "gray")),
                               (bar,), size)
        claimed = _number(probe.claimed)
        if self.source == "label":
            if bar.label_value is None:
                return ExpertReading(self.name, index, None, 0.5, False, note="no value is printed at the bar")
            agrees = claimed is not None and math.isclose(claimed, bar.label_value, rel_tol=1e-9, abs_tol=1e-9)
            return self._judge(index, bar.label_text, agrees, (bar,), size)
        if bar.axis_value is None or chart.axis is None:
            return ExpertReading(self.name, index, None, 0.5, False, note="no axis could be read for the bar")
        allowed = max(self.tolerance * abs(bar.axis_value), 0.01 * chart.axis.span)
        agrees = claimed is not None and abs(claimed - bar.axis_value) <= allowed
        return self._judge(index, chart.axis.format(bar.axis_value), agrees, (bar,), size)

    def _judge(self, index: int, answer: str, agrees: bool, bars, size) -> ExpertReading:
        evidence = tuple(Evidence(answer, tuple(int(v) for v in b.box), 1.0, tuple(size)) for b in bars)
        support = self.accuracy if agrees else 1.0 - self.accuracy
        return ExpertReading(self.name, index, answer, round(support, 4), True, evidence)


def _number(text: str) -> float | None:
    """The number a claimed value writes ("1,204", "$27.5", "40 %"), else None."""
    match = _NUMBER_TEXT.search(text.replace("−", "-"))
    if match is None:
        return None
    digits = match.group().replace(",", "").replace("'", "").replace(" ", "")
    try:
        return float(digits)
    except ValueError:
        return None
