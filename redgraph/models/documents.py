"""Documents as users have them: PDF files and multi-page TIFF scans, read a page at a time as images.

A PDF is opened with pypdfium2 (PDFium, self-contained; ``pip install 'redgraph[pdf]'``) and each
page is rendered at the scale the model reads pictures at (:func:`target_pixels`): a model trained
on small pictures gets small pages, a model that takes 12M-pixel images gets up to 300 dpi. What a
page run records is the document's file digest, the page number and the page count
(:func:`page_reference`), beside the rendered page's pixel digest.

A TIFF (the format scanners write, one frame a page) is read with PIL, frame by frame
(:func:`open_tiff`), each frame checked as an image is (pixel limit, aspect ratio) and scaled down
to the same pixel budget; a one-frame TIFF is a one-page document. :func:`open_document` opens
either by content.

Bounds, each a refusal naming the value: at most :data:`MAX_PAGES` pages in a document, page sides
up to :data:`MAX_PAGE_POINTS` points (the PDF limit, 200 inches), no encrypted document (decrypt
it first), nothing that PDFium or PIL cannot parse.

Example:
    >>> document = open_pdf(Path("report.pdf").read_bytes())  # doctest: +SKIP
    >>> picture = render_page(document, 2, target=1_000_000)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass
from typing import Any

from PIL import Image

from redgraph.errors import ConfigError, ImageError

MAX_PAGES = 1000  # a longer document is refused: split it, or give the pages that matter
MAX_PAGE_POINTS = 14_400  # the PDF specification's largest page side (200 in at 72 points an inch)
MIN_DPI, MAX_DPI = 36, 300
DEFAULT_TARGET_PIXELS = 1024 * 1024
# Where the readers read a page (the graph's default): at least this many pixels (about 145 dpi on a
# letter page), as OCR needs; a model reading small pictures scales the page down itself.
READING_PIXELS = 2_000_000
PDF_MAGIC = b"%PDF-"

_PDFIUM = threading.Lock()  # PDFium is not thread-safe: every call into it holds this lock


TIFF_MAGICS = (b"II*\x00", b"MM\x00*")


def is_pdf(data: bytes) -> bool:
    """Whether ``data`` is a PDF file (by its header; PDF allows up to 1 KiB of junk before it)."""
    return PDF_MAGIC in bytes(data[:1024])


def is_tiff(data: bytes) -> bool:
    """Whether ``data`` is a TIFF file (by its first four bytes)."""
    return bytes(data[:4]) in TIFF_MAGICS


def is_document(data: bytes) -> bool:
    """Whether ``data`` is a document redgraph reads a page at a time (a PDF or a TIFF)."""
    return is_pdf(data) or is_tiff(data)


def open_document(data: bytes, what: str = "the document") -> PdfFile | TiffFile:
    """A PDF or TIFF file's bytes, opened (see :func:`open_pdf`, :func:`open_tiff`)."""
    return open_tiff(data, what) if is_tiff(data) else open_pdf(data, what)


def _pdfium():
    try:
        import pypdfium2
    except ImportError as exc:
        raise ConfigError(f"PDF input needs pypdfium2 ({exc}); install it: pip install 'redgraph[pdf]'") from exc
    return pypdfium2


@dataclass(frozen=True)
class _Document:
    """An opened document: its bytes' sha256, its page count, and the library's handle (closed on
    leaving a ``with`` block)."""

    sha256: str
    pages: int
    handle: Any

    def close(self) -> None:
        self.handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_page(self, page: object) -> int:
        """``page`` (1-based) if the document has it.

        Raises:
            ImageError: naming the page and how many there are.
        """
        if isinstance(page, bool) or not isinstance(page, int) or not 1 <= page <= self.pages:
            raise ImageError(f"page must be a whole number from 1 to {self.pages} (this document's pages), "
                             f"got {page!r:.40}")
        return page


@dataclass(frozen=True)
class PdfFile(_Document):
    """An opened PDF, with each page's size in points; ``handle`` is PDFium's document."""

    sizes: tuple[tuple[float, float], ...] = ()

    def close(self) -> None:
        with _PDFIUM:
            self.handle.close()


