"""The FAISS index of face embeddings, keyed by ``faces.id``, and its on-disk file.

The index is chosen by size (``IndexPolicy``): exact (``IndexIDMap2`` over ``IndexFlatL2``)
up to ``EXACT_UP_TO`` faces, where a search takes a fraction of a millisecond; beyond, the same
exact vectors plus a 4-bit product-quantised copy (``IndexPQFastScan``, 32 bytes a face)
that is scanned in full to pick candidates, which are then ranked by exact distance. At a
million faces that finds the exact nearest face for more than 99% of queries in about a
millisecond, where exact search takes tens. Graphs (HNSW) and inverted lists (IVF) were
measured and rejected: dlib's descriptors spread over some 50 dimensions, so another photo
of an enrolled person is near that one face and far from all others, and a graph walk or
a few probed lists often never reach it (README, "Numbers"). Either way the distances
reported are recomputed in float64 from the stored float32 vectors, so a distance is exact
Euclidean and does not depend on how many queries were batched together (FAISS switches to
a BLAS formula for larger batches).

Thread safety: searching one ``FaceIndex`` from many threads at once is safe; mutating it
(``add``, ``remove_ids``) while anyone searches it is not. The store never mutates an index
it has published: it mutates a ``copy()`` and swaps the reference (copy-on-write).

File format (one file, written atomically): ``MAGIC``, a little-endian u32 header length,
a UTF-8 JSON header (format, model, dimension, count, SHA-256 of the sorted ids, the
gallery id and faces generation it was saved at, SHA-256 and length of the payload), then
the payload: FAISS's own serialization of the exact index, then of the PQ codes' index if
any (``codes_length`` bytes; header space is reserved first and filled in after the payload
is streamed out). The payload checksum is verified before FAISS ever
parses the bytes, so a damaged file is rejected instead of crashing the process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from gallery.store.errors import IndexFileInvalid

if TYPE_CHECKING:
    import faiss

MAGIC = b"GALLERY-FAISS\n"
FORMAT_VERSION = 2
_HEADER_LENGTH = struct.Struct("<I")
_MAX_HEADER_BYTES = 1 << 16
# Below this many queries a search runs on the calling thread alone: an OpenMP team costs
# more than it saves for a few queries, and the teams of concurrent callers (a door served
# from several threads) oversubscribe the cores, making searches 10-30x slower under load.
FEW_QUERIES = 20
# Exact search up to this many faces, PQ codes for candidates beyond. Measured (one thread,
# k=20): exact 0.15 ms at 10k and 0.22 ms at 20k (10 MB of vectors, cache-resident), then
# 1.1 ms at 50k and 2.6 ms at 100k, where the PQ scan takes 0.30 and 0.35 ms.
EXACT_UP_TO = 20_000
PQ_SUBQUANTIZERS = 64  # 2 dimensions per 4-bit code: 32 bytes a face
CANDIDATES_PER_RESULT = 16  # candidates ranked exactly per neighbour asked for
MIN_CANDIDATES = 128
PQ_TRAINING_SAMPLE = 32_768
PQ_KMEANS_ITERATIONS = 10
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
    codes_length: int = 0  # the payload's last bytes: the PQ codes' index, if any
    format: int = FORMAT_VERSION


class IndexPolicy:
    """Which search a gallery of a given size gets, and how the compressed one is shaped.

    Exact search (``IndexFlatL2``) while the gallery holds at most ``exact_up_to`` faces.
    Beyond, candidates come from a scan of 4-bit product-quantised codes
    (``IndexPQFastScan``, ``subquantizers`` codes of 2 dimensions each: 32 bytes a face, kept
    in registers and scanned with SIMD), and the best ``candidates_per_result`` x k of them
    are ranked by exact distance from the stored float32 vectors. It is still a scan of every
    face, so unlike a graph or inverted lists it cannot miss an isolated near match (another
    photo of an enrolled person, far from everyone else); only the first cut is approximate.
    The numbers behind the defaults are in the README ("Numbers") and
    ``benchmarks/bench_search.py``.
    """

    def __init__(
        self,
        exact_up_to: int = EXACT_UP_TO,
        subquantizers: int = PQ_SUBQUANTIZERS,
        candidates_per_result: int = CANDIDATES_PER_RESULT,
        min_candidates: int = MIN_CANDIDATES,
        training_sample: int = PQ_TRAINING_SAMPLE,
    ) -> None:
        self.exact_up_to = exact_up_to
        self.subquantizers = subquantizers
        self.candidates_per_result = candidates_per_result
        self.min_candidates = min_candidates
        self.training_sample = training_sample

    def kind_for(self, count: int, current: str) -> str:
        """``exact`` or ``pq``; a compressed index returns to exact only below half the
        threshold, so a gallery hovering at the threshold is not retrained on every write."""
        if current == "pq":
            return "exact" if count < self.exact_up_to // 2 else "pq"
        return "pq" if count > self.exact_up_to else "exact"

    def candidates(self, k: int) -> int:
        return max(self.min_candidates, self.candidates_per_result * k)


DEFAULT_POLICY = IndexPolicy()


class FaceIndex:
    """Nearest-neighbour search over one model's embeddings, keyed by face id.

    Always holds the exact vectors (``IndexIDMap2`` over ``IndexFlatL2``): they answer
    ``vector`` and every reported distance. Beyond ``policy.exact_up_to`` faces it also
    holds their PQ codes (``IndexPQFastScan``), row for row in the same order, to pick
    candidates quickly; ``add`` and ``remove_ids`` keep the two aligned (both append, both
    compact in order on removal, so a removed face leaves neither vector nor code) and switch
    between exact and compressed search when the size calls for it.
    """

    def __init__(
        self,
        model: str,
        dimension: int,
        faiss_index: faiss.IndexIDMap2 | None = None,
        coarse: faiss.IndexPQFastScan | None = None,
        *,
        policy: IndexPolicy = DEFAULT_POLICY,
    ) -> None:
        """An index of ``model`` embeddings; empty unless ``faiss_index`` is given.

        Args:
            model: the id of the embedding model whose vectors this index holds.
            dimension: the embeddings' length.
            faiss_index: an existing ``IndexIDMap2`` over ``IndexFlatL2`` holding the vectors.
            coarse: the PQ codes of those vectors, row for row, if the index is compressed.
            policy: when to switch between exact and compressed search, and its shape.
        """
        faiss = _faiss()
        if faiss_index is None:
            faiss_index = _exact_index(dimension)
        inner = faiss.downcast_index(faiss_index.index) if isinstance(faiss_index, faiss.IndexIDMap2) else None
        if faiss_index.d != dimension or not isinstance(inner, faiss.IndexFlatL2):
            raise ValueError(f"expected a {dimension}-d IndexIDMap2 over IndexFlatL2, got {type(faiss_index).__name__}")
        if coarse is not None and (coarse.d != dimension or coarse.ntotal != faiss_index.ntotal):
            raise ValueError("the PQ codes do not match the vectors row for row")
        self.model = model
        self.dimension = dimension
        self.policy = policy
        self._index = faiss_index
        self._coarse = coarse

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
        """``exact`` (flat scan) or ``pq`` (compressed scan for candidates, exact distances)."""
        return "exact" if self._coarse is None else "pq"

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def _id_map(self) -> np.ndarray:
        """Face id per stored row, a live view into the index."""
        id_map = self._index.id_map
        return _faiss().rev_swig_ptr(id_map.data(), id_map.size()) if id_map.size() else np.empty(0, np.int64)

    def ids(self) -> np.ndarray:
        """The face ids held, sorted (int64)."""
        return np.sort(self._id_map()).astype(np.int64)

    def copy(self) -> FaceIndex:
        """An independent copy, to mutate while this one keeps serving searches."""
        faiss = _faiss()
        coarse = faiss.clone_index(self._coarse) if self._coarse is not None else None
        return FaceIndex(self.model, self.dimension, faiss.clone_index(self._index), coarse, policy=self.policy)

    def updated(self, gone: np.ndarray, ids: np.ndarray, embeddings: np.ndarray) -> FaceIndex:
        """A new index holding this one's faces but ``gone``, plus ``embeddings`` under ``ids``.

        This one is left untouched (copy-on-write). Equivalent to ``copy()``, ``remove_ids``,
        ``add``, but the vectors are written once into storage of the final size: appending to
        a copy would grow it by doubling, briefly holding three copies of a million faces.
        """
        faiss = _faiss()
        gone = np.ascontiguousarray(gone, dtype=np.int64).reshape(-1)
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vectors = self._as_vectors(embeddings)
        held = self._id_map()
        keep = ~np.isin(held, gone)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} embeddings")
        if len(np.unique(ids)) != len(ids) or np.isin(ids, held[keep]).any():
            raise ValueError("face ids must be unique and not already in the index")
        kept = int(keep.sum())
        count = kept + len(ids)
        flat = faiss.IndexFlatL2(self.dimension)
        index = faiss.IndexIDMap2(flat)  # (it must wrap an empty index)
        flat.codes.resize(count * self.dimension * 4)
        if count:
            stored = faiss.rev_swig_ptr(flat.codes.data(), flat.codes.size()).view(np.float32)
            stored = stored.reshape(count, self.dimension)
            if kept == len(held):
                stored[:kept] = self._stored_vectors()
            else:  # mode="clip": numpy would otherwise buffer the whole output before writing it
                np.take(self._stored_vectors(), np.flatnonzero(keep), axis=0, out=stored[:kept], mode="clip")
            stored[kept:] = vectors
            index.id_map.resize(count)
            id_map = faiss.rev_swig_ptr(index.id_map.data(), count)
            id_map[:kept] = held[keep]
            id_map[kept:] = ids
        flat.ntotal = index.ntotal = count
        index.construct_rev_map()
        coarse = None
        if self._coarse is not None:
            coarse = faiss.clone_index(self._coarse)  # 32 bytes a face: growing it is cheap
            if kept < len(held):
                coarse.remove_ids(np.flatnonzero(~keep).astype(np.int64))
            if len(ids):
                coarse.add(vectors)
        result = FaceIndex(self.model, self.dimension, index, coarse, policy=self.policy)
        result._rekind()
        return result

    def add(self, ids: np.ndarray, embeddings: np.ndarray) -> None:
        """Add ``embeddings`` (n, dimension) under ``ids`` (n,), which must be new.

        Crossing the threshold trains the PQ codes on a sample of every vector held and
        encodes them all (seconds, once).
        """
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vectors = self._as_vectors(embeddings)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} embeddings")
        if len(np.unique(ids)) != len(ids) or np.isin(ids, self.ids()).any():
            raise ValueError("face ids must be unique and not already in the index")
        if not len(ids):
            return
        self._index.add_with_ids(vectors, ids)
        if self._coarse is not None:
            self._coarse.add(vectors)
        self._rekind()

    def remove_ids(self, ids: np.ndarray) -> int:
        """Remove the faces with these ids, vectors and codes; returns how many were present."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return 0
        rows = np.flatnonzero(np.isin(self._id_map(), ids)).astype(np.int64)
        removed = int(self._index.remove_ids(ids))
        if self._coarse is not None and len(rows):
            self._coarse.remove_ids(rows)  # both compact in order: rows stay aligned
        self._rekind()
        return removed

    def _rekind(self) -> None:
        """Add or drop the PQ codes when the size crosses the policy's threshold."""
        wanted = self.policy.kind_for(len(self), self.kind)
        if wanted == self.kind:
            return
        if wanted == "exact":
            self._coarse = None
            return
        faiss = _faiss()
        vectors = self._stored_vectors()
        coarse = faiss.IndexPQFastScan(self.dimension, self.policy.subquantizers, 4)
        coarse.pq.cp.niter = PQ_KMEANS_ITERATIONS
        sample = vectors
        if len(vectors) > self.policy.training_sample:
            # Spread over the ids in order, so the same faces always train the same codes.
            order = np.argsort(self._id_map(), kind="stable")
            sample = vectors[order[np.linspace(0, len(order) - 1, self.policy.training_sample).astype(np.int64)]]
        coarse.train(np.ascontiguousarray(sample))
        coarse.add(vectors)
        self._coarse = coarse

    def vector(self, face_id: int) -> np.ndarray:
        """The stored embedding of one face (float32)."""
        return self._index.reconstruct(int(face_id))

    def search(self, queries: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The ``k`` nearest faces of each query, nearest first.

        On a compressed index the candidates are the best by PQ code (recall measured in
        the README); their distances are exact all the same.

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
        searched = self._index if self._coarse is None else self._coarse
        wanted = k if self._coarse is None else min(len(self), self.policy.candidates(k))
        previous_threads = faiss.omp_get_max_threads()
        if len(vectors) < FEW_QUERIES:
            # The setting is per OS thread (an OpenMP ICV), so concurrent callers are unaffected.
            faiss.omp_set_num_threads(1)
        try:
            _, found = searched.search(vectors, wanted)
        finally:
            faiss.omp_set_num_threads(previous_threads)
        id_map, stored = self._id_map(), self._stored_vectors()
        results = []
        for query, row in zip(vectors, found, strict=True):
            row = row[row >= 0]
            if self._coarse is None:  # the exact index answers face ids
                ids = row.astype(np.int64)
                candidates = np.stack([self.vector(i) for i in ids]) if len(ids) else stored[:0]
            else:  # the codes answer rows, which the vectors share
                ids = id_map[row].astype(np.int64)
                candidates = stored[row]
            distances = np.sqrt(((candidates.astype(np.float64) - query.astype(np.float64)) ** 2).sum(axis=1))
            order = np.lexsort((ids, distances))[:k]
            results.append((distances[order], ids[order]))
        return results

    def _stored_vectors(self) -> np.ndarray:
        """Every stored row's vector, a live (rows, dimension) view into the exact index."""
        faiss = _faiss()
        flat = faiss.downcast_index(self._index.index)
        if not flat.codes.size():
            return np.empty((0, self.dimension), np.float32)
        return faiss.rev_swig_ptr(flat.codes.data(), flat.codes.size()).view(np.float32).reshape(-1, self.dimension)

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

            writer = faiss.PyCallbackIOWriter(write_chunk, _IO_CHUNK)
            faiss.write_index(self._index, writer)
            vectors_length = length
            if self._coarse is not None:
                faiss.write_index(self._coarse, writer)
            del writer  # flushes its buffer
            header = IndexFileHeader(
                model=self.model,
                dimension=self.dimension,
                count=len(self),
                ids_sha256=ids_sha256,
                gallery_id=gallery_id,
                generation=generation,
                payload_sha256=digest.hexdigest(),
                payload_length=length,
                codes_length=length - vectors_length,
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
                coarse = None
                if header.codes_length:
                    file.seek(start + header.payload_length - header.codes_length)
                    coarse = faiss.read_index(faiss.PyCallbackIOReader(file.read, _IO_CHUNK))
                index = cls(header.model, header.dimension, faiss_index, coarse, policy=policy)
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
