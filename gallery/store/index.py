"""The FAISS index of face embeddings, keyed by ``faces.id``, and its on-disk file.

The index is exact (``IndexIDMap2`` over ``IndexFlatL2``): dlib compares descriptors by
Euclidean distance, and a gallery of thousands of faces searches in well under a
millisecond without approximation. FAISS ranks the candidates; their distances are then
recomputed in float64 from the stored float32 vectors, so a distance does not depend on
how many queries were batched together (FAISS switches to a BLAS formula for larger
batches, which rounds differently).

Thread safety: searching one ``FaceIndex`` from many threads at once is safe; mutating it
(``add``, ``remove_ids``) while anyone searches it is not. The store never mutates an index
it has published: it mutates a ``copy()`` and swaps the reference (copy-on-write).

File format (one file, written atomically): ``MAGIC``, a little-endian u32 header length,
a UTF-8 JSON header (format, model, dimension, count, SHA-256 of the sorted ids, the
gallery id and faces generation it was saved at, SHA-256 and length of the payload), then
the payload: ``faiss.serialize_index``. The payload checksum is verified before FAISS ever
parses the bytes, so a damaged file is rejected instead of crashing the process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gallery.store.errors import IndexFileInvalid

if TYPE_CHECKING:
    import faiss

MAGIC = b"GALLERY-FAISS\n"
FORMAT_VERSION = 1
_HEADER_LENGTH = struct.Struct("<I")
_MAX_HEADER_BYTES = 1 << 16
# Below this many queries a search runs on the calling thread alone: an OpenMP team costs
# more than it saves for a few queries, and the teams of concurrent callers (a door served
# from several threads) oversubscribe the cores, making searches 10-30x slower under load.
FEW_QUERIES = 20


def _faiss() -> Any:
    """The faiss module, imported on first use (it takes a noticeable fraction of a second)."""
    import faiss

    return faiss


def ids_digest(ids: np.ndarray) -> str:
    """SHA-256 of a set of face ids (order-independent)."""
    return hashlib.sha256(np.sort(np.asarray(ids, dtype="<i8")).tobytes()).hexdigest()


@dataclass(frozen=True)
class IndexFileHeader:
    """What an index file says about itself."""

    model: str
    dimension: int
    count: int
    ids_sha256: str
    gallery_id: str
    generation: int
    payload_sha256: str
    payload_length: int
    format: int = FORMAT_VERSION


class FaceIndex:
    """Exact nearest-neighbour search over one model's embeddings, keyed by face id."""

    def __init__(self, model: str, dimension: int, faiss_index: faiss.IndexIDMap2 | None = None) -> None:
        """An index of ``model`` embeddings; empty unless ``faiss_index`` is given.

        Args:
            model: the id of the embedding model whose vectors this index holds.
            dimension: the embeddings' length.
            faiss_index: an existing ``IndexIDMap2`` over ``IndexFlatL2`` to wrap.
        """
        faiss = _faiss()
        if faiss_index is None:
            faiss_index = faiss.IndexIDMap2(faiss.IndexFlatL2(dimension))
        if not isinstance(faiss_index, faiss.IndexIDMap2) or faiss_index.d != dimension:
            raise ValueError(f"expected a {dimension}-d faiss.IndexIDMap2, got {type(faiss_index).__name__}")
        self.model = model
        self.dimension = dimension
        self._index = faiss_index

    @classmethod
    def build(cls, model: str, dimension: int, ids: np.ndarray, embeddings: np.ndarray) -> FaceIndex:
        """A new index holding ``embeddings`` under ``ids``."""
        index = cls(model, dimension)
        index.add(ids, embeddings)
        return index

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        """The face ids held, sorted (int64)."""
        return np.sort(_faiss().vector_to_array(self._index.id_map).astype(np.int64))

    def copy(self) -> FaceIndex:
        """An independent copy, to mutate while this one keeps serving searches."""
        return FaceIndex(self.model, self.dimension, _faiss().clone_index(self._index))

    def add(self, ids: np.ndarray, embeddings: np.ndarray) -> None:
        """Add ``embeddings`` (n, dimension) under ``ids`` (n,), which must be new."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vectors = self._as_vectors(embeddings)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} embeddings")
        if len(np.unique(ids)) != len(ids) or np.isin(ids, self.ids()).any():
            raise ValueError("face ids must be unique and not already in the index")
        if len(ids):
            self._index.add_with_ids(vectors, ids)

    def remove_ids(self, ids: np.ndarray) -> int:
        """Remove the faces with these ids; returns how many were present."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return 0
        return int(self._index.remove_ids(ids))

    def vector(self, face_id: int) -> np.ndarray:
        """The stored embedding of one face (float32)."""
        return self._index.reconstruct(int(face_id))

    def search(self, queries: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The ``k`` nearest faces of each query, nearest first.

        Args:
            queries: (n, dimension) or (dimension,) embeddings.
            k: how many neighbours per query at most.

        Returns:
            Per query, ``(distances, ids)``: Euclidean distances (float64, ascending; ties
            by id) and face ids (int64). Shorter than ``k`` when the index holds fewer faces.
        """
        vectors = self._as_vectors(queries)
        k = min(int(k), len(self))
        if k <= 0:
            return [(np.empty(0), np.empty(0, dtype=np.int64)) for _ in vectors]
        faiss = _faiss()
        previous_threads = faiss.omp_get_max_threads()
        if len(vectors) < FEW_QUERIES:
            # The setting is per OS thread (an OpenMP ICV), so concurrent callers are unaffected.
            faiss.omp_set_num_threads(1)
        try:
            _, found = self._index.search(vectors, k)
        finally:
            faiss.omp_set_num_threads(previous_threads)
        results = []
        for query, row in zip(vectors, found, strict=True):
            ids = row[row >= 0].astype(np.int64)
            stored = np.stack([self.vector(i) for i in ids]).astype(np.float64) if len(ids) else np.empty((0, 1))
            distances = np.sqrt(((stored - query.astype(np.float64)) ** 2).sum(axis=1))
            order = np.lexsort((ids, distances))
            results.append((distances[order], ids[order]))
        return results

    def _as_vectors(self, embeddings: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors.reshape(1, -1)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise ValueError(f"embeddings must have shape (n, {self.dimension}), got {np.shape(embeddings)}")
        if not np.isfinite(vectors).all():
            raise ValueError("embeddings must be finite")
        return vectors

    def save(self, path: Path, *, gallery_id: str, generation: int) -> None:
        """Write the index to ``path`` atomically (temporary file, fsync, rename, fsync folder).

        Args:
            path: the index file.
            gallery_id: the database's ``store_state.gallery_id``, binding the file to it.
            generation: the faces generation this index reflects.
        """
        payload = _faiss().serialize_index(self._index).tobytes()
        header = IndexFileHeader(
            model=self.model,
            dimension=self.dimension,
            count=len(self),
            ids_sha256=ids_digest(self.ids()),
            gallery_id=gallery_id,
            generation=generation,
            payload_sha256=hashlib.sha256(payload).hexdigest(),
            payload_length=len(payload),
        )
        header_bytes = json.dumps(asdict(header), sort_keys=True).encode()
        write_atomically(path, [MAGIC, _HEADER_LENGTH.pack(len(header_bytes)), header_bytes, payload])

    @classmethod
    def load(cls, path: Path) -> tuple[FaceIndex, IndexFileHeader]:
        """Read and check an index file.

        Raises:
            FileNotFoundError: there is no file.
            IndexFileInvalid: the file is truncated, damaged or not an index file.
        """
        data = path.read_bytes()
        header = read_header(data)
        start = len(MAGIC) + _HEADER_LENGTH.size + _HEADER_LENGTH.unpack_from(data, len(MAGIC))[0]
        payload = data[start:]
        if len(payload) != header.payload_length or hashlib.sha256(payload).hexdigest() != header.payload_sha256:
            raise IndexFileInvalid(f"{path}: the index data does not match its checksum")
        faiss = _faiss()
        try:
            faiss_index = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
            index = cls(header.model, header.dimension, faiss_index)
        except (RuntimeError, ValueError) as error:
            raise IndexFileInvalid(f"{path}: FAISS cannot read the index: {error}") from error
        if len(index) != header.count or ids_digest(index.ids()) != header.ids_sha256:
            raise IndexFileInvalid(f"{path}: the index's ids disagree with its header")
        return index, header


def read_header(data: bytes) -> IndexFileHeader:
    """Parse an index file's header from its leading bytes.

    Raises:
        IndexFileInvalid: the bytes do not start with a well-formed header.
    """
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _HEADER_LENGTH.size:
        raise IndexFileInvalid("not a gallery index file (bad magic)")
    (length,) = _HEADER_LENGTH.unpack_from(data, len(MAGIC))
    start = len(MAGIC) + _HEADER_LENGTH.size
    if length > _MAX_HEADER_BYTES or start + length > len(data):
        raise IndexFileInvalid("index file header is truncated or oversized")
    try:
        fields = json.loads(data[start : start + length])
        header = IndexFileHeader(**fields)
    except (ValueError, TypeError) as error:
        raise IndexFileInvalid(f"index file header is unreadable: {error}") from error
    if header.format != FORMAT_VERSION:
        raise IndexFileInvalid(f"index file format {header.format} is not {FORMAT_VERSION}")
    return header


def write_atomically(path: Path, chunks: list[bytes]) -> None:
    """Replace ``path`` with ``chunks`` so that a crash leaves either the old or the new file.

    Leftover temporary files of earlier crashed writes are deleted first; call this only
    while holding the lock that serialises writers of ``path``.
    """
    remove_stale_temporaries(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            for chunk in chunks:
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporary files a crashed ``write_atomically(path, ...)`` left behind."""
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