@dataclass(frozen=True)
class TiffFile(_Document):
    """An opened TIFF (a scan: one frame a page); ``handle`` is PIL's image."""


def open_tiff(data: bytes, what: str = "the TIFF") -> TiffFile:
    """Open a TIFF's bytes (a scan: one frame a page).

    Raises:
        ImageError: PIL cannot read it, or it has more than :data:`MAX_PAGES` frames.
    """
    import io
    import warnings

    Image.init()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # each frame is checked as it is read
            opened = Image.open(io.BytesIO(bytes(data)), formats=["TIFF"])
            count = getattr(opened, "n_frames", 1)
    except Exception as exc:  # noqa: BLE001 - PIL's TIFF reader raises many types on damaged files
        raise ImageError(f"{what} cannot be read as a TIFF ({type(exc).__name__}: {str(exc)[:120]}); pass an "
                         "undamaged file") from None
    if count > MAX_PAGES:
        opened.close()
        raise ImageError(f"{what} has {count} pages, more than the {MAX_PAGES} redgraph reads; split it")
    return TiffFile(hashlib.sha256(bytes(data)).hexdigest(), count, opened)


def open_pdf(data: bytes, what: str = "the PDF") -> PdfFile:
    """Open a PDF's bytes.

    Raises:
        ImageError: the document is encrypted, damaged, empty, longer than :data:`MAX_PAGES` pages,
            or has a page side beyond :data:`MAX_PAGE_POINTS` points or of no size.
        ConfigError: pypdfium2 is not installed.
    """
    pdfium = _pdfium()
    with _PDFIUM:
        try:
            document = pdfium.PdfDocument(bytes(data))
        except pdfium.PdfiumError as exc:
            reason = str(exc)
            if "password" in reason.lower() or "security" in reason.lower():
                raise ImageError(f"{what} is encrypted ({reason}); decrypt it first (e.g. qpdf --decrypt)") from None
            raise ImageError(f"{what} cannot be read as a PDF ({reason}); pass an undamaged PDF file") from None
        count = len(document)
        sizes = []
        for index in range(min(count, MAX_PAGES)):
            try:
                sizes.append(document.get_page_size(index))
            except pdfium.PdfiumError as exc:  # found by benchmarks/fuzz.py: a damaged page tree
                document.close()
                raise ImageError(f"page {index + 1} of {what} cannot be read ({exc}); pass an undamaged PDF "
                                 "file") from None
    opened = PdfFile(hashlib.sha256(bytes(data)).hexdigest(), count, document, tuple(sizes))
    try:
        if count == 0:
            raise ImageError(f"{what} has no page")
        if count > MAX_PAGES:
            raise ImageError(f"{what} has {count} pages, more than the {MAX_PAGES} redgraph reads; split it, or "
                             "pass the pages that matter as their own file")
        for number, (width, height) in enumerate(sizes, start=1):
            if not (0 < width <= MAX_PAGE_POINTS and 0 < height <= MAX_PAGE_POINTS):
                raise ImageError(f"page {number} of {what} is {width:.0f} x {height:.0f} points; pages must be of "
                                 f"some size and at most {MAX_PAGE_POINTS} points (200 in) a side")
    except ImageError:
        opened.close()
        raise
    return opened


def target_pixels(lvlm: Any) -> int:
    """How many pixels a page is rendered to for ``lvlm``: what its image processor takes at most
    (a Qwen processor's pixel budget, an edge squared, height x width), within 128^2 to 4096^2;
    :data:`DEFAULT_TARGET_PIXELS` when it does not say."""
    processor = getattr(getattr(lvlm, "processor", None), "image_processor", None)
    size = getattr(processor, "size", None) or {}
    size = dict(size) if not isinstance(size, dict) else size
    if getattr(processor, "max_pixels", None):
        pixels = int(processor.max_pixels)
    elif "longest_edge" in size and "shortest_edge" in size and size["longest_edge"] > 4096:
        pixels = int(size["longest_edge"])  # Qwen-VL processors keep their pixel budget here
    elif "longest_edge" in size:
        pixels = int(size["longest_edge"]) ** 2
    elif "height" in size and "width" in size:
        pixels = int(size["height"]) * int(size["width"])
    elif "shortest_edge" in size:
        pixels = int(size["shortest_edge"]) ** 2
    else:
        pixels = DEFAULT_TARGET_PIXELS
    return max(128 * 128, min(pixels, 4096 * 4096))


