"""Image input: a path, raw bytes or a PIL image, turned into an upright RGB PIL image.

Example:
    >>> from PIL import Image
    >>> load_image(Image.new("L", (4, 4))).mode
    'RGB'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Union

from PIL import Image, UnidentifiedImageError

from redgraph.data.files import check_regular_file, read_regular_file
from redgraph.errors import ImageError

ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, Image.Image]

# About 8K x 8K. Larger images are almost always an error or a decompression bomb; raise the
# limit explicitly for the rare real one.
DEFAULT_MAX_PIXELS = 64_000_000
# An image file larger than this is refused before it is read (a 64M-pixel PNG is rarely above it).
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024
# Vision processors refuse long thin images (Qwen-VL: an aspect ratio above 200); refused here first,
# with the sizes named.
MAX_ASPECT_RATIO = 200


def load_image(image: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open ``image`` and return it as an upright RGB PIL image.

    EXIF orientation is applied, palette/alpha/greyscale images become RGB, and images above
    ``max_pixels`` are refused before their pixels are decoded.

    Args:
        image: a file path, the encoded bytes of an image file, or a PIL image.
        max_pixels: the largest width x height accepted.

    Returns:
        A new RGB image; the caller's PIL image is never modified.

    Raises:
        ImageError: the file is missing or unreadable, the bytes are not an image, the image is
            larger than ``max_pixels``, or ``image`` has an unsupported type.
    """
    _check_max_pixels(max_pixels)
    if isinstance(image, Image.Image):
        return _upright_rgb(image, "the given PIL image", max_pixels)
    if isinstance(image, (bytes, bytearray)):
        if not image:
            raise ImageError("the image bytes are empty; pass the encoded contents of an image file")
        return _open(io.BytesIO(bytes(image)), f"the given {len(image)} bytes", max_pixels)
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        data = read_regular_file(path, max_bytes=DEFAULT_MAX_FILE_BYTES, what="image file", error=ImageError)
        return _open(io.BytesIO(data), f"image file {path[:200]!r}", max_pixels)
    raise ImageError(
        f"unsupported image type {type(image).__name__}; pass a file path, the image file's bytes, or a PIL image"
    )


