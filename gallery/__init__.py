"""gallery: one-shot face identification with dlib's face models in torch, FAISS and SQLite.

    >>> import gallery
    >>> g = gallery.Gallery("my-gallery")
    >>> g.enroll("Ada Lovelace", "ada.jpg")
    >>> [face.match for face in g.identify("door-camera.jpg")]

Names are imported on first use, so ``import gallery`` (and ``gallery --help``) does not
pay for torch and FAISS until a face or the gallery is actually needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gallery.errors import (
    AlreadyEnrolled,
    GalleryError,
    ImageError,
    ImageNotFound,
    ImageTooLarge,
    ImageUnreadable,
    LooksLikeSomeoneElse,
    MultiFrameImage,
    MultipleFaces,
    NoFaceFound,
    NotLive,
    PoorQuality,
    UnsupportedImage,
)

if TYPE_CHECKING:
    from gallery.gallery import Gallery, set_threads
    from gallery.results import (
        Candidate,
        Enrollment,
        FolderEnrollment,
        GalleryInfo,
        IdentifiedFace,
        Person,
        PhotoFailure,
        Removal,
        Verification,
    )
    from gallery.store import PersonNotFound, SchemaTooNew
    from gallery.vision.pipeline import Face, faces

_LAZY = {
    "Gallery": "gallery.gallery",
    "set_threads": "gallery.gallery",
    "FolderEnrollment": "gallery.results",
    "PhotoFailure": "gallery.results",
    "Candidate": "gallery.results",
    "Enrollment": "gallery.results",
    "GalleryInfo": "gallery.results",
    "IdentifiedFace": "gallery.results",
    "Person": "gallery.results",
    "Removal": "gallery.results",
    "Verification": "gallery.results",
    "PersonNotFound": "gallery.store",
    "SchemaTooNew": "gallery.store",
    "Face": "gallery.vision.pipeline",
    "faces": "gallery.vision.pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gallery' has no attribute {name!r}")


__all__ = [
    "AlreadyEnrolled",
    "Candidate",
    "Enrollment",
    "Face",
    "FolderEnrollment",
    "Gallery",
    "GalleryError",
    "GalleryInfo",
    "IdentifiedFace",
    "ImageError",
    "ImageNotFound",
    "ImageTooLarge",
    "ImageUnreadable",
    "LooksLikeSomeoneElse",
    "MultiFrameImage",
    "MultipleFaces",
    "NoFaceFound",
    "NotLive",
    "Person",
    "PersonNotFound",
    "PhotoFailure",
    "PoorQuality",
    "Removal",
    "SchemaTooNew",
    "UnsupportedImage",
    "Verification",
    "faces",
    "set_threads",
]
