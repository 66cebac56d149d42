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


class NoFaceFound(GalleryError):
    """The detector found no face in the photo."""


class MultipleFaces(GalleryError):
    """Enrolment needs exactly one face and the photo has several (pass largest=True / --largest)."""


class PoorQuality(GalleryError):
    """The face is too small, blurred, dark or uncertain to enrol; the message says which."""


class AlreadyEnrolled(GalleryError):
    """A person of this name is enrolled already (pass add=True / --add to add another photo)."""


class NotLive(GalleryError):
    """The liveness check given to the gallery rejected the face (a print, a screen or a mask?)."""


class LooksLikeSomeoneElse(GalleryError):
    """The face already matches a different enrolled person (pass allow_similar=True to enrol anyway)."""

    def __init__(self, message: str, other: str) -> None:
        super().__init__(message)
        self.other = other
