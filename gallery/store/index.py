"""The FAISS index of face embeddings, keyed by ``faces.id``, and its on-disk file.

The index is chosen by size (``IndexPolicy``): exact (``IndexIDMap2`` over ``IndexFlatL2``)
up to ``EXACT_UP_TO`` faces, where a search takes about a millisecond; beyond, an HNSW graph
(``IndexIDMap2`` over ``IndexHNSWFlat``), which finds the exact nearest face for more than
99% of queries at a million faces in about a millisecond, where exact search takes tens.
IVF was measured too and rejected: face descriptors spread over some 50 dimensions, so a
query's true neighbour often lies outside the lists probed (README, "Numbers"). Either way
FAISS only ranks candidates; their distances are recomputed in float64 from the stored
float32 vectors, so a distance is exact Euclidean and does not depend on how many queries
were batched together (FAISS switches to a BLAS formula for larger batches).

Thread safety: searching one ``FaceIndex`` from many threads at once is safe; mutating it
(``add``, ``remove_ids``) while anyone searches it is not. The store never mutates an index
it has published: it mutates a ``copy()`` and swaps the reference (copy-on-write).

File format (one file, written atomically): ``MAGIC``, a little-endian u32 header length,
a UTF-8 JSON header (format, model, dimension, count, SHA-256 of the sorted ids, the
gallery id and faces generation it was saved at, SHA-256 and length of the payload), then
the payload: FAISS's own serialization of the index (header space is reserved first and
filled in after the payload is streamed out). The payload checksum is verified before FAISS ever
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
# Exact search up to this many faces, an HNSW graph beyond (measured: benchmarks/bench_search.py).
EXACT_UP_TO = 50_000
HNSW_M = 32  # graph links per face (64 at the bottom layer): 256 bytes per face beside its vector
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 256
GHOST_LIMIT = 0.1  # rebuild the graph once a tenth of its nodes are removed faces
_RESERVED_HEADER_BYTES = 1024
_IO_CHUNK = 1 << 22


def _faiss() -> Any:
    """The faiss module, imported on first use (it takes a noticeable fraction of a second)."""
    import faiss

    return faiss


def _exact_index(dimension: int) -> faiss.IndexIDMap2:
    faiss = _faiss()
    return faiss.IndexIDMap2(faiss.IndexFlatL2(dimension))


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
    that a graph (``IndexHNSWFlat``): each face linked to ``m`` near neighbours, a search
    walking the graph with a candidate list of ``ef_search``. The graph stores the float32
    vectors themselves, so the candidates' distances are exact. The numbers behind the
    defaults are in the README ("Numbers") and ``benchmarks/bench_search.py``.
    """

    def __init__(
        self,
        exact_up_to: int = EXACT_UP_TO,
        m: int = HNSW_M,
        ef_construction: int = HNSW_EF_CONSTRUCTION,
        ef_search: int = HNSW_EF_SEARCH,
        ghost_limit: float = GHOST_LIMIT,
    ) -> None:
        self.exact_up_to = exact_up_to
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.ghost_limit = ghost_limit

    def kind_for(self, count: int, current: str) -> str:
        """``exact`` or ``hnsw``; a graph returns to exact only below half the threshold, so a
        gallery hovering at the threshold is not rebuilt on every write."""
        if current == "hnsw":
            return "exact" if count < self.exact_up_to // 2 else "hnsw"
        return "hnsw" if count > self.exact_up_to else "exact"


DEFAULT_POLICY = IndexPolicy()


