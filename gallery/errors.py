"""Every error gallery raises derives from ``GalleryError``; each names the problem."""

from __future__ import annotations


class GalleryError(Exception):
    """Base class of every error gallery raises."""


class ImageError(GalleryError):
    """The photo cannot be used; the message says why."""


class ImageNotFound(ImageError):
    """The photo's path does not exist or is not a file."""


class ImageUnreadable(ImageError):
    """The photo could not be read or decoded (not an image, truncated, corrupt, no permission)."""


class ImageTooLarge(ImageError):
    """The photo has more pixels than gallery will decode (a decompression bomb guard)."""


class MultiFrameImage(ImageError):
    """The photo is animated or has several frames/pages; gallery needs exactly one."""


class UnsupportedImage(ImageError):
    """The photo's pixel format or array shape cannot be turned into RGB."""
