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
import os
from typing import TYPE_CHECKING, Any

from gallery.errors import (
    AlreadyEnrolled,
    AuditNotWritten,
    CalibrationError,
    ClientError,
    DatabaseLoginRefused,
    DatabaseUnavailable,
    DataTooStale,
    DlibFormatError,
    DuplicateExternalId,
    ExternalIdMismatch,
    GalleryError,
    GalleryVanished,
    HostNotFound,
    ImageError,
    ImageNotFound,
    ImageTooLarge,
    ImageUnreadable,
    IndexFileInvalid,
    InvalidArgument,
    InvalidDatabaseUrl,
    InvalidFaceRecord,
    InvalidName,
    KeyNameTaken,
    KeyNotFound,
    LooksLikeSomeoneElse,
    ModelError,
    ModelFilesNotFound,
    ModelMismatch,
    MultiFrameImage,
    MultipleFaces,
    NoFaceFound,
    NotAGallery,
    NotAuthenticated,
    NotLive,
    NotTheSamePerson,
    NoUsablePairs,
    PairsFileUnreadable,
    PairsFormatError,
    PersonNotFound,
    PhotoAlreadyEnrolled,
    PhotosMissing,
    PoorQuality,
    RateLimited,
    RequestTimedOut,
    RequestTooLarge,
    RuleInvalid,
    SchemaTooNew,
    ScopeDenied,
    ServiceError,
    ServiceNotReady,
    ServiceOverloaded,
    ServiceResponseInvalid,
    ServiceUnreachable,
    StorageFailure,
    StoreBusy,
    StoreClosed,
    StoreError,
    UnsupportedImage,
    WeightsMismatch,
)

# torch's and FAISS's OpenMP runtimes read these when they load, so they are set before either is
# imported (unless the caller chose a wait policy). By default a waiting OpenMP thread spins for
# milliseconds; on a machine whose cores are busy with other work the spinning thread takes the
# core from the one it waits for: warm identify measured 1.5-3x slower (170-420 ms against
# 110-145 ms, 2 cores) with twice the CPU, and a first network pass 0.8 s against 15 ms. Passive
# waiting alone cost 7-15% on an idle machine (detector, bulk enrolment); a brief spin first
# (GNU OpenMP's GOMP_SPINCOUNT, which both libraries ship and which reads it before the policy)
# measured as fast as the default there and within ~10% of passive waiting under load.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")

if TYPE_CHECKING:
    from gallery.audit import AuditStatus
    from gallery.calibrating import LearnedRules
    from gallery.calibration import Evaluation, PairReport
    from gallery.calibration.margin import MarginName
    from gallery.gallery import Gallery
    from gallery.results import (
        Candidate,
        DataState,
        DomainStatus,
        Enrollment,
        EnrolmentInterrupted,
        FolderEnrollment,
        GalleryInfo,
        IdentifiedFace,
        Person,
        PhotoFailure,
        Reembedding,
        Removal,
        Verification,
    )
    from gallery.runtime import set_threads
    from gallery.store import AuditEvent
    from gallery.vision.pipeline import Face, faces

_LAZY = {
    "Evaluation": "gallery.calibration",
    "PairReport": "gallery.calibration",
    "LearnedRules": "gallery.calibrating",
    "MarginName": "gallery.calibration.margin",
    "Gallery": "gallery.gallery",
    "set_threads": "gallery.runtime",
    "FolderEnrollment": "gallery.results",
    "PhotoFailure": "gallery.results",
    "AuditEvent": "gallery.store",
    "AuditStatus": "gallery.audit",
    "Candidate": "gallery.results",
    "DataState": "gallery.results",
    "DomainStatus": "gallery.results",
    "Enrollment": "gallery.results",
    "EnrolmentInterrupted": "gallery.results",
    "GalleryInfo": "gallery.results",
    "IdentifiedFace": "gallery.results",
    "Person": "gallery.results",
    "Reembedding": "gallery.results",
    "Removal": "gallery.results",
    "Verification": "gallery.results",
    "Face": "gallery.vision.pipeline",
    "faces": "gallery.vision.pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gallery' has no attribute {name!r}")


__all__ = [
    "AlreadyEnrolled",
    "AuditEvent",
    "AuditNotWritten",
    "AuditStatus",
    "CalibrationError",
    "Candidate",
    "ClientError",
    "DataState",
    "DataTooStale",
    "DatabaseLoginRefused",
    "DatabaseUnavailable",
    "DlibFormatError",
    "DomainStatus",
    "DuplicateExternalId",
    "Enrollment",
    "EnrolmentInterrupted",
    "Evaluation",
    "ExternalIdMismatch",
    "Face",
    "FolderEnrollment",
    "Gallery",
    "GalleryError",
    "GalleryInfo",
    "GalleryVanished",
    "HostNotFound",
    "IdentifiedFace",
    "ImageError",
    "ImageNotFound",
    "ImageTooLarge",
    "ImageUnreadable",
    "IndexFileInvalid",
    "InvalidArgument",
    "InvalidDatabaseUrl",
    "InvalidFaceRecord",
    "InvalidName",
    "KeyNameTaken",
    "KeyNotFound",
    "LearnedRules",
    "LooksLikeSomeoneElse",
    "MarginName",
    "ModelError",
    "ModelFilesNotFound",
    "ModelMismatch",
    "MultiFrameImage",
    "MultipleFaces",
    "NoFaceFound",
    "NoUsablePairs",
    "NotAGallery",
    "NotAuthenticated",
    "NotLive",
    "NotTheSamePerson",
    "PairReport",
    "PairsFileUnreadable",
    "PairsFormatError",
    "Person",
    "PersonNotFound",
    "PhotoAlreadyEnrolled",
    "PhotoFailure",
    "PhotosMissing",
    "PoorQuality",
    "RateLimited",
    "Reembedding",
    "Removal",
    "RequestTimedOut",
    "RequestTooLarge",
    "RuleInvalid",
    "SchemaTooNew",
    "ScopeDenied",
    "ServiceError",
    "ServiceNotReady",
    "ServiceOverloaded",
    "ServiceResponseInvalid",
    "ServiceUnreachable",
    "StorageFailure",
    "StoreBusy",
    "StoreClosed",
    "StoreError",
    "UnsupportedImage",
    "Verification",
    "WeightsMismatch",
    "faces",
    "set_threads",
]
