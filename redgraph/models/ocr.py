"""Reading the words on a picture with an OCR engine: Tesseract, through ``pytesseract``.

Tesseract is Debian's ``tesseract-ocr`` (``apt install tesseract-ocr``; Homebrew and conda have it
too), run offline on the CPU with the English model it ships; ``pytesseract`` (``pip install
'redgraph[ocr]'``) calls it. It was chosen over an ONNX OCR wheel (RapidOCR) by measurement on the
project's own documents and on documents in DejaVu fonts: both read every title and field there,
Tesseract in about 250 ms a picture and RapidOCR in about 600 ms (BENCHMARKS.md, "OCR expert").

A page is read once and kept (:class:`OcrPage`: lines of words, each with its box in the picture's
pixels and the engine's confidence); the same picture read again, by another probe or another
round of the critic, is not run through the engine twice.

Example:
    >>> page = OcrEngine().read(picture)  # doctest: +SKIP
    >>> page.lines[0].text, page.lines[0].box  # doctest: +SKIP
    ('INVOICE', (8, 5, 74, 18))
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image

from redgraph.errors import ConfigError, ExpertError, InputError

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


def ocr_available() -> str | None:
    """None when the engine can run here, else what to install."""
    if importlib.util.find_spec("pytesseract") is None or shutil.which("tesseract") is None:
        return INSTALL
    return None


class OcrEngine:
    """Tesseract, reading whole pictures into :class:`OcrPage` (the last ``keep`` pages are kept).

    Args:
        psm: Tesseract's page segmentation mode; 6 (one uniform block of text) read the project's
            and the font documents best (BENCHMARKS.md); 3 is its automatic layout analysis.
        timeout_s: a picture the engine has not read in this time is an error.
        scale: pictures whose shorter side is below 300 px are enlarged by this factor first
            (1: as they are).
    """

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
        self.psm, self.timeout_s, self.scale, self.keep = psm, float(timeout_s), scale, keep
        self._pages: OrderedDict[str, OcrPage] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, picture: Image.Image) -> OcrPage:
        """The lines on ``picture`` (an RGB PIL image), top to bottom."""
        if not isinstance(picture, Image.Image):
            raise InputError(f"the OCR engine reads PIL images, got {type(picture).__name__}")
        key = hashlib.sha256(f"{picture.mode}:{picture.size}:".encode() + picture.tobytes()).hexdigest()
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