class FaceIndex:
    """Nearest-neighbour search over one model's embeddings, keyed by face id.

    Exact while small, an HNSW graph beyond ``policy.exact_up_to`` faces; ``add`` and
    ``remove_ids`` switch the structure when the size calls for it. A graph cannot delete a
    node, so a removed face becomes a ghost: its id is unmapped (searches skip it), its
    vector is zeroed and its own links are cleared, so nothing of the removed embedding
    remains (not even an average of its neighbours, which would approximate it). Other
    faces' links to the ghost stay until the graph is rebuilt, which happens once ghosts
    exceed ``policy.ghost_limit`` of the nodes, or at once if the ghost was the graph's
    entry point.
    """

    def __init__(
        self,
        model: str,
        dimension: int,
        faiss_index: faiss.IndexIDMap2 | None = None,
        *,
        policy: IndexPolicy = DEFAULT_POLICY,
    ) -> None:
        """An index of ``model`` embeddings; empty unless ``faiss_index`` is given.

        Args:
            model: the id of the embedding model whose vectors this index holds.
            dimension: the embeddings' length.
            faiss_index: an existing ``IndexIDMap2`` over ``IndexFlatL2`` or ``IndexHNSWFlat``.
            policy: when to switch between exact and approximate search, and the graph's shape.
        """
        faiss = _faiss()
        if faiss_index is None:
            faiss_index = _exact_index(dimension)
        inner = faiss.downcast_index(faiss_index.index) if isinstance(faiss_index, faiss.IndexIDMap2) else None
        if faiss_index.d != dimension or not isinstance(inner, faiss.IndexFlatL2 | faiss.IndexHNSWFlat):
            raise ValueError(f"expected a {dimension}-d IndexIDMap2 over IndexFlatL2 or IndexHNSWFlat, "
                             f"got {type(faiss_index).__name__}")
        self.model = model
        self.dimension = dimension
        self.policy = policy
        self._index = faiss_index
        self._graph = inner if isinstance(inner, faiss.IndexHNSWFlat) else None
        self._ghosts = int((self._id_map() < 0).sum()) if self._graph is not None else 0

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
        """``exact`` (flat) or ``hnsw`` (approximate candidates, exact distances)."""
        return "exact" if self._graph is None else "hnsw"

    def __len__(self) -> int:
        return int(self._index.ntotal) - self._ghosts

    def _id_map(self) -> np.ndarray:
        """Face id per stored row (-1 for a ghost), a live view into the index."""
        id_map = self._index.id_map
        return _faiss().rev_swig_ptr(id_map.data(), id_map.size()) if id_map.size() else np.empty(0, np.int64)

    def ids(self) -> np.ndarray:
        """The face ids held, sorted (int64)."""
        ids = self._id_map()
        return np.sort(ids[ids >= 0]).astype(np.int64)

    def copy(self) -> FaceIndex:
        """An independent copy, to mutate while this one keeps serving searches."""
        return FaceIndex(self.model, self.dimension, _faiss().clone_index(self._index), policy=self.policy)

    def add(self, ids: np.ndarray, embeddings: np.ndarray) -> None:
        """Add ``embeddings`` (n, dimension) under ``ids`` (n,), which must be new.

        May rebuild the index as a graph (tens of seconds at the threshold, minutes at a
        million faces) when the gallery outgrows exact search.
        """
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vectors = self._as_vectors(embeddings)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} embeddings")
        if len(np.unique(ids)) != len(ids) or np.isin(ids, self.ids()).any():
            raise ValueError("face ids must be unique and not already in the index")
        if not len(ids):
            return
        if self.policy.kind_for(len(self) + len(ids), self.kind) != self.kind:
            if len(self):
                held_ids, held_vectors = self._contents()
                ids, vectors = np.concatenate([held_ids, ids]), np.concatenate([held_vectors, vectors])
            self._rebuild(ids, vectors)  # (without copies when building from nothing: a million faces is 0.5 GB)
        else:
            self._index.add_with_ids(vectors, ids)

    def remove_ids(self, ids: np.ndarray) -> int:
        """Remove the faces with these ids (their vectors are erased); returns how many were present."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return 0
        if self._graph is None:
            removed = int(self._index.remove_ids(ids))
        else:
            removed = self._ghost(ids)
        if self.policy.kind_for(len(self), self.kind) != self.kind or self._ghosts > self.policy.ghost_limit * (
            len(self) + self._ghosts
        ):
            self._rebuild(*self._contents())
        return removed

    def _ghost(self, ids: np.ndarray) -> int:
        """Unmap these faces' graph nodes, zero their vectors and clear their links (see the class)."""
        faiss = _faiss()
        id_map = self._id_map()
        rows = np.flatnonzero(np.isin(id_map, ids))
        if not len(rows):
            return 0
        graph = self._graph.hnsw
        offsets = faiss.rev_swig_ptr(graph.offsets.data(), graph.offsets.size())
        links = faiss.rev_swig_ptr(graph.neighbors.data(), graph.neighbors.size())
        id_map[rows] = -1
        self._stored_vectors()[rows] = 0.0
        for row in rows:
            links[int(offsets[row]) : int(offsets[row + 1])] = -1
        self._index.construct_rev_map()
        self._ghosts += len(rows)
        if graph.entry_point in rows:  # every search starts there: it must be a live node
            self._rebuild(*self._contents())
        return len(rows)

    def vector(self, face_id: int) -> np.ndarray:
        """The stored embedding of one face (float32)."""
        if face_id < 0:
            raise ValueError("face ids are not negative")
        return self._index.reconstruct(int(face_id))

    def search(self, queries: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The ``k`` nearest faces of each query, nearest first.

        On a graph the candidates are those the walk reaches (recall measured in the
        README); their distances are exact all the same.

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
        if self._graph is not None:
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(self.policy.ef_search, k)
            if self._ghosts:
                live = faiss.IDSelectorRange(0, np.iinfo(np.int64).max)  # ghosts are mapped to -1
                params.sel = live
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

    def _stored_vectors(self) -> np.ndarray:
        """Every stored row's vector, a live (rows, dimension) view into the index."""
        faiss = _faiss()
        flat = faiss.downcast_index(self._graph.storage) if self._graph is not None else faiss.downcast_index(
            self._index.index)
        if not flat.codes.size():
            return np.empty((0, self.dimension), np.float32)
        codes = faiss.rev_swig_ptr(flat.codes.data(), flat.codes.size())
        return codes.view(np.float32).reshape(-1, self.dimension)

    def _contents(self) -> tuple[np.ndarray, np.ndarray]:
        """Every live face id and a copy of its vector, in storage order."""
        id_map = self._id_map()
        live = id_map >= 0
        return id_map[live].astype(np.int64), self._stored_vectors()[live].copy()

    def _rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the faiss index by one of the kind ``len(ids)`` faces call for, without ghosts."""
        faiss = _faiss()
        if self.policy.kind_for(len(ids), self.kind) == "exact":
            index, graph = _exact_index(self.dimension), None
        else:
            graph = faiss.IndexHNSWFlat(self.dimension, self.policy.m)
            graph.hnsw.efConstruction = self.policy.ef_construction
            index = faiss.IndexIDMap2(graph)
            if len(ids) > 1 and not (ids[1:] > ids[:-1]).all():
                order = np.argsort(ids, kind="stable")  # the same faces give the same insertion order
                ids, vectors = ids[order], vectors[order]
        if len(ids):
            index.add_with_ids(np.ascontiguousarray(vectors), np.ascontiguousarray(ids))
        self._index, self._graph, self._ghosts = index, graph, 0

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
