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
import math
import os
import struct
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

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
# Exact search up to this many faces, IVF beyond (measured: benchmarks/bench_search.py).
EXACT_UP_TO = 50_000
LISTS_PER_SQRT_N = 4.0  # IVF lists: about 4 sqrt(n), FAISS's usual rule, so a list holds ~sqrt(n)/4
NPROBE = 48  # lists scanned per query
KMEANS_ITERATIONS = 10
KMEANS_POINTS_PER_LIST = 64  # training sample: at most this many vectors per list
KMEANS_SEED = 1234
_RESERVED_HEADER_BYTES = 1024
_IO_CHUNK = 1 << 22


def _faiss() -> Any:
    """The faiss module, imported on first use (it takes a noticeable fraction of a second)."""
    import faiss

    return faiss


def _exact_index(dimension: int) -> faiss.Index:
    faiss = _faiss()
    return faiss.IndexIDMap2(faiss.IndexFlatL2(dimension))


def _is_exact(index: faiss.Index) -> bool:
    return isinstance(index, _faiss().IndexIDMap2)


def _is_ivf(index: faiss.Index) -> bool:
    return isinstance(index, _faiss().IndexIVFFlat)


def set_faiss_threads(count: int) -> None:
    """OpenMP threads for FAISS's bulk work (training, many-query searches) on the calling thread.

    OpenMP keeps this per OS thread; threads started later use the runtime's default
    (``OMP_NUM_THREADS``, else one per core). Searches of a few queries always use one thread.
    """
    _faiss().omp_set_num_threads(count)


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


