"""Errors of the storage layer, all under ``StoreError`` (itself a ``GalleryError``)."""

from __future__ import annotations

from gallery.errors import GalleryError


class StoreError(GalleryError):
    """Base class of every error the gallery's storage raises."""


class SchemaTooNew(StoreError):
    """The database was written by a newer gallery whose schema this code does not know."""


class NotAGallery(StoreError):
    """The database file exists but is not a gallery database (or is damaged beyond reading)."""


class StoreBusy(StoreError):
    """Another process held the gallery's write lock for longer than the lock timeout."""


class StoreClosed(StoreError):
    """The store was used after ``close()``."""


class DuplicateName(StoreError):
    """A person with this name is already enrolled."""


class DuplicateExternalId(StoreError):
    """Another person already carries this external id."""


class PersonNotFound(StoreError):
    """No person is enrolled under this name or id."""


class ModelMismatch(StoreError):
    """An embedding comes from a different model than the one this store searches."""


class InvalidFaceRecord(StoreError):
    """A face record is malformed (wrong embedding shape, non-finite values, bad box or landmarks)."""


class IndexFileInvalid(StoreError):
    """The FAISS index file is truncated, damaged or not an index file (the store rebuilds it)."""


class StorageFailure(StoreError):
    """SQLite or the file system failed (disk full, I/O error, locked past the busy timeout)."""
