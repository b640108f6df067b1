"""Image input: a path, raw bytes or a PIL image, turned into an upright RGB PIL image.

Example:
    >>> from PIL import Image
    >>> load_image(Image.new("L", (4, 4))).mode
    'RGB'
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from typing import Union

from PIL import Image, ImageOps, UnidentifiedImageError

from redgraph.errors import ImageError

ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, Image.Image]

# About 8K x 8K. Larger images are almost always an error or a decompression bomb; raise the
# limit explicitly for the rare real one.
DEFAULT_MAX_PIXELS = 64_000_000


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
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise ImageError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    if isinstance(image, Image.Image):
        return _upright_rgb(image, "the given PIL image", max_pixels)
    if isinstance(image, (bytes, bytearray)):
        if not image:
            raise ImageError("the image bytes are empty; pass the encoded contents of an image file")
        return _open(io.BytesIO(bytes(image)), f"the given {len(image)} bytes", max_pixels)
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.exists(path):
            raise ImageError(f"image file {path!r} does not exist; check the path")
        if os.path.isdir(path):
            raise ImageError(f"image path {path!r} is a folder; pass an image file")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise ImageError(f"cannot read image file {path!r}: {exc.strerror or exc}") from exc
        return _open(io.BytesIO(data), f"image file {path!r}", max_pixels)
    raise ImageError(
        f"unsupported image type {type(image).__name__}; pass a file path, the image file's bytes, or a PIL image"
    )


def image_sha256(image: Image.Image) -> str:
    """A digest of the decoded pixels (mode, size and bytes), stable across file formats."""
    digest = hashlib.sha256(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _open(stream: io.BytesIO, what: str, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # PIL warns (then errors) on huge images; we apply our own limit below instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(stream)
            _check_size(opened, what, max_pixels)  # from the header, before decoding pixels
            opened.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{what} is too large to decode safely ({exc}); resize it first") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{what} is not a readable image ({exc}); pass a PNG, JPEG, WebP, GIF or BMP file") from exc
    return _upright_rgb(opened, what, max_pixels)


def _check_size(image: Image.Image, what: str, max_pixels: int) -> None:
    pixels = image.width * image.height
    if pixels > max_pixels:
        raise ImageError(
            f"{what} has {image.width}x{image.height} = {pixels} pixels, above the limit of {max_pixels}; "
            "resize it, or raise max_pixels if it is genuine"
        )
    if pixels == 0:
        raise ImageError(f"{what} is empty ({image.width}x{image.height})")


def _upright_rgb(image: Image.Image, what: str, max_pixels: int) -> Image.Image:
    _check_size(image, what, max_pixels)
    image = ImageOps.exif_transpose(image)  # always a copy or a new image
    if image.mode == "RGB":
        return image.copy()
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels over white, as a viewer shows them, not over black.
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")
