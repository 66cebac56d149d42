"""A client of the gallery service (``gallery serve``): the CLI's ``--server`` mode, usable from Python.

    >>> from gallery.client import GalleryClient
    >>> door = GalleryClient("https://gallery.example:8443", api_key=os.environ["GALLERY_API_KEY"])
    >>> [face["outcome"] for face in door.identify(Path("frame.jpg"))["faces"]]

Pure Python over the standard library: it imports neither torch, FAISS, NumPy nor SQLAlchemy.
"""

from gallery.client.answers import (
    AuditEventAnswer,
    CandidateAnswer,
    DomainAnswer,
    EnrolAnswer,
    FaceAnswer,
    GalleryAnswers,
    IdentifyAnswer,
    InfoAnswer,
    PersonAnswer,
    RemovalAnswer,
    VerifyAnswer,
)
from gallery.client.client import DEFAULT_TIMEOUT_S, GalleryClient

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "AuditEventAnswer",
    "CandidateAnswer",
    "DomainAnswer",
    "EnrolAnswer",
    "FaceAnswer",
    "GalleryAnswers",
    "GalleryClient",
    "IdentifyAnswer",
    "InfoAnswer",
    "PersonAnswer",
    "RemovalAnswer",
    "VerifyAnswer",
]
