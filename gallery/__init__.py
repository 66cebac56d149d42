"""gallery: one-shot face identification with dlib's face models in torch, FAISS and SQLite.

    >>> import gallery
    >>> g = gallery.Gallery("my-gallery")
    >>> g.enroll("Ada Lovelace", "ada.jpg")
    >>> [face.match for face in g.identify("door-camera.jpg")]
"""

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
    PoorQuality,
    UnsupportedImage,
)
from gallery.gallery import Gallery
from gallery.results import Candidate, Enrollment, GalleryInfo, IdentifiedFace, Person, Removal, Verification
from gallery.store import PersonNotFound, SchemaTooNew
from gallery.vision.pipeline import Face, faces

__all__ = [
    "AlreadyEnrolled",
    "Candidate",
    "Enrollment",
    "Face",
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
    "Person",
    "PersonNotFound",
    "PoorQuality",
    "Removal",
    "SchemaTooNew",
    "UnsupportedImage",
    "Verification",
    "faces",
]
