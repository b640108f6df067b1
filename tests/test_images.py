"""Image input: every source gives an upright RGB copy; every bad input a clear ImageError."""

import io

import pytest
from PIL import Image

from redgraph.errors import ImageError
from redgraph.models import image_sha256, load_image


def _png(image: Image.Image, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=save.pop("format", "PNG"), **save)
    return buffer.getvalue()


def test_path_bytes_and_pil_give_the_same_rgb_pixels(tmp_path):
    original = Image.new("RGB", (5, 3), (10, 20, 30))
    path = tmp_path / "a.png"
    original.save(path)
    from_path, from_bytes, from_pil = load_image(path), load_image(_png(original)), load_image(original)
    assert {im.mode for im in (from_path, from_bytes, from_pil)} == {"RGB"}
    assert image_sha256(from_path) == image_sha256(from_bytes) == image_sha256(from_pil) == image_sha256(original)
    assert from_pil is not original


def test_exif_orientation_is_applied():
    wide = Image.new("RGB", (6, 2), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    loaded = load_image(_png(wide, format="JPEG", exif=exif.tobytes()))
    assert loaded.size == (2, 6)


def test_transparency_becomes_white_and_greyscale_becomes_rgb():
    clear = Image.new("RGBA", (2, 2), (255, 0, 0, 0))
    clear.putpixel((1, 1), (0, 0, 255, 255))
    assert load_image(clear).getpixel((0, 0)) == (255, 255, 255)
    assert load_image(clear).getpixel((1, 1)) == (0, 0, 255)
    assert load_image(Image.new("L", (2, 2), 128)).getpixel((1, 1)) == (128, 128, 128)
    assert load_image(Image.new("P", (2, 2))).mode == "RGB"


def test_caller_image_is_not_modified():
    original = Image.new("RGBA", (2, 2), (1, 2, 3, 4))
    load_image(original)
    assert original.mode == "RGBA" and original.getpixel((0, 0)) == (1, 2, 3, 4)


def test_decompression_bombs_are_refused_before_decoding():
    # Single-colour images compress to a few KB whatever their size.
    above_our_limit = _png(Image.new("1", (10000, 10000)))
    with pytest.raises(ImageError, match="10000x10000 = 100000000 pixels, above the limit of 64000000"):
        load_image(above_our_limit)
    far_above = _png(Image.new("1", (20000, 20000)))  # PIL itself refuses this one at open
    with pytest.raises(ImageError, match="too large to decode safely.*400000000 pixels"):
        load_image(far_above)
    with pytest.raises(ImageError, match="above the limit of 100"):
        load_image(Image.new("RGB", (20, 20)), max_pixels=100)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.png", "does not exist"),
        (lambda p: p, "is a folder"),
        (lambda p: _write(p / "corrupt.png", b"\x89PNG\r\n\x1a\nnot really"), "is not a readable image"),
        (lambda p: _write(p / "text.jpg", b"hello"), "text.jpg"),
        (lambda p: _png(Image.new("RGB", (4, 4)))[:40], "40 bytes"),
        (lambda p: b"", "empty"),
        (lambda p: 42, "unsupported image type int"),
        (lambda p: None, "unsupported image type NoneType"),
    ],
)
def test_bad_images_are_named_in_the_error(tmp_path, make, message):
    with pytest.raises(ImageError, match=message):
        load_image(make(tmp_path))


def test_bad_limit_is_refused():
    with pytest.raises(ImageError, match="max_pixels"):
        load_image(Image.new("RGB", (2, 2)), max_pixels=0)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_a_file_is_decoded_once_while_its_bytes_stay_the_same(tmp_path, monkeypatch):
    from redgraph.models import images

    path = tmp_path / "a.png"
    Image.new("RGB", (6, 4), (200, 10, 10)).save(path)
    first, digest = images.load_image_file(path)
    assert digest == image_sha256(load_image(path)) and first.mode == "RGB"
    decoded = []
    real_open = images._open
    monkeypatch.setattr(images, "_open", lambda *a, **k: decoded.append(1) or real_open(*a, **k))
    again, same = images.load_image_file(path)
    assert same == digest and decoded == [] and again is not first  # from memory, as a new image
    again.putpixel((0, 0), (0, 0, 0))
    assert images.load_image_file(path)[0].getpixel((0, 0)) == (200, 10, 10)  # the held copy is untouched
    Image.new("RGB", (6, 4), (10, 10, 200)).save(path)  # new bytes: decoded again, new digest
    changed, other = images.load_image_file(path)
    assert decoded == [1] and other != digest and changed.getpixel((0, 0)) == (10, 10, 200)
    with pytest.raises(ImageError, match="does not exist"):
        images.load_image_file(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="is a folder"):
        images.load_image_file(tmp_path)
    with pytest.raises(ImageError, match="max_pixels must be a positive integer, got 0"):
        images.load_image_file(path, max_pixels=0)


