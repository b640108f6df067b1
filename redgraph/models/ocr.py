"""Reading the words on a picture with an OCR engine: RapidOCR (installed with redgraph) or Tesseract.

:class:`RapidOcrEngine` runs PaddleOCR's PP-OCRv4 models on onnxruntime; the models ship inside the
``rapidocr-onnxruntime`` wheel, so ``pip install redgraph`` (and ``scripts/setup.sh``) gives a text
reader on a fresh machine, offline, without root or a system package. It reads one box per run of
text (a title, "Total:", "$11.25"); :meth:`OcrPage.rows` groups runs on one line.

:class:`OcrEngine` is Tesseract, a second and independent engine where it is installed: Debian's
``tesseract-ocr`` (``apt install tesseract-ocr``; Homebrew and conda have it too), run with the
English model it ships; ``pytesseract`` (``pip install 'redgraph[ocr]'``) calls it. Where both are
there, a claim one of them wrote is checked by the other (:mod:`redgraph.agents.experts`).

A page is read once and kept (:class:`OcrPage`: lines of words, each with its box in the picture's
pixels and the engine's confidence); the same picture read again, by another probe or another
round of the critic, is not run through the engine twice.

Example:
    >>> page = OcrEngine().read(picture)  # doctest: +SKIP
    >>> page.lines[0].text, page.lines[0].box  # doctest: +SKIP
    ('INVOICE', (8, 5, 74, 18))
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image

from redgraph.errors import ConfigError, ExpertError, InputError
from redgraph.models.images import image_sha256

Box = tuple[int, int, int, int]  # left, top, right, bottom, in the picture's pixels
INSTALL = ("the OCR expert needs pytesseract and the tesseract program: pip install 'redgraph[ocr]' and "
           "apt install tesseract-ocr (or your system's tesseract package)")


@dataclass(frozen=True)
class OcrWord:
    text: str
    box: Box
    confidence: float  # the engine's, from 0 to 1


@dataclass(frozen=True)
class OcrLine:
    """One line of text as the engine grouped it, top to bottom."""

    words: tuple[OcrWord, ...]

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    @property
    def box(self) -> Box:
        boxes = [w.box for w in self.words]
        return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))

    @property
    def confidence(self) -> float:
        """The least sure word's: a line is read as well as its worst word."""
        return min(w.confidence for w in self.words)


@dataclass(frozen=True)
class OcrPage:
    size: tuple[int, int]  # the picture's width and height: what the boxes are measured in
    lines: tuple[OcrLine, ...]
    engine: str = "tesseract"  # who read it
    skew: float = 0.0  # the text's slope (dy/dx) on a scan fed in slightly rotated; rows follow it

    def rows(self) -> tuple[OcrLine, ...]:
        """The lines joined into rows of the page, top to bottom, each row's words left to right: runs
        whose vertical middles lie within each other's height are one row (a label and its value at
        the right margin, the cells of a table row)."""
        def level(box: Box) -> float:  # a box's top as if the page were not skewed
            return -self.skew * (box[0] + box[2]) / 2

        rows: list[list[OcrWord]] = []
        for line in sorted(self.lines, key=lambda line: (line.box[1] + line.box[3]) / 2 + level(line.box)):
            top, bottom = line.box[1] + level(line.box), line.box[3] + level(line.box)
            middle = (top + bottom) / 2
            if rows:
                last = rows[-1]
                last_top = min(w.box[1] + level(w.box) for w in last)
                last_bottom = max(w.box[3] + level(w.box) for w in last)
                if last_top <= middle <= last_bottom and top <= (last_top + last_bottom) / 2 <= bottom:
                    last.extend(line.words)
                    continue
            rows.append(list(line.words))
        return tuple(OcrLine(tuple(sorted(words, key=lambda w: w.box[0]))) for words in rows)


RAPIDOCR_INSTALL = ("the text reader needs rapidocr-onnxruntime, which redgraph installs: pip install "
                    "rapidocr-onnxruntime (Python 3.10-3.12)")


