"""Every error gallery raises, in one place: each derives from ``GalleryError`` and names the problem.

One class per condition. The families below let a caller catch a whole kind at once:
``ImageError`` (the photo), ``ModelError`` (dlib's model files), ``StoreError`` (the gallery's
storage), ``CalibrationError`` (learning or measuring a rule), ``ServiceError`` (the HTTP service
refusing a request); ``RuleInvalid`` is a rule in force that cannot be trusted. The CLI maps ``NoFaceFound`` to
exit code 3 and every other ``GalleryError`` to 4, printing the message on one line.
"""

from __future__ import annotations


class GalleryError(Exception):
    """Base class of every error gallery raises."""


class InvalidArgument(GalleryError, ValueError):
    """An argument of a call is out of range or of the wrong kind (also a ``ValueError``)."""


# --- the photo --------------------------------------------------------------------------------


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


# --- the faces in it --------------------------------------------------------------------------


class NoFaceFound(GalleryError):
    """The detector found no face in the photo."""


class MultipleFaces(GalleryError):
    """Enrolment needs exactly one face and the photo has several (pass largest=True / --largest)."""


class PoorQuality(GalleryError):
    """The face is too small, blurred, dark or uncertain to enrol; the message says which."""


class NotLive(GalleryError):
    """The liveness check given to the gallery rejected the face (a print, a screen or a mask?)."""


class LooksLikeSomeoneElse(GalleryError):
    """The face already matches a different enrolled person (pass allow_similar=True to enrol anyway)."""

    def __init__(self, message: str, other: str) -> None:
        super().__init__(message)
        self.other = other


class NotTheSamePerson(GalleryError):
    """A photo added to a person (``add``) is not them by the verify threshold in force (pass allow_different=True).

    ``other``: the enrolled person identify would answer for the face instead, or None.
    """

    def __init__(self, message: str, other: str | None) -> None:
        super().__init__(message)
        self.other = other


# --- dlib's model files -----------------------------------------------------------------------


class ModelError(GalleryError):
    """dlib's model files cannot be found, parsed or converted; the gallery cannot embed faces."""


class ModelFilesNotFound(ModelError):
    """The face-recognition-models package (dlib's model files) is not installed or lacks a file."""


class DlibFormatError(ModelError):
    """A dlib model file does not have the structure this code reads (damaged, or another model)."""


class WeightsMismatch(ModelError):
    """Converted weights do not have the checksum recorded in the code."""


# --- the gallery's storage --------------------------------------------------------------------


class StoreError(GalleryError):
    """Base class of every error the gallery's storage raises."""


class AlreadyEnrolled(StoreError):
    """A person of this name is enrolled already (pass add=True / --add to add another photo)."""


class PhotoAlreadyEnrolled(StoreError):
    """This very photo (same SHA-256 of the file) is enrolled already; ``holder`` is whose it is."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


class DuplicateExternalId(StoreError):
    """Another person already carries this external id."""


class ExternalIdMismatch(StoreError):
    """A photo was added with an external id other than the one the person carries (adding never changes it)."""


class PersonNotFound(StoreError):
    """No person is enrolled under this name or id."""


class SchemaTooNew(StoreError):
    """The database was written by a newer gallery whose schema this code does not know."""


class NotAGallery(StoreError):
    """The database file exists but is not a gallery database (or is damaged beyond reading)."""


class StoreBusy(StoreError):
    """Another process held the gallery's write lock for longer than the lock timeout."""


class StoreClosed(StoreError):
    """The gallery was used after ``close()``."""


class ModelMismatch(StoreError):
    """An embedding comes from a different model than the one this gallery searches."""


class InvalidFaceRecord(StoreError):
    """A face record is malformed (wrong embedding shape, non-finite values, bad box or landmarks)."""


class InvalidName(InvalidFaceRecord):
    """A name or external id is empty, too long, not UTF-8 text, or holds a character names may not (named)."""


class IndexFileInvalid(StoreError):
    """The FAISS index file is truncated, damaged or not an index file (the gallery rebuilds it)."""


class KeyNotFound(StoreError):
    """No API key carries this name."""


class KeyNameTaken(StoreError):
    """An API key of this name exists already (revoked keys keep their names: pick another)."""