def test_the_decoded_file_memory_keeps_its_pixel_budget():
    from redgraph.models.images import _DecodedFiles

    memory = _DecodedFiles(max_pixels=250)
    for key in "abc":
        memory.put(key, Image.new("RGB", (10, 10)), key)
    assert memory.get("a") is None and memory.get("b") is not None and memory.get("c") is not None
    memory.put("d", Image.new("RGB", (10, 10)), "d")  # "b" was used less recently than "c", so "b" goes
    assert memory.get("b") is None and memory.get("c") is not None and memory.get("d") is not None


def test_an_image_with_nothing_to_see_is_refused():
    with pytest.raises(ImageError, match="fully transparent"):
        load_image(Image.new("RGBA", (8, 8), (255, 0, 0, 0)))
    with pytest.raises(ImageError, match="fully transparent"):
        load_image(_png(Image.new("LA", (8, 8), (0, 0))))


def test_sixteen_bit_images_keep_their_greys():
    import numpy as np

    ramp = np.tile(np.array([0, 16384, 32768, 65535], dtype=np.uint16), (4, 1))
    picture = load_image(_png(Image.fromarray(ramp)))  # a 16-bit greyscale PNG
    assert [picture.getpixel((x, 0))[0] for x in range(4)] == [0, 64, 128, 255]
    floats = Image.fromarray(np.full((2, 2), 0.5, dtype=np.float32), mode="F")
    assert load_image(floats).getpixel((0, 0)) == (128, 128, 128)


@pytest.mark.parametrize("size", [(20000, 4), (1, 65000), (201, 1)])
def test_long_thin_images_are_refused_with_their_sizes(size):
    with pytest.raises(ImageError, match=f"{size[0]}x{size[1]}, an aspect ratio of"):
        load_image(_png(Image.new("RGB", size, "white")))
    assert load_image(Image.new("RGB", (200, 1))).size == (200, 1)


def test_only_regular_files_are_read(tmp_path):
    import os

    from redgraph.models.images import load_image_file, resolve_image

    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    for reader in (load_image, lambda p: load_image_file(p), resolve_image):
        with pytest.raises(ImageError, match="not a regular file"):
            reader(str(fifo))
    with pytest.raises(ImageError, match="not a regular file"):
        load_image("/dev/zero")
    with pytest.raises(ImageError, match="cannot read image file .*name too long"):
        load_image("x" * 5000 + ".png")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(str(tmp_path))


def test_an_unreadable_image_is_named_as_the_user_sent_it_not_as_a_buffer():
    for data in (b"hello, not a picture", b"\x89PNG\r\n\x1a\nnot really"):
        with pytest.raises(ImageError) as caught:
            load_image(data)
        assert "BytesIO" not in str(caught.value) and f"the given {len(data)} bytes" in str(caught.value)


# --- formats by content, and EXIF that cannot be parsed (issue 37) -----------------------------

@pytest.mark.parametrize("fmt, named", [("ICO", "ICO"), ("EPS", "EPS"),
                                        ("PPM", None), ("TGA", None), ("JPEG2000", "JPEG 2000")])
def test_only_the_listed_formats_are_decoded_whatever_the_data_url_says(fmt, named):
    import base64

    from redgraph.models.images import IMAGE_FORMATS, decode_data_url

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(buffer, fmt)
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    with pytest.raises(ImageError, match="not a format redgraph reads") as refused:
        load_image(decode_data_url(url))
    assert "PNG, JPEG, WebP, GIF or BMP" in str(refused.value)
    assert named is None or named in str(refused.value)
    assert set(IMAGE_FORMATS) == {"PNG", "JPEG", "WEBP", "GIF", "BMP"}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "MPO"])
def test_the_listed_formats_are_decoded(fmt):
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), (10, 20, 30)).save(buffer, fmt)
    assert load_image(buffer.getvalue()).size == (16, 12)


def _jpeg_with_exif(orientation: int = 6) -> bytes:
    picture = Image.new("RGB", (32, 48), (200, 10, 10))
    exif = picture.getexif()
    exif[0x0112] = orientation
    exif[0x010F] = "Camera"
    exif[0x8825] = {1: "N", 2: (1.0, 2.0, 3.0)}
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def test_garbage_in_the_exif_block_never_raises_anything_but_an_image_error():
    import random

    clean = _jpeg_with_exif()
    start = clean.index(b"Exif")
    rng = random.Random(7)
    decoded = 0
    for _ in range(600):
        data = bytearray(clean)
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(start + 6, start + 200)] = rng.randrange(256)
        try:
            picture = load_image(bytes(data))  # warnings are errors in this suite: PIL's are handled
        except ImageError:
            continue
        decoded += 1
        assert picture.mode == "RGB" and picture.size in ((32, 48), (48, 32))
    assert decoded > 300


def test_an_orientation_outside_one_to_eight_leaves_the_image_as_it_is_and_the_result_is_upright_once():
    from redgraph.models.images import ready_image

    assert load_image(_jpeg_with_exif(99)).size == (32, 48)
    upright = load_image(_jpeg_with_exif(6))
    assert upright.size == (48, 32) and ready_image(upright) is upright  # not turned a second time
