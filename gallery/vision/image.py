"""Turn whatever a caller hands us into one RGB uint8 array, or a clear error.

Accepts a path, bytes, a PIL image or an HxW / HxWx3 / HxWx4 uint8 array. EXIF
orientation is applied, so a phone photo is upright as a person sees it. Every
Pillow mode is reduced to 8-bit RGB: 16-bit greyscale keeps its high byte rather
than being clipped at 255 as Pillow's own conversion does, and transparent
pixels are composited onto white (what a viewer shows) rather than keeping
whatever colour hides under alpha 0.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from gallery.errors import (
    ImageError,
    ImageTooLarge,
    ImageUnreadable,
    MultiFrameImage,
    UnsupportedImage,
)
from gallery.vision.photo_file import MAX_FILE_BYTES, PhotoFile, read_photo

__all__ = ["MAX_FILE_BYTES", "MAX_PIXELS", "ImageInput", "PhotoFile", "load_rgb", "photo_sha256", "read_photo"]

ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray

# 64 megapixels: beyond any camera a door or a desk uses, far below what exhausts memory
# (a 64 MP RGB array is 192 MB). Checked from the header, before any pixel is decoded.
MAX_PIXELS = 64_000_000
_MEGAPIXELS = f"{MAX_PIXELS // 1_000_000} MP"
# Formats whose extra frames are not other photos: an MPO (what many cameras and phones
# write as .jpg) carries previews or a depth map after the primary image, which is frame 0.
_PRIMARY_FRAME_FORMATS = frozenset({"MPO"})
_EXIF_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def load_rgb(image: ImageInput) -> np.ndarray:
    """The photo as a C-contiguous HxWx3 uint8 RGB array.

    Raises:
        ImageNotFound, ImageUnreadable, ImageTooLarge, MultiFrameImage, UnsupportedImage.
    """
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image, source="the PIL image")
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decode(io.BytesIO(bytes(image)), source=getattr(image, "source", "the image bytes"))
    if isinstance(image, (str, os.PathLike)):
        photo = read_photo(image)
        return _decode(io.BytesIO(photo), source=photo.source)
    raise UnsupportedImage(f"expected a path, bytes, a PIL image or a numpy array, got {type(image).__name__}")


def photo_sha256(image: ImageInput) -> str:
    """Hex SHA-256 identifying a photo: of its file bytes, or of the pixels of an in-memory image."""
    if isinstance(image, (str, os.PathLike)):
        image = read_photo(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return hashlib.sha256(image).hexdigest()
    return hashlib.sha256(load_rgb(image).tobytes()).hexdigest()


def _decode(stream: io.BytesIO, source: str) -> np.ndarray:
    if not stream.getbuffer().nbytes:
        raise ImageUnreadable(f"{source} is empty")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; we enforce our own limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream) as im:
                return _pil_to_rgb(im, source)
    except UnidentifiedImageError as err:
        raise ImageUnreadable(f"{source} is not an image Pillow can read") from err
    except Image.DecompressionBombError as err:
        # Pillow's message quotes its own limit (178,956,970 pixels); ours is far lower and is the one that holds.
        raise ImageTooLarge(f"{source} has {_claimed_pixels(err)}, more than gallery's limit of {_MEGAPIXELS}") from err
    except MemoryError as err:
        raise ImageTooLarge(f"{source} needs more memory to decode than is available") from err
    except ImageError:
        raise
    except Exception as err:
        # Pillow's decoders report damaged files with OSError, SyntaxError and ValueError, but
        # also TypeError, KeyError or struct.error from deep inside a plugin: all mean corrupt.
        raise ImageUnreadable(f"{source} is truncated or corrupt: {err or type(err).__name__}") from err


def _claimed_pixels(err: Image.DecompressionBombError) -> str:
    """How many pixels a file Pillow refused to open claims, from Pillow's message (thread-safe: no global toggled)."""
    found = re.search(r"\((\d+) pixels\)", str(err))
    return f"{int(found.group(1)):,} pixels" if found else "too many pixels"


def _pil_to_rgb(im: Image.Image, source: str) -> np.ndarray:
    width, height = im.size
    if width * height > MAX_PIXELS:
        raise ImageTooLarge(
            f"{source} has {width * height:,} pixels ({width}x{height}), more than gallery's limit of {_MEGAPIXELS}"
        )
    if width == 0 or height == 0:
        raise ImageUnreadable(f"{source} has no pixels")
    frames = getattr(im, "n_frames", 1)  # only multi-frame formats' plugins define it
    if im.format not in _PRIMARY_FRAME_FORMATS and frames > 1:
        raise MultiFrameImage(f"{source} has {frames} frames (animated or multi-page); give a single photo")
    im.load()  # decode now, so truncation surfaces here as an error
    return np.ascontiguousarray(_to_rgb_array(_upright(im), source))


def _upright(im: Image.Image) -> Image.Image:
    """The image as a viewer shows it: its EXIF orientation applied.

    Only the orientation is read (Pillow's ``exif_transpose`` also rewrites the whole EXIF
    block, which fails on an entry whose type contradicts its tag, a known camera bug).
    """
    try:
        orientation = int(im.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # unreadable EXIF: show the pixels as stored, as viewers do
        orientation = 1
    method = _EXIF_ORIENTATION_TRANSPOSE.get(orientation)
    return im if method is None else im.transpose(method)


def _to_rgb_array(im: Image.Image, source: str) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit greyscale: keep the high byte; Pillow's convert("L") would clip at 255.
        grey = (np.clip(np.asarray(im, dtype=np.int64), 0, 65535) >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F":
        grey = np.clip(np.asarray(im, dtype=np.float64), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if (mode == "P" and "transparency" in im.info) or mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    try:
        return np.asarray(im.convert("RGB"))
    except (ValueError, OSError) as err:
        raise UnsupportedImage(f"{source} has pixel mode {mode!r}, which cannot be converted to RGB") from err


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        raise UnsupportedImage(f"image arrays must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    if array.ndim != 3 or array.shape[2] != 3:
        raise UnsupportedImage(f"image arrays must be HxW, HxWx3 or HxWx4, got shape {array.shape}")
    if array.shape[0] * array.shape[1] > MAX_PIXELS:
        height, width = array.shape[:2]
        raise ImageTooLarge(
            f"the image array has {width * height:,} pixels ({width}x{height}), "
            f"more than gallery's limit of {_MEGAPIXELS}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageUnreadable("the image array has no pixels")
    return np.ascontiguousarray(array)