def ready_image(image: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """``image`` ready for a model. A PIL image that is already upright RGB within the limits (as
    :func:`load_image` returns them) is used as it is, not copied or converted again: this is how the
    agents and prompt encoders take an image their entry point has loaded and limited once. They
    only read it. Anything else goes through :func:`load_image`.

    Raises:
        ImageError: as :func:`load_image`.
    """
    if isinstance(image, Image.Image) and image.mode == "RGB" and _orientation(image, "the given PIL image") == 1:
        _check_max_pixels(max_pixels)
        _check_size(image, "the given PIL image", max_pixels)
        return image
    return load_image(image, max_pixels=max_pixels)


_ORIENTATION = 0x0112  # the EXIF tag load_image applies and drops
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


def _orientation(image: Image.Image, what: str) -> int:
    """The EXIF orientation (1-8; 1 when there is none or it is not one of the eight). Only the
    orientation is read: PIL skips EXIF entries it cannot parse (it warns; that is not our user's
    concern), and the EXIF block is never written back, which is where garbage in it used to raise.

    Raises:
        ImageError: the EXIF block cannot be read at all.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")
            value = image.getexif().get(_ORIENTATION, 1)
    except Exception as exc:  # noqa: BLE001 - PIL's EXIF parser raises many types on garbage
        raise ImageError(f"{what} has an EXIF block that cannot be read ({type(exc).__name__}: {str(exc)[:120]}); "
                         "save the image again without EXIF metadata") from exc
    return value if isinstance(value, int) and value in _UPRIGHT else 1


# Image types a data URL may carry, and the file formats redgraph decodes (by content, whatever a
# data URL or file name says; JPEG includes the multi-picture JPEG that phone cameras write). Anything else
# PIL could open (TIFF, ICO, PSD, EPS, which would call Ghostscript, ...) is refused by name.
DATA_URL_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp")
DOCUMENT_URL_TYPES = ("application/pdf", "image/tiff")  # where documents are taken (graph runs, or a page named)
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,(?P<data>.*)", re.S)


def image_data_url(picture: Image.Image) -> str:
    """A PIL image as a ``data:image/png;base64,...`` URL."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def decode_data_url(url: str, *, max_bytes: int | None = None, allow_documents: bool = False) -> bytes:
    """The image bytes inside a ``data:image/...;base64,...`` URL (with ``allow_documents``, also a
    ``data:application/pdf;base64,...`` document).

    Raises:
        ImageError: ``url`` is not a base64 data URL of a supported image type, the base64 is
            malformed, or the image is larger than ``max_bytes``.
    """
    match = _DATA_URL.fullmatch(url.strip()) if isinstance(url, str) else None
    if match is None:
        shown = url[:60] + "..." if isinstance(url, str) and len(url) > 60 else url
        raise ImageError(f"{shown!r} is not a data URL; send the image as data:image/png;base64,<base64 of the file>")
    kind = (match["type"] or "").lower()
    accepted = DATA_URL_TYPES + (DOCUMENT_URL_TYPES if allow_documents else ())
    if kind not in accepted:
        raise ImageError(f"data URL type {kind or '(none)'!r} is not supported here; send one of {', '.join(accepted)}")
    if not match["b64"]:
        raise ImageError("the image data URL is not base64-encoded; send data:<type>;base64,<base64 of the file>")
    payload = match["data"]
    if max_bytes is not None and len(payload) * 3 // 4 > max_bytes + 3:
        raise ImageError(f"the image is about {len(payload) * 3 // 4} bytes, above the limit of {max_bytes}; send a smaller image")
    try:
        data = base64.b64decode(re.sub(r"\s+", "", payload), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"the image data URL holds malformed base64 ({exc}); encode the file with standard base64") from exc
    if not data:
        raise ImageError("the image data URL is empty; put the base64 of an image file after the comma")
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageError(f"the image is {len(data)} bytes, above the limit of {max_bytes}; send a smaller image")
    if allow_documents:  # a document is read as the type its URL declares, never by content alone
        found = _format_of(io.BytesIO(data))
        declared = {"application/pdf": "PDF", "image/tiff": "TIFF"}.get(kind)
        holds = found if found in ("PDF", "TIFF") else None
        if holds != declared:
            raise ImageError(f"the data URL declares {kind} but holds {holds + ' document' if holds else 'image'} "
                             f"data; declare {'application/pdf' if holds == 'PDF' else 'image/tiff' if holds else 'the image type'}"
                             " for what it holds")
    return data


def image_sha256(image: Image.Image) -> str:
    """A digest of the decoded pixels (mode, size and bytes), stable across file formats."""
    digest = hashlib.sha256(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


class _DecodedFiles:
    """Recently decoded image files, keyed by the sha256 of their bytes (the same bytes always decode
    to the same pixels, so a hit is exact). Holds at most ``max_pixels`` pixels in all."""

    def __init__(self, max_pixels: int = 32_000_000) -> None:
        self.max_pixels = max_pixels
        self._entries: OrderedDict[str, tuple[Image.Image, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[Image.Image, str] | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: str, picture: Image.Image, digest: str) -> None:
        with self._lock:
            self._entries[key] = (picture, digest)
            while sum(p.width * p.height for p, _ in self._entries.values()) > self.max_pixels and self._entries:
                self._entries.popitem(last=False)


_DECODED = _DecodedFiles()


def load_image_file(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, str]:
    """:func:`load_image` of a file, with its :func:`image_sha256`.

    The file is read every time, but an unchanged file (same bytes) is not decoded again: graph
    nodes that each check the run's image against its digest pay for reading and hashing the file,
    not for decoding it. Returns a new image each call.
    """
    picture, digest, _ = load_image_file_digests(path, max_pixels=max_pixels)
    return picture, digest


def load_image_file_digests(path: str | os.PathLike[str], *,
                            max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, str, str]:
    """:func:`load_image_file`, and the sha256 of the file's bytes as read (what ``sha256sum`` prints),
    from the same read."""
    _check_max_pixels(max_pixels)
    location = os.fspath(path)
    data = read_regular_file(location, max_bytes=DEFAULT_MAX_FILE_BYTES, what="image file", error=ImageError)
    file_digest = hashlib.sha256(data).hexdigest()
    key = f"{max_pixels}:{file_digest}"
    found = _DECODED.get(key)
    if found is None:
        picture = _open(io.BytesIO(data), f"image file {location!r}", max_pixels)
        found = (picture, image_sha256(picture))
        _DECODED.put(key, *found)
    return found[0].copy(), found[1], file_digest


def _check_max_pixels(max_pixels) -> None:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise ImageError(f"max_pixels must be a positive integer, got {max_pixels!r}")


def _open(stream: io.BytesIO, what: str, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # PIL warns (then errors) on huge images; we apply our own limit below instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # PIL skips the EXIF entries it cannot parse and warns; the orientation is read on its own below.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")
            Image.init()  # registers every plugin once; open() looks the listed formats up by name
            opened = Image.open(stream, formats=IMAGE_FORMATS)
            _check_size(opened, what, max_pixels)  # from the header, before decoding pixels
            opened.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{what} is too large to decode safely ({exc}); resize it first") from exc
    except UnidentifiedImageError as exc:  # its text names an internal buffer, not what the user sent
        found = _format_of(stream)
        if found in ("PDF", "TIFF"):
            raise ImageError(f"{what} is a {found} document, not an image: ask about it through the graph (redgraph.ask, "
                             "`redgraph ask`, the server's /v1/redgraph/ask), which reads every page or the page you "
                             "name (page=N, --page N)") from exc
        kind = f"{found} data, not a format redgraph reads" if found else "not a format redgraph reads"
        raise ImageError(f"{what} is not a readable image ({kind}); pass a PNG, JPEG, WebP, GIF or BMP file") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        reason = str(exc).replace(repr(stream), "the data")
        raise ImageError(f"{what} is not a readable image ({reason}); pass a PNG, JPEG, WebP, GIF or BMP file") from exc
    return _upright_rgb(opened, what, max_pixels)


def _format_of(stream: io.BytesIO) -> str | None:
    """The format of an image redgraph does not decode, named from its first bytes, for the error."""
    stream.seek(0)
    head = stream.read(16)
    for signature, name in ((b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"\x00\x00\x01\x00", "ICO"),
                            (b"8BPS", "PSD"), (b"%!PS", "EPS"), (b"\xc5\xd0\xd3\xc6", "EPS"), (b"%PDF", "PDF"),
                            (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xffO\xffQ", "JPEG 2000"),
                            (b"icns", "ICNS"), (b"qoif", "QOI")):
        if head.startswith(signature):
            return name
    if head[4:12] in (b"ftypavif", b"ftypheic", b"ftypmif1"):
        return "AVIF/HEIF"
    return None


def _check_size(image: Image.Image, what: str, max_pixels: int) -> None:
    pixels = image.width * image.height
    if pixels > max_pixels:
        raise ImageError(
            f"{what} has {image.width}x{image.height} = {pixels} pixels, above the limit of {max_pixels}; "
            "resize it, or raise max_pixels if it is genuine"
        )
    if pixels == 0:
        raise ImageError(f"{what} is empty ({image.width}x{image.height})")
    ratio = max(image.width, image.height) / min(image.width, image.height)
    if ratio > MAX_ASPECT_RATIO:
        raise ImageError(f"{what} is {image.width}x{image.height}, an aspect ratio of {ratio:.0f}:1, above the "
                         f"{MAX_ASPECT_RATIO}:1 that vision models take; crop it or pad it towards a square")


def _upright_rgb(image: Image.Image, what: str, max_pixels: int) -> Image.Image:
    _check_size(image, what, max_pixels)
    orientation = _orientation(image, what)
    # Always a new image; the EXIF block (with its orientation) is left behind, not rewritten.
    image = image.transpose(_UPRIGHT[orientation]) if orientation != 1 else image.copy()
    for key in ("exif", "xmp", "XML:com.adobe.xmp", "Raw profile type exif"):  # where PIL finds an orientation
        image.info.pop(key, None)
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _eight_bit(image).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels over white, as a viewer shows them, not over black.
        rgba = image.convert("RGBA")
        alpha = rgba.getchannel("A")
        if alpha.getextrema()[1] == 0:
            raise ImageError(f"{what} is fully transparent: there is nothing to see in it; pass the image with its "
                             "content opaque")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=alpha)
        return canvas
    return image.convert("RGB")


def _eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or float greyscale image scaled to 8 bits (PIL's own conversion clips every
    value above 255 to white)."""
    import numpy as np

    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        top = 1.0 if values.max(initial=0.0) <= 1.0 else 255.0
    else:
        top = 255.0 if values.max(initial=0) <= 255 else 65535.0
    scaled = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


DEFAULT_MAX_IMAGE_BYTES = 8 * 1024 * 1024


def resolve_image(
    reference: str,
    *,
    allow_paths: bool = True,
    allow_remote: bool = False,
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    timeout: float = 10.0,
    allow_documents: bool = False,
) -> str | bytes:
    """A file path (returned as is) or the bytes behind a data URL or, when allowed, an http(s) URL
    (``allow_documents``: a PDF's data URL too).

    Raises:
        ImageError: the reference is of a kind not allowed here, the file is missing, the data URL
            is malformed, the download fails, or the image is larger than ``max_bytes``.
    """
    if not isinstance(reference, str) or not reference.strip():
        raise ImageError(f"the image reference must be a non-empty string (a data URL or a file path), got {reference!r:.80}")
    reference = reference.strip()
    if reference.startswith("data:"):
        return decode_data_url(reference, max_bytes=max_bytes, allow_documents=allow_documents)
    if reference.startswith(("http://", "https://")):
        if not allow_remote:
            raise ImageError(
                f"remote image URLs are refused here ({reference[:80]!r}); send the image as a data URL, "
                "or start the server with --allow-remote-images"
            )
        return _download(reference, max_bytes, timeout)
    if "://" in reference[:16]:
        raise ImageError(f"{reference[:80]!r} uses a scheme that is not supported; send a data URL or a file path")
    if not allow_paths:
        raise ImageError(f"file paths are not accepted here ({reference[:80]!r}); send the image as a data URL")
    path = Path(os.path.expanduser(reference))
    check_regular_file(path, max_bytes=max_bytes, what="image file", error=ImageError)
    return str(path)


def _download(url: str, max_bytes: int, timeout: float) -> bytes:
    import httpx

    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code != 200:
                raise ImageError(f"fetching {url[:80]!r} gave HTTP {response.status_code}; check the URL")
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > max_bytes:
                    raise ImageError(f"the image at {url[:80]!r} is larger than the limit of {max_bytes} bytes")
            return bytes(data)
    except httpx.HTTPError as exc:
        raise ImageError(f"cannot fetch {url[:80]!r}: {type(exc).__name__}: {exc}") from exc
