"""Image loading: every input kind a user may hand us becomes RGB, or a typed error."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gallery.errors import ImageNotFound, ImageTooLarge, ImageUnreadable, MultiFrameImage, UnsupportedImage
from gallery.vision.image import MAX_PIXELS, load_rgb

DATA = Path(__file__).resolve().parent.parent / "data"


def _png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _gradient(width: int = 40, height: int = 30) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 6, y * 8, (x + y) * 3], axis=2).astype(np.uint8)


def test_path_bytes_pil_and_array_give_the_same_pixels():
    from_path = load_rgb(DATA / "obama.jpg")
    assert from_path.shape == (600, 480, 3) and from_path.dtype == np.uint8
    np.testing.assert_array_equal(load_rgb((DATA / "obama.jpg").read_bytes()), from_path)
    np.testing.assert_array_equal(load_rgb(str(DATA / "obama.jpg")), from_path)
    np.testing.assert_array_equal(load_rgb(Image.open(DATA / "obama.jpg")), from_path)
    np.testing.assert_array_equal(load_rgb(from_path), from_path)


def test_exif_orientation_is_applied():
    pixels = _gradient()
    upright = Image.fromarray(pixels)
    # Store the photo rotated, with an EXIF tag telling viewers to rotate it back (6 = 90 CW).
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, format="PNG", exif=exif)
    loaded = load_rgb(buf.getvalue())
    assert loaded.shape == pixels.shape
    np.testing.assert_array_equal(loaded, pixels)


def test_greyscale_becomes_three_equal_channels():
    grey = Image.fromarray(_gradient()[:, :, 0])
    rgb = load_rgb(_png_bytes(grey))
    assert rgb.shape == (30, 40, 3)
    np.testing.assert_array_equal(rgb[:, :, 0], rgb[:, :, 2])


def test_sixteen_bit_greyscale_keeps_its_range_instead_of_clipping():
    values = np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16)
    rgb = load_rgb(_png_bytes(Image.fromarray(values)))
    np.testing.assert_array_equal(rgb[:, :, 0], (values >> 8).astype(np.uint8))
    assert rgb.max() == 255 and rgb.min() == 0


def test_transparent_pixels_are_composited_on_white():
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[:5, :, :] = (200, 10, 10, 255)  # opaque red top half; bottom half transparent black
    rgb = load_rgb(_png_bytes(Image.fromarray(rgba, "RGBA")))
    assert tuple(rgb[0, 0]) == (200, 10, 10)
    assert tuple(rgb[9, 9]) == (255, 255, 255)


def test_palette_with_transparency_and_cmyk_are_converted():
    pal = Image.fromarray(_gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    assert load_rgb(_png_bytes(pal)).shape == (30, 40, 3)
    cmyk = Image.fromarray(_gradient()).convert("CMYK")
    buf = io.BytesIO()
    cmyk.save(buf, format="JPEG")
    assert load_rgb(buf.getvalue()).shape == (30, 40, 3)


def test_missing_file_and_directory_are_not_found(tmp_path):
    with pytest.raises(ImageNotFound, match="no such file"):
        load_rgb(tmp_path / "nope.jpg")
    with pytest.raises(ImageNotFound, match="not a file"):
        load_rgb(tmp_path)


def test_empty_text_and_truncated_files_are_unreadable(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageUnreadable, match="empty"):
        load_rgb(empty)
    text = tmp_path / "text.jpg"
    text.write_text("not a photo at all")
    with pytest.raises(ImageUnreadable, match="not an image"):
        load_rgb(text)
    data = (DATA / "obama.jpg").read_bytes()
    with pytest.raises(ImageUnreadable, match="truncated or corrupt"):
        load_rgb(data[: len(data) // 2])


def test_huge_dimensions_in_a_tiny_file_are_refused_before_decoding():
    png = _png_bytes(Image.new("RGB", (1, 1)))
    side = 20_000  # 400 MP claimed by a file of ~70 bytes
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    patched = png[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + png[33:]
    assert side * side > MAX_PIXELS
    with pytest.raises(ImageTooLarge):
        load_rgb(patched)


@pytest.mark.parametrize("side", [9_000, 20_000])  # under Pillow's own limit, and over twice it (Pillow refuses)
def test_a_decompression_bomb_is_refused_quoting_gallerys_limit_not_pillows(side: int):
    png = _png_bytes(Image.new("RGB", (1, 1)))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    patched = png[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + png[33:]
    with pytest.raises(ImageTooLarge) as refused:
        load_rgb(patched)
    assert f"has {side * side:,} pixels" in str(refused.value)
    assert "more than gallery's limit of 64 MP" in str(refused.value)
    assert "178956970" not in str(refused.value) and "178,956,970" not in str(refused.value)


def test_animated_gif_is_refused():
    frames = [Image.fromarray(_gradient()), Image.fromarray(255 - _gradient())]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(MultiFrameImage, match="2 frames"):
        load_rgb(buf.getvalue())


def test_arrays_of_the_wrong_type_or_shape_are_refused():
    with pytest.raises(UnsupportedImage, match="uint8"):
        load_rgb(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(UnsupportedImage, match="shape"):
        load_rgb(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(UnsupportedImage, match="expected a path"):
        load_rgb(12345)  # type: ignore[arg-type]
