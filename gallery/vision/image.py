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
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gallery.errors import ImageNotFound, ImageTooLarge, ImageUnreadable, MultiFrameImage, UnsupportedImage

ImageInput = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]

# 64 megapixels: beyond any camera a door or a desk uses, far below what exhausts memory
# (a 64 MP RGB array is 192 MB). Checked from the header, before any pixel is decoded.
MAX_PIXELS = 64_000_000


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
        return _decode(io.BytesIO(bytes(image)), source="the image bytes")
    if isinstance(image, (str, os.PathLike)):
        return _decode(io.BytesIO(read_photo(image)), source=repr(os.fsdecode(image)))
    raise UnsupportedImage(f"expected a path, bytes, a PIL image or a numpy array, got {type(image).__name__}")


def read_photo(path: str | os.PathLike) -> bytes:
    """The bytes of the photo file at ``path``.

    Raises:
        ImageNotFound: nothing there, or a directory.
        ImageUnreadable: the file cannot be read (permissions, I/O error).
    """
    path = Path(path)
    if not path.exists():
        raise ImageNotFound(f"no such file: {os.fsdecode(path)!r}")
    if not path.is_file():
        raise ImageNotFound(f"not a file: {os.fsdecode(path)!r}")
    try:
        return path.read_bytes()
    except OSError as err:
        raise ImageUnreadable(f"cannot read {os.fsdecode(path)!r}: {err.strerror or err}") from err


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
        raise ImageTooLarge(f"{source} is too large to decode safely: {err}") from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageUnreadable(f"{source} is truncated or corrupt: {err}") from err


def _pil_to_rgb(im: Image.Image, source: str) -> np.ndarray:
    width, height = im.size
    if width * height > MAX_PIXELS:
        raise ImageTooLarge(f"{source} is {width}x{height} pixels; gallery decodes at most {MAX_PIXELS:,}")
    if width == 0 or height == 0:
        raise ImageUnreadable(f"{source} has no pixels")
    if getattr(im, "n_frames", 1) > 1:
        raise MultiFrameImage(f"{source} has {im.n_frames} frames (animated or multi-page); give a single photo")
    im.load()  # decode now, so truncation surfaces here as an error
    im = ImageOps.exif_transpose(im)
    return np.ascontiguousarray(_to_rgb_array(im, source))


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
        raise ImageTooLarge(f"the image array is {array.shape[1]}x{array.shape[0]}; at most {MAX_PIXELS:,} pixels")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageUnreadable("the image array has no pixels")
    return np.ascontiguousarray(array)
