"""The gallery's storage: SQLite (the truth) and a FAISS index of its embeddings (a cache).

Knows nothing of images. The facade uses one ``Store`` per gallery home::

    store = Store.open(home, model="dlib_face_recognition_resnet_model_v1")
    person_id, face_id = store.add_person_with_face("Ada", face)      # FaceRecord
    hits = store.search(embeddings, k=5)        # per query: nearest people, nearest first
    removed = store.remove_person("Ada")        # erases rows, index entries and WAL copies
    store.close()

A home holds ``gallery.db`` (+ ``-wal``/``-shm``), ``gallery.db.lock`` (the cross-process
write lock) and ``faces.faiss`` (the index). Writes hold the lock across the database
commit and the index save; searches never wait for a write and pick up other processes'
writes by checking a generation counter first. See ``gallery.store.store`` for the rules
and the module behind each concern. ``clean_name`` and ``checked_face`` are what the store
accepts, for callers that read names or build face records elsewhere.
"""

from gallery.errors import (
    AlreadyEnrolled,
    DuplicateExternalId,
    IndexFileInvalid,
    InvalidFaceRecord,
    ModelMismatch,
    NotAGallery,
    PersonNotFound,
    SchemaTooNew,
    StorageFailure,
    StoreBusy,
    StoreClosed,
    StoreError,
)
from gallery.store.connect import DATABASE_FILE
from gallery.store.records import (
    AuditEvent,
    FaceRecord,
    FaceRow,
    PersonRow,
    ReembedTask,
    RemovedPerson,
    SearchHit,
    StoreStats,
)
from gallery.store.replica import DEFAULT_MAX_STALENESS_S
from gallery.store.store import INDEX_FILE, Store
from gallery.store.validation import checked_embedding, checked_face, clean_name, normalise_name

__all__ = [
    "DATABASE_FILE",
    "DEFAULT_MAX_STALENESS_S",
    "INDEX_FILE",
    "AlreadyEnrolled",
    "AuditEvent",
    "DuplicateExternalId",
    "FaceRecord",
    "FaceRow",
    "IndexFileInvalid",
    "InvalidFaceRecord",
    "ModelMismatch",
    "NotAGallery",
    "PersonNotFound",
    "PersonRow",
    "ReembedTask",
    "RemovedPerson",
    "SchemaTooNew",
    "SearchHit",
    "StorageFailure",
    "Store",
    "StoreBusy",
    "StoreClosed",
    "StoreError",
    "StoreStats",
    "checked_embedding",
    "checked_face",
    "clean_name",
    "normalise_name",
]