class IndexPolicy:
    """Which search structure a gallery of a given size gets, and how the approximate one is shaped.

    Exact search (``IndexFlatL2``) while the gallery holds at most ``exact_up_to`` faces; above
    that an inverted-file index (``IndexIVFFlat``: k-means lists, ``nprobe`` of them scanned per
    query) whose lists hold the full float32 vectors, so candidates' distances are exact and
    removal deletes the vector itself. The numbers behind the defaults are in the README
    ("Numbers") and ``benchmarks/bench_search.py``.
    """

    def __init__(
        self,
        exact_up_to: int = EXACT_UP_TO,
        lists_per_sqrt_n: float = LISTS_PER_SQRT_N,
        nprobe: int = NPROBE,
        min_vectors_per_list: int = 39,
    ) -> None:
        self.exact_up_to = exact_up_to
        self.lists_per_sqrt_n = lists_per_sqrt_n
        self.nprobe = nprobe
        self.min_vectors_per_list = min_vectors_per_list

    def nlist(self, count: int) -> int:
        """Lists for ``count`` faces: about ``lists_per_sqrt_n * sqrt(count)``, each trainable."""
        wanted = round(self.lists_per_sqrt_n * math.sqrt(max(count, 1)))
        return max(1, min(wanted, count // self.min_vectors_per_list))

    def kind_for(self, count: int, current: str) -> str:
        """``exact`` or ``ivf``; an IVF index returns to exact only below half the threshold, so a
        gallery hovering at the threshold is not retrained on every write."""
        if current == "ivf":
            return "exact" if count < self.exact_up_to // 2 else "ivf"
        return "ivf" if count > self.exact_up_to else "exact"

    def needs_retraining(self, nlist: int, count: int) -> bool:
        """An IVF index trained when the gallery was a quarter of its size has lists 4x too long."""
        return self.nlist(count) >= 2 * nlist


DEFAULT_POLICY = IndexPolicy()


class FaceIndex:
    """Nearest-neighbour search over one model's embeddings, keyed by face id.

    Exact while small, IVF beyond ``policy.exact_up_to`` faces: ``add`` and ``remove_ids``
    switch the structure (or retrain the IVF lists) when the size calls for it.
    """

    def __init__(
        self,
        model: str,
        dimension: int,
        faiss_index: faiss.Index | None = None,
        *,
        policy: IndexPolicy = DEFAULT_POLICY,
    ) -> None:
        """An index of ``model`` embeddings; empty unless ``faiss_index`` is given.

        Args:
            model: the id of the embedding model whose vectors this index holds.
            dimension: the embeddings' length.
            faiss_index: an existing ``IndexIDMap2`` over ``IndexFlatL2``, or an ``IndexIVFFlat``
                with a hashtable direct map, to wrap.
            policy: when to switch between exact and approximate search.
        """
        faiss = _faiss()
        if faiss_index is None:
            faiss_index = _exact_index(dimension)
        if faiss_index.d != dimension or not (_is_exact(faiss_index) or _is_ivf(faiss_index)):
            raise ValueError(f"expected a {dimension}-d IndexIDMap2(IndexFlatL2) or IndexIVFFlat, "
                             f"got {type(faiss_index).__name__}")
        if _is_ivf(faiss_index) and faiss_index.direct_map.type != faiss.DirectMap.Hashtable:
            raise ValueError("an IVF index needs a hashtable direct map (to fetch vectors by face id)")
        self.model = model
        self.dimension = dimension
        self.policy = policy
        self._index = faiss_index

    @classmethod
    def build(
        cls, model: str, dimension: int, ids: np.ndarray, embeddings: np.ndarray, *,
        policy: IndexPolicy = DEFAULT_POLICY,
    ) -> FaceIndex:
        """A new index holding ``embeddings`` under ``ids``, of the kind their number calls for."""
        index = cls(model, dimension, policy=policy)
        index.add(ids, embeddings)
        return index

    @property
    def kind(self) -> str:
        """``exact`` (flat) or ``ivf`` (approximate candidates, exact distances)."""
        return "ivf" if _is_ivf(self._index) else "exact"

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        """The face ids held, sorted (int64)."""
        faiss = _faiss()
        if not _is_ivf(self._index):
            return np.sort(faiss.vector_to_array(self._index.id_map).astype(np.int64))
        lists = self._index.invlists
        parts = [
            faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).astype(np.int64)
            for i in range(lists.nlist)
            if lists.list_size(i)
        ]
        return np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)

    def copy(self) -> FaceIndex:
        """An independent copy, to mutate while this one keeps serving searches."""
        return FaceIndex(self.model, self.dimension, _faiss().clone_index(self._index), policy=self.policy)

    def add(self, ids: np.ndarray, embeddings: np.ndarray) -> None:
        """Add ``embeddings`` (n, dimension) under ``ids`` (n,), which must be new.

        May switch the index to IVF (training its lists on every vector held: seconds at the
        threshold, about a minute at a million faces) when the gallery outgrows exact search.
        """
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vectors = self._as_vectors(embeddings)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} embeddings")
        if len(np.unique(ids)) != len(ids) or np.isin(ids, self.ids()).any():
            raise ValueError("face ids must be unique and not already in the index")
        if not len(ids):
            return
        count = len(self) + len(ids)
        wanted = self.policy.kind_for(count, self.kind)
        if wanted != self.kind or (wanted == "ivf" and self.policy.needs_retraining(self._index.nlist, count)):
            held_ids, held_vectors = self._contents()
            self._rebuild(np.concatenate([held_ids, ids]), np.concatenate([held_vectors, vectors]))
        else:
            self._index.add_with_ids(vectors, ids)

    def remove_ids(self, ids: np.ndarray) -> int:
        """Remove the faces with these ids (their vectors are deleted); returns how many were present."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return 0
        faiss = _faiss()
        if _is_ivf(self._index):
            # A hashtable direct map removes only through an explicit id array.
            present = ids[np.isin(ids, self.ids())]
            removed = int(self._index.remove_ids(faiss.IDSelectorArray(len(present), faiss.swig_ptr(present))))
        else:
            removed = int(self._index.remove_ids(ids))
        if self.policy.kind_for(len(self), self.kind) != self.kind:
            self._rebuild(*self._contents())
        return removed

    def vector(self, face_id: int) -> np.ndarray:
        """The stored embedding of one face (float32)."""
        return self._index.reconstruct(int(face_id))

    def search(self, queries: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The ``k`` nearest faces of each query, nearest first.

        On an IVF index the candidates are those in the ``nprobe`` lists nearest the query
        (recall measured in the README); their distances are exact all the same.

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
        params = None
        if _is_ivf(self._index):
            params = faiss.SearchParametersIVF()
            params.nprobe = min(self.policy.nprobe, self._index.nlist)
        previous_threads = faiss.omp_get_max_threads()
        if len(vectors) < FEW_QUERIES:
            # The setting is per OS thread (an OpenMP ICV), so concurrent callers are unaffected.
            faiss.omp_set_num_threads(1)
        try:
            _, found = self._index.search(vectors, k, params=params)
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

    def _contents(self) -> tuple[np.ndarray, np.ndarray]:
        """Every face id and its vector, in storage order."""
        faiss = _faiss()
        if not _is_ivf(self._index):
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            flat = faiss.downcast_index(self._index.index)
            vectors = faiss.vector_to_array(flat.codes).view(np.float32).reshape(-1, self.dimension)
            return ids, vectors
        lists = self._index.invlists
        id_parts, vector_parts = [], []
        for i in range(lists.nlist):
            size = lists.list_size(i)
            if size:
                id_parts.append(faiss.rev_swig_ptr(lists.get_ids(i), size).astype(np.int64))
                codes = faiss.rev_swig_ptr(lists.get_codes(i), size * self.dimension * 4)
                vector_parts.append(codes.view(np.float32).reshape(size, self.dimension).copy())
        if not id_parts:
            return np.empty(0, dtype=np.int64), np.empty((0, self.dimension), dtype=np.float32)
        return np.concatenate(id_parts), np.concatenate(vector_parts)

    def _rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the faiss index by one of the kind ``len(ids)`` faces call for."""
        faiss = _faiss()
        if self.policy.kind_for(len(ids), self.kind) == "exact":
            index = _exact_index(self.dimension)
        else:
            nlist = self.policy.nlist(len(ids))
            index = faiss.IndexIVFFlat(faiss.IndexFlatL2(self.dimension), self.dimension, nlist)
            index.cp.niter = KMEANS_ITERATIONS
            index.cp.max_points_per_centroid = KMEANS_POINTS_PER_LIST
            index.cp.seed = KMEANS_SEED  # a rebuild from the same faces gives the same lists
            order = np.argsort(ids, kind="stable")  # and so does the order they came in
            ids, vectors = ids[order], vectors[order]
            index.train(vectors)
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
        if len(ids):
            index.add_with_ids(np.ascontiguousarray(vectors), np.ascontiguousarray(ids))
        self._index = index

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

        The payload is streamed to the file (a million faces would otherwise need a second
        half-gigabyte copy in memory); the header, which carries the payload's checksum, is
        written into space reserved before it.

        Args:
            path: the index file.
            gallery_id: the database's ``store_state.gallery_id``, binding the file to it.
            generation: the faces generation this index reflects.
        """
        faiss = _faiss()
        ids_sha256 = ids_digest(self.ids())

        def write(file: BinaryIO) -> None:
            file.write(MAGIC + _HEADER_LENGTH.pack(_RESERVED_HEADER_BYTES) + b" " * _RESERVED_HEADER_BYTES)
            digest, length = hashlib.sha256(), 0

            def write_chunk(chunk: bytes) -> None:
                nonlocal length
                digest.update(chunk)
                length += len(chunk)
                file.write(chunk)

            faiss.write_index(self._index, faiss.PyCallbackIOWriter(write_chunk, _IO_CHUNK))
            header = IndexFileHeader(
                model=self.model,
                dimension=self.dimension,
                count=len(self),
                ids_sha256=ids_sha256,
                gallery_id=gallery_id,
                generation=generation,
                payload_sha256=digest.hexdigest(),
                payload_length=length,
            )
            header_bytes = json.dumps(asdict(header), sort_keys=True).encode()
            if len(header_bytes) > _RESERVED_HEADER_BYTES:
                raise ValueError("the index header outgrew its reserved space")
            file.seek(len(MAGIC) + _HEADER_LENGTH.size)
            file.write(header_bytes)  # JSON ignores the spaces left after it

        write_atomically(path, write)

    @classmethod
    def load(cls, path: Path, *, policy: IndexPolicy = DEFAULT_POLICY) -> tuple[FaceIndex, IndexFileHeader]:
        """Read and check an index file (streamed: memory holds the index, not the file too).

        Raises:
            FileNotFoundError: there is no file.
            IndexFileInvalid: the file is truncated, damaged or not an index file.
        """
        with open(path, "rb") as file:
            header = read_header(file.read(len(MAGIC) + _HEADER_LENGTH.size + _MAX_HEADER_BYTES))
            file.seek(len(MAGIC))
            start = len(MAGIC) + _HEADER_LENGTH.size + _HEADER_LENGTH.unpack(file.read(_HEADER_LENGTH.size))[0]
            file.seek(start)
            digest, length = hashlib.sha256(), 0
            while chunk := file.read(_IO_CHUNK):
                digest.update(chunk)
                length += len(chunk)
            if length != header.payload_length or digest.hexdigest() != header.payload_sha256:
                raise IndexFileInvalid(f"{path}: the index data does not match its checksum")
            faiss = _faiss()
            file.seek(start)
            try:
                faiss_index = faiss.read_index(faiss.PyCallbackIOReader(file.read, _IO_CHUNK))
                index = cls(header.model, header.dimension, faiss_index, policy=policy)
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


def write_atomically(path: Path, content: list[bytes] | Callable[[BinaryIO], None]) -> None:
    """Replace ``path`` with ``content`` (chunks, or a function writing to the open file) so that
    a crash leaves either the old or the new file.

    Leftover temporary files of earlier crashed writes are deleted first; call this only
    while holding the lock that serialises writers of ``path``.
    """
    remove_stale_temporaries(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            if callable(content):
                content(file)
            else:
                for chunk in content:
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