def ocr_available() -> str | None:
    """None when Tesseract can run here, else what to install."""
    if importlib.util.find_spec("pytesseract") is None or shutil.which("tesseract") is None:
        return INSTALL
    return None


def rapidocr_available() -> str | None:
    """None when RapidOCR can run here, else what to install."""
    if importlib.util.find_spec("rapidocr_onnxruntime") is None:
        return RAPIDOCR_INSTALL
    return None


class KeptReadings:
    """The last ``keep`` readings a reader made (an engine's pages; the chart reader's readings), by
    the picture's pixels: the same picture read again (another probe, another round, the reasoner
    then the critic) is not read twice. Subclasses say how to read (``_read``)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._pages: OrderedDict[str, OcrPage] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, picture: Image.Image) -> OcrPage:
        """The lines on ``picture`` (a PIL image), top to bottom."""
        if not isinstance(picture, Image.Image):
            raise InputError(f"the OCR engine reads PIL images, got {type(picture).__name__}")
        key = image_sha256(picture)
        with self._lock:
            if key in self._pages:
                self._pages.move_to_end(key)
                return self._pages[key]
        page = self._read(picture)
        with self._lock:
            self._pages[key] = page
            while len(self._pages) > self.keep:
                self._pages.popitem(last=False)
        return page

    def _read(self, picture: Image.Image) -> OcrPage:
        raise NotImplementedError


class RapidOcrEngine(KeptReadings):
    """RapidOCR (PP-OCRv4 detection and recognition on onnxruntime, models from its wheel), reading
    whole pictures into :class:`OcrPage`: one line per run of text, with its box and confidence.

    Args:
        max_side: a picture whose longer side is above this is scaled down to it first (the boxes
            are given in the picture's own pixels either way).
        min_side: a picture whose longer side is below this is enlarged towards it first (at most
            twice): at a chart's 640 x 480 the recogniser ran words together ("Salesby quarter")
            and missed a tick label that it reads at twice the size.
        keep: how many pages are kept (see :class:`OcrEngine`).

    Raises:
        ConfigError: rapidocr-onnxruntime is not installed (it says what to install).
    """

    name = "rapidocr"

    def __init__(self, *, max_side: int = 2000, min_side: int = 1280, keep: int = 64) -> None:
        for name, value in (("max_side", max_side), ("min_side", min_side)):
            if isinstance(value, bool) or not isinstance(value, int) or not 64 <= value <= 8192:
                raise ConfigError(f"{name} must be a whole number of pixels from 64 to 8192, got {value!r}")
        if min_side > max_side:
            raise ConfigError(f"min_side ({min_side}) must not be above max_side ({max_side})")
        missing = rapidocr_available()
        if missing:
            raise ConfigError(missing)
        super().__init__(keep)
        self.max_side, self.min_side = max_side, min_side
        self._engine = _rapidocr()

    def _read(self, picture: Image.Image) -> OcrPage:
        import unicodedata

        import numpy as np

        seen = picture.convert("RGB")
        longest = max(seen.size)
        factor = self.max_side / longest if longest > self.max_side else min(2.0, max(1.0, self.min_side / longest))
        if factor != 1.0:
            seen = seen.resize((max(1, round(seen.width * factor)), max(1, round(seen.height * factor))),
                               Image.Resampling.LANCZOS)
        try:
            found, _ = self._engine(np.ascontiguousarray(np.asarray(seen)[:, :, ::-1]))  # RapidOCR reads BGR
        except Exception as exc:  # noqa: BLE001 - onnxruntime and OpenCV raise their own
            raise ExpertError(f"the text reader (RapidOCR) failed on the picture: {type(exc).__name__}: {exc}") from exc
        lines, slopes = [], []
        for quad, text, score in found or ():
            text = " ".join(unicodedata.normalize("NFKC", text).split())
            if not text:
                continue
            xs, ys = [p[0] / factor for p in quad], [p[1] / factor for p in quad]
            box = (int(min(xs)), int(min(ys)), int(round(max(xs))), int(round(max(ys))))
            lines.append(OcrLine((OcrWord(text, box, round(float(score), 4)),)))
            (x0, y0), (x1, y1) = quad[0], quad[1]  # the run's top edge, left to right
            if x1 - x0 > 3 * abs(ys[3] - ys[0]) and x1 > x0:  # long runs only: a short one's edge is noise
                slopes.append((y1 - y0) / (x1 - x0))
        lines.sort(key=lambda line: (line.box[1], line.box[0]))
        skew = float(sorted(slopes)[len(slopes) // 2]) if len(slopes) >= 3 else 0.0
        return OcrPage(picture.size, tuple(lines), engine=self.name, skew=skew)


@functools.lru_cache(maxsize=1)
def _rapidocr():
    """One RapidOCR per process (its three ONNX sessions take about half a second to load); its
    calls are thread-safe (onnxruntime sessions are)."""
    from rapidocr_onnxruntime import RapidOCR

    # Detection on the picture scaled so its longer side is 960 px: the package's default (the
    # shorter side at least 736) enlarges small pictures and ran words together ("29Mar2024") and
    # lost short lines on receipts drawn at 520 x 420 that this setting reads.
    return RapidOCR(det_limit_type="max", det_limit_side_len=960)


@functools.lru_cache(maxsize=1)
def text_reader() -> RapidOcrEngine:
    """The process's RapidOCR engine and the pages it has read (the reading reasoner and the critic
    share them, so a picture is read once per run)."""
    return RapidOcrEngine()


class OcrEngine(KeptReadings):
    """Tesseract, reading whole pictures into :class:`OcrPage` (the last ``keep`` pages are kept).

    Args:
        psm: Tesseract's page segmentation mode; 6 (one uniform block of text) read the project's
            and the font documents best (BENCHMARKS.md); 3 is its automatic layout analysis.
        timeout_s: a picture the engine has not read in this time is an error.
        scale: pictures whose shorter side is below 300 px are enlarged by this factor first
            (1: as they are).
    """

    name = "tesseract"

    def __init__(self, *, psm: int = 6, timeout_s: float = 30.0, scale: int = 1, keep: int = 64) -> None:
        if isinstance(psm, bool) or psm not in range(14):
            raise ConfigError(f"psm must be one of Tesseract's page segmentation modes 0-13, got {psm!r}")
        if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= 4:
            raise ConfigError(f"scale must be a whole number from 1 to 4, got {scale!r}")
        if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or not timeout_s > 0:
            raise ConfigError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        missing = ocr_available()
        if missing:
            raise ConfigError(missing)
        super().__init__(keep)
        self.psm, self.timeout_s, self.scale = psm, float(timeout_s), scale

    def _read(self, picture: Image.Image) -> OcrPage:
        import pytesseract

        factor = self.scale if min(picture.size) < 300 else 1
        seen = picture.convert("RGB")
        if factor > 1:
            seen = seen.resize((seen.width * factor, seen.height * factor), Image.Resampling.LANCZOS)
        try:
            data = pytesseract.image_to_data(seen, config=f"--psm {self.psm}", timeout=self.timeout_s,
                                             output_type=pytesseract.Output.DICT)
        except RuntimeError as exc:  # pytesseract's timeout
            raise ExpertError(f"the OCR engine did not read the picture within {self.timeout_s:g} s ({exc})") from exc
        except pytesseract.TesseractError as exc:
            raise ExpertError(f"the OCR engine failed on the picture: {exc}") from exc
        lines: dict[tuple[int, int, int], list[OcrWord]] = {}
        for i, text in enumerate(data["text"]):
            confidence = float(data["conf"][i])
            if not text.strip() or confidence < 0:
                continue
            left, top = data["left"][i] // factor, data["top"][i] // factor
            box = (left, top, left + -(-data["width"][i] // factor), top + -(-data["height"][i] // factor))
            key = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
            lines.setdefault(key, []).append(OcrWord(text.strip(), box, round(confidence / 100.0, 4)))
        ordered = sorted((OcrLine(tuple(words)) for words in lines.values()), key=lambda line: (line.box[1], line.box[0]))
        return OcrPage(picture.size, tuple(ordered))