def render_page(document: PdfFile | TiffFile, page: int, *, target: int = DEFAULT_TARGET_PIXELS) -> Image.Image:
    """Page ``page`` (1-based) as an RGB image of about ``target`` pixels (a PDF page between 36 and
    300 dpi; a TIFF frame as scanned, scaled down when it has more).

    Raises:
        ImageError: no such page, or it cannot be rendered or read.
    """
    document.check_page(page)
    if isinstance(document, TiffFile):
        return _tiff_page(document, page, target)
    width, height = document.sizes[page - 1]
    scale = math.sqrt(target / (width * height))
    scale = min(max(scale, MIN_DPI / 72), MAX_DPI / 72)
    with _PDFIUM:
        try:
            handle = document.handle[page - 1]
            bitmap = handle.render(scale=scale)
            picture = bitmap.to_pil().convert("RGB")
        except Exception as exc:  # noqa: BLE001 - PDFium raises its own and ctypes errors on damaged pages
            raise ImageError(f"page {page} of the PDF cannot be rendered ({type(exc).__name__}: {exc})") from exc
    return picture


def _tiff_page(document: TiffFile, page: int, target: int) -> Image.Image:
    import warnings

    from redgraph.models.images import DEFAULT_MAX_PIXELS, load_image

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            document.handle.seek(page - 1)
            width, height = document.handle.size  # from the frame's header, before its pixels are read
            if width * height > DEFAULT_MAX_PIXELS or not width or not height:
                raise ImageError(f"page {page} of the TIFF is {width}x{height} pixels, above the limit of "
                                 f"{DEFAULT_MAX_PIXELS}; scan it at a lower resolution")
            frame = document.handle.copy()
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL's TIFF decoders raise many types on damaged frames
        raise ImageError(f"page {page} of the TIFF cannot be read ({type(exc).__name__}: {str(exc)[:120]})") from None
    picture = load_image(frame)  # the image checks: pixel limit, aspect ratio, modes, orientation
    pixels = picture.width * picture.height
    if pixels > target:
        scale = math.sqrt(target / pixels)
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                                 Image.Resampling.LANCZOS)
    return picture


def page_image(data: bytes, page: int | None, lvlm: Any = None, what: str = "the document") -> Image.Image:
    """One page of a PDF's or TIFF's bytes, rendered for ``lvlm`` (:func:`target_pixels`): where one picture is
    answered (a chat completion, ``redgraph decode``), the page must be named unless there is one.

    Raises:
        InputError: no page named in a document of several.
        ImageError: as :func:`open_pdf` and :func:`render_page`.
    """
    from redgraph.errors import InputError

    with open_document(data, what) as document:
        if page is None:
            if document.pages > 1:
                raise InputError(f"{what} has {document.pages} pages; name the one to read (page=N, --page N)")
            page = 1
        return render_page(document, page, target=target_pixels(lvlm) if lvlm is not None else DEFAULT_TARGET_PIXELS)


def page_reference(document: PdfFile | TiffFile, page: int) -> dict[str, Any]:
    """What a run on one page records about its document: the file's sha256, the page and the count."""
    return {"sha256": document.sha256, "page": document.check_page(page), "pages": document.pages}


__all__ = ["MAX_PAGES", "PdfFile", "TiffFile", "is_document", "is_pdf", "is_tiff", "open_document", "open_pdf",
           "open_tiff", "page_image", "page_reference", "render_page", "target_pixels", "READING_PIXELS"]