class StorageFailure(StoreError):
    """The database or the file system failed (disk full, I/O error, locked past the busy timeout)."""


class AuditNotWritten(StoreError):
    """Under ``audit="required"``, a call's audit event could not be written (identify and verify give no answer)."""


class GalleryVanished(StoreError):
    """The gallery's folder or database file was deleted, moved or replaced while it was open: reopen it."""


class DatabaseUnavailable(StorageFailure):
    """The database server cannot be reached (down, unreachable, or the connection dropped mid-call).

    Writes fail at once with it; identify keeps answering from the host's replica until
    ``DataTooStale``. The gallery reconnects by itself when the server is back.
    """


class HostNotFound(StoreError):
    """No host following the gallery's database has this id (or the prefix names none, or several)."""


class DatabaseLoginRefused(StoreError):
    """The database server refused the connection's credentials or database name (the URL is wrong)."""


class InvalidDatabaseUrl(StoreError):
    """The database URL is malformed or names a database the gallery does not support."""


class DataTooStale(StoreError):
    """The host's replica was last confirmed current longer ago than the maximum staleness: nothing is decided.

    Attributes:
        age_s: seconds since the replica was last confirmed current.
    """

    def __init__(self, message: str, *, age_s: float) -> None:
        super().__init__(message)
        self.age_s = age_s


# --- learning and measuring the decision rule -------------------------------------------------


class CalibrationError(GalleryError):
    """The labelled photos cannot support the calibration asked for (too few people, photos or strangers)."""


class PairsFormatError(CalibrationError):
    """A pairs file is not in LFW's format (not text, wrong number of fields, a non-numeric photo number)."""


class PairsFileUnreadable(CalibrationError):
    """A pairs file cannot be read (no permission, a directory, an I/O error)."""


class PhotosMissing(CalibrationError):
    """Photos a pairs file names are missing or unreadable (allow_missing=True / --allow-missing scores the rest)."""


class NoUsablePairs(CalibrationError):
    """No pair of a pairs file has a face found in both photos."""


class RuleInvalid(GalleryError):
    """A decision rule in force cannot be read or trusted (damaged, incomplete, out of range): nothing is decided.

    Raised by identify (the ``decision_rule`` setting), verify and the enrolment lookalike
    check (``verify_rule``) instead of deciding with it; ``calibrate`` never stores such a rule.

    Attributes:
        setting: the gallery setting at fault (``"decision_rule"`` or ``"verify_rule"``), or
            None for the rules shipped with the package.
        problem: what is wrong with it, e.g. ``"threshold is nan, must be a finite number > 0"``.
    """

    def __init__(self, message: str, *, setting: str | None = None, problem: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting
        self.problem = problem if problem is not None else message


# --- the HTTP service (gallery.service) -------------------------------------------------------


class ServiceError(GalleryError):
    """The HTTP service refused a request before, or instead of, asking the gallery."""


class NotAuthenticated(ServiceError):
    """The request carries no API key, or one that is unknown or revoked (HTTP 401)."""


class ScopeDenied(ServiceError):
    """The request's API key lacks the scope the route needs (HTTP 403)."""


class RateLimited(ServiceError):
    """The API key made more identify/verify requests than its rate limit allows (HTTP 429).

    ``retry_after``: seconds until the key may ask again.
    """

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestTooLarge(ServiceError):
    """The request's body is larger than the service accepts (HTTP 413)."""


class ServiceOverloaded(ServiceError):
    """Every worker is busy and the queue is full, or a slot did not free up in time (HTTP 503)."""


class ServiceNotReady(ServiceError):
    """The service is still loading its models or opening the gallery, or cannot reach its database (HTTP 503)."""


class RequestTimedOut(ServiceError):
    """The gallery did not answer within the service's per-request timeout (HTTP 504)."""


# --- the service, seen from its client (``gallery --server``) ---------------------------------


class ClientError(GalleryError):
    """Raised by ``gallery.client`` about the service it asked, never by a gallery or the service itself."""


class ServiceUnreachable(ClientError):
    """The gallery service did not answer: connection refused, unknown host, TLS failure or timeout."""


class ServiceResponseInvalid(ClientError):
    """The server answered, but not as the gallery service does (another program, or a proxy's error page)."""
