"""The FAISS index of face embeddings, keyed by ``faces.id``, and its on-disk files.

The index is chosen by size (``IndexPolicy``): exact search (FAISS's flat L2 scan) up to
``EXACT_UP_TO`` faces, where a search takes a fraction of a millisecond; beyond, the same
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

Segments: the faces (ids and float32 vectors) are held in slices of at most
``segment_rows`` faces that are never changed once made. A write makes a new index that
shares every slice it does not touch: adding a face copies the last slice only, removing
one copies its slice without it; the PQ codes (32 bytes a face) are copied whole. So a write
at a million faces costs tens of megabytes, not a second copy of the 0.5 GB of vectors, and
the index a search is using is never modified (copy-on-write: searches never wait for a
write and never see a half-made index).

Thread safety: searching one ``FaceIndex`` from many threads at once is safe; ``add`` and
``remove_ids`` change it in place and must not run while anyone searches it. The store
only ever calls ``updated``, which leaves the index it is called on untouched.

Files: ``faces.faiss`` (the main file) holds the last slice and the PQ codes, and names
the other slices, each in its own file ``faces.faiss.<digest>.seg`` (its ids, then its
vectors, little-endian) with its SHA-256; so a save writes the main file and only the slices
that are new, and a small gallery is the main file alone. The main file is ``MAGIC``, a
little-endian u32 header length, a UTF-8 JSON header (format, model, dimension, count,
SHA-256 of the sorted ids, the gallery id and faces generation it was saved at, the slices
in their files, SHA-256 and length of the payload), then the payload: the last slice's ids
and vectors, then FAISS's serialization of the PQ codes' index if any (``codes_length``
bytes). Every file is replaced atomically, slices before the main file that names them,
and slices no longer named are deleted after it (so a removed face's vector leaves every
file). Checksums are verified before FAISS parses a byte, so a damaged file is rejected
instead of crashing the process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from gallery.atomicfile import remove_stale_temporaries, write_atomically
from gallery.errors import IndexFileInvalid

if TYPE_CHECKING:
    import faiss

MAGIC = b"GALLERY-FAISS\n"
FORMAT_VERSION = 3
_HEADER_LENGTH = struct.Struct("<I")
_MAX_HEADER_BYTES = 1 << 20
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
# Faces per slice of a large index: 16 MB of 128-d vectors, what a write copies and saves at
# most besides the PQ codes; 31 slice files at a million faces.
SEGMENT_ROWS = 32_768
_SEGMENT_SUFFIX = ".seg"
_LOAD_ATTEMPTS = 5  # a save that replaces the main file mid-load makes a load start over
_IO_CHUNK = 1 << 22


def _faiss() -> Any:
    """The faiss module, imported on first use (it takes a noticeable fraction of a second)."""
    import faiss

    return faiss


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
    """What an index's main file says about itself."""

    model: str
    dimension: int
    count: int
    ids_sha256: str
    gallery_id: str
    generation: int
    payload_sha256: str
    payload_length: int
    inline_rows: int = 0  # faces of the last slice, at the start of the payload
    codes_length: int = 0  # the payload's last bytes: the PQ codes' index, if any
    segments: list[dict[str, Any]] = field(default_factory=list)  # the other slices: {file, rows, sha256}
    format: int = FORMAT_VERSION


class IndexPolicy:
    """Which search a gallery of a given size gets, and how the compressed one is shaped.

    Exact search (``IndexFlatL2``'s scan) while the gallery holds at most ``exact_up_to``
    faces. Beyond, candidates come from a scan of 4-bit product-quantised codes
    (``IndexPQFastScan``, ``subquantizers`` codes of 2 dimensions each: 32 bytes a face, kept
    in registers and scanned with SIMD), and the best ``candidates_per_result`` x k of them
    are ranked by exact distance from the stored float32 vectors. It is still a scan of every
    face, so unlike a graph or inverted lists it cannot miss an isolated near match (another
    photo of an enrolled person, far from everyone else); only the first cut is approximate.
    The faces of a compressed index are kept in slices of ``segment_rows`` (see the module's
    docstring). The numbers behind the defaults are in the README ("Numbers") and
    ``benchmarks/bench_search.py``.
    """

    def __init__(
        self,
        exact_up_to: int = EXACT_UP_TO,
        subquantizers: int = PQ_SUBQUANTIZERS,
        candidates_per_result: int = CANDIDATES_PER_RESULT,
        min_candidates: int = MIN_CANDIDATES,
        training_sample: int = PQ_TRAINING_SAMPLE,
        segment_rows: int = SEGMENT_ROWS,
    ) -> None:
        self.exact_up_to = exact_up_to
        self.subquantizers = subquantizers
        self.candidates_per_result = candidates_per_result
        self.min_candidates = min_candidates
        self.training_sample = training_sample
        self.segment_rows = segment_rows

    def kind_for(self, count: int, current: str) -> str:
        """``exact`` or ``pq``; a compressed index returns to exact only below half the
        threshold, so a gallery hovering at the threshold is not retrained on every write."""
        if current == "pq":
            return "exact" if count < self.exact_up_to // 2 else "pq"
        return "pq" if count > self.exact_up_to else "exact"

    def candidates(self, k: int) -> int:
        return max(self.min_candidates, self.candidates_per_result * k)


DEFAULT_POLICY = IndexPolicy()


class _Segment:
    """A slice of faces: ids and their vectors, row for row, never changed once made."""

    __slots__ = ("_digest", "ids", "vectors")

    def __init__(self, ids: np.ndarray, vectors: np.ndarray, digest: str | None = None) -> None:
        ids.flags.writeable = False
        vectors.flags.writeable = False
        self.ids = ids
        self.vectors = vectors
        self._digest = digest

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def of(cls, ids: np.ndarray, vectors: np.ndarray) -> _Segment:
        """A slice holding copies of ``ids`` (int64) and ``vectors`` (float32 rows)."""
        return cls(np.array(ids, dtype="<i8"), np.array(vectors, dtype="<f4"))

    @classmethod
    def joined(cls, parts: Sequence[_Segment]) -> _Segment:
        if len(parts) == 1:
            return parts[0]
        return cls(np.concatenate([p.ids for p in parts]), np.concatenate([p.vectors for p in parts]))

    def chunks(self) -> tuple[memoryview, memoryview]:
        """The slice's bytes as a file holds them: ids, then vectors."""
        return _bytes_of(self.ids), _bytes_of(self.vectors)

    def digest(self) -> str:
        """SHA-256 of the slice's bytes (computed once; it names the slice's file)."""
        if self._digest is None:
            digest = hashlib.sha256()
            for chunk in self.chunks():
                digest.update(chunk)
            self._digest = digest.hexdigest()  # a race computes the same value twice: harmless
        return self._digest

    def file_name(self, main: Path) -> str:
        return f"{main.name}.{self.digest()[:16]}{_SEGMENT_SUFFIX}"


class FaceIndex:
    """Nearest-neighbour search over one model's embeddings, keyed by face id.

    Always holds the exact vectors: they answer ``vector`` and every reported distance.
    Beyond ``policy.exact_up_to`` faces it also holds their PQ codes (``IndexPQFastScan``),
    row for row in the order of its slices, to pick candidates quickly; every change keeps
    the two aligned (removal compacts both in order, additions go at the end of both), so a
    removed face leaves neither vector nor code, and switches between exact and compressed
    search when the size calls for it.
    """

    def __init__(self, model: str, dimension: int, *, policy: IndexPolicy = DEFAULT_POLICY) -> None:
        """An empty index of ``model`` embeddings.

        Args:
            model: the id of the embedding model whose vectors this index holds.
            dimension: the embeddings' length.
            policy: when to switch between exact and compressed search, and its shape.
        """
        self.model = model
        self.dimension = dimension
        self.policy = policy
        self._segments: tuple[_Segment, ...] = ()
        self._coarse: faiss.IndexPQFastScan | None = None
        self._ends = np.empty(0, np.int64)  # exclusive end row of each slice
        self._sorted_ids: np.ndarray | None = None  # caches, filled on first use
        self._rows_by_id: tuple[np.ndarray, np.ndarray] | None = None

    def _with(self, segments: Iterable[_Segment], coarse: faiss.IndexPQFastScan | None) -> FaceIndex:
        """A new index of this one's model and policy holding ``segments`` (and their codes)."""
        index = FaceIndex(self.model, self.dimension, policy=self.policy)
        index._segments = tuple(s for s in segments if len(s))
        index._coarse = coarse
        index._ends = np.cumsum([len(s) for s in index._segments], dtype=np.int64)
        if coarse is not None and coarse.ntotal != len(index):
            raise ValueError("the PQ codes do not match the vectors row for row")
        return index

    def _adopt(self, other: FaceIndex) -> None:
        """Become ``other`` (``add`` and ``remove_ids`` change this index in place)."""
        self._segments, self._coarse, self._ends = other._segments, other._coarse, other._ends
        self._sorted_ids, self._rows_by_id = other._sorted_ids, other._rows_by_id

    @classmethod
    def build(
        cls,
        model: str,
        dimension: int,
        ids: np.ndarray,
        embeddings: np.ndarray,
        *,
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
        return int(self._ends[-1]) if len(self._ends) else 0

    def ids(self) -> np.ndarray:
        """The face ids held, sorted (int64; a read-only array)."""
        if self._sorted_ids is None:
            ordered = np.concatenate([s.ids for s in self._segments]) if self._segments else np.empty(0, np.int64)
            ordered.sort(kind="stable")  # slices are mostly ascending runs, which it merges in linear time
            ordered.flags.writeable = False
            self._sorted_ids = ordered
        return self._sorted_ids

    def copy(self) -> FaceIndex:
        """An independent copy, to change while this one keeps serving searches."""
        return self._with(self._segments, self._coarse)  # neither is ever changed in place: shared

    def updated(self, gone: np.ndarray, ids: np.ndarray, embeddings: np.ndarray) -> FaceIndex:
        """A new index holding this one's faces but ``gone``, plus ``embeddings`` under ``ids``.

        This one is left untouched (copy-on-write), and shares every slice the change does
        not touch with the new one: only the slices losing faces, the last one (gaining
        them) and the PQ codes are copied.
        """
        gone = np.ascontiguousarray(gone, dtype=np.int64).reshape(-1)
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vectors = self._as_vectors(embeddings)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} embeddings")
        if len(np.unique(ids)) != len(ids) or np.isin(ids[self._holds(ids)], gone, invert=True).any():
            raise ValueError("face ids must be unique and not already in the index")
        segments, removed_rows = self._without(gone)
        segments = self._appended(self._merged(segments), ids, vectors)
        coarse = None
        if self._coarse is not None and (len(removed_rows) or len(ids)):
            coarse = _faiss().clone_index(self._coarse)  # 32 bytes a face: copying it is cheap
            if len(removed_rows):
                coarse.remove_ids(removed_rows)  # compacts in order, as the slices did
            if len(ids):
                coarse.add(vectors)
        elif self._coarse is not None:
            coarse = self._coarse  # unchanged, and no index changes its codes in place: shared
        result = self._with(segments, coarse)
        result._rekind()
        return result

    def _holds(self, ids: np.ndarray) -> np.ndarray:
        """Which of ``ids`` this index holds (a mask)."""
        held = self.ids()
        positions = np.minimum(np.searchsorted(held, ids), max(len(held) - 1, 0))
        return held[positions] == ids if len(held) else np.zeros(len(ids), bool)

    def _without(self, gone: np.ndarray) -> tuple[list[_Segment], np.ndarray]:
        """The slices less the faces ``gone`` (copying only slices that lose some), and the rows removed."""
        if not len(gone) or not self._holds(gone).any():
            return list(self._segments), np.empty(0, np.int64)
        segments, removed = [], []
        for segment, start in zip(self._segments, self._ends - [len(s) for s in self._segments], strict=True):
            losing = np.isin(segment.ids, gone)
            if losing.any():
                removed.append(start + np.flatnonzero(losing))
                segment = _Segment(segment.ids[~losing], segment.vectors[~losing])  # fresh copies
            segments.append(segment)
        return segments, np.concatenate(removed).astype(np.int64)

    def _merged(self, segments: list[_Segment]) -> list[_Segment]:
        """Neighbouring slices joined where they fit in one, so removals do not leave many small ones."""
        merged: list[_Segment] = []
        for segment in segments:
            if not len(segment):
                continue
            if merged and len(merged[-1]) + len(segment) <= self.policy.segment_rows:
                merged[-1] = _Segment.joined([merged[-1], segment])
            else:
                merged.append(segment)
        return merged

    def _appended(self, segments: list[_Segment], ids: np.ndarray, vectors: np.ndarray) -> list[_Segment]:
        """The slices with new faces at the end: the last slice filled up, then new ones."""
        if not len(ids):
            return segments
        size = self.policy.segment_rows
        start = 0
        if segments and len(segments[-1]) < size:
            start = size - len(segments[-1])
            segments[-1] = _Segment.joined([segments[-1], _Segment.of(ids[:start], vectors[:start])])
        for offset in range(start, len(ids), size):
            segments.append(_Segment.of(ids[offset : offset + size], vectors[offset : offset + size]))
        return segments

    def add(self, ids: np.ndarray, embeddings: np.ndarray) -> None:
        """Add ``embeddings`` (n, dimension) under ``ids`` (n,), which must be new.

        Crossing the threshold trains the PQ codes on a sample of every vector held and
        encodes them all (seconds, once).
        """
        self._adopt(self.updated(np.empty(0, np.int64), ids, embeddings))

    def remove_ids(self, ids: np.ndarray) -> int:
        """Remove the faces with these ids, vectors and codes; returns how many were present."""
        ids = np.unique(np.ascontiguousarray(ids, dtype=np.int64).reshape(-1))
        present = int(self._holds(ids).sum())
        if present:
            self._adopt(self.updated(ids, np.empty(0, np.int64), np.empty((0, self.dimension), np.float32)))
        return present

    def _rekind(self) -> None:
        """Add or drop the PQ codes when the size crosses the policy's threshold.

        An exact index keeps its faces in one slice, which FAISS scans directly.
        """
        wanted = self.policy.kind_for(len(self), self.kind)
        if wanted == "exact":
            self._coarse = None
            if len(self._segments) > 1:
                self._adopt(self._with([_Segment.joined(self._segments)], None))
            return
        if self._coarse is not None:
            return
        faiss = _faiss()
        coarse = faiss.IndexPQFastScan(self.dimension, self.policy.subquantizers, 4)
        coarse.pq.cp.niter = PQ_KMEANS_ITERATIONS
        held = np.concatenate([s.ids for s in self._segments])
        rows = np.arange(len(held))
        if len(held) > self.policy.training_sample:
            # Spread over the ids in order, so the same faces always train the same codes.
            order = np.argsort(held, kind="stable")
            rows = order[np.linspace(0, len(order) - 1, self.policy.training_sample).astype(np.int64)]
        coarse.train(np.ascontiguousarray(self._rows(rows)[1]))
        for segment in self._segments:
            coarse.add(segment.vectors)
        self._coarse = coarse

    def _rows(self, rows: np.ndarray, *, in_order: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Ids and vectors of rows (positions in slice order): in the order given, else by row."""
        order = np.argsort(rows, kind="stable")
        by_row = rows[order]
        ids = np.empty(len(rows), np.int64)
        vectors = np.empty((len(rows), self.dimension), np.float32)
        start = 0
        # One gather per slice holding any of the rows (sorted rows fall into slices in turn).
        for segment, end_row, end in zip(self._segments, self._ends, np.searchsorted(by_row, self._ends), strict=True):
            if end > start:
                local = by_row[start:end] - (end_row - len(segment))
                np.take(segment.ids, local, out=ids[start:end])
                np.take(segment.vectors, local, axis=0, out=vectors[start:end])
                start = end
        if not in_order:
            return ids, vectors
        restored = np.empty_like(order)
        restored[order] = np.arange(len(order))
        return ids[restored], vectors[restored]

    def vector(self, face_id: int) -> np.ndarray:
        """The stored embedding of one face (float32).

        Raises:
            KeyError: the index does not hold ``face_id``.
        """
        if self._rows_by_id is None:
            held = np.concatenate([s.ids for s in self._segments]) if self._segments else np.empty(0, np.int64)
            order = np.argsort(held, kind="stable")
            self._rows_by_id = (held[order], order)
        ordered, rows = self._rows_by_id
        position = int(np.searchsorted(ordered, face_id))
        if position == len(ordered) or ordered[position] != face_id:
            raise KeyError(face_id)
        return self._rows(rows[position : position + 1])[1][0].copy()

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
        previous_threads = faiss.omp_get_max_threads()
        if len(vectors) < FEW_QUERIES:
            # The setting is per OS thread (an OpenMP ICV), so concurrent callers are unaffected.
            faiss.omp_set_num_threads(1)
        try:
            if self._coarse is None:  # one slice: FAISS's exact scan of its vectors
                _, found = faiss.knn(vectors, self._segments[0].vectors, k)
            else:
                _, found = self._coarse.search(vectors, min(len(self), self.policy.candidates(k)))
        finally:
            faiss.omp_set_num_threads(previous_threads)
        results = []
        for query, row in zip(vectors, found, strict=True):
            ids, candidates = self._rows(row[row >= 0].astype(np.int64), in_order=False)  # sorted below
            distances = np.sqrt(((candidates.astype(np.float64) - query.astype(np.float64)) ** 2).sum(axis=1))
            order = np.lexsort((ids, distances))[:k]
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
        """Write the index to ``path`` (its main file) and its slice files, each atomically.

        Slices the main file on disk already names are not written again; slice files the new
        main file does not name are deleted once it is in place. Call only while holding the
        lock that serialises the index's writers.

        Args:
            path: the index's main file.
            gallery_id: the database's ``store_state.gallery_id``, binding the file to it.
            generation: the faces generation this index reflects.
        """
        remove_stale_temporaries(path)
        named_on_disk = _segment_files_named_by(path)
        entries = []
        for segment in self._segments[:-1]:
            name = segment.file_name(path)
            if name not in named_on_disk or not (path.parent / name).is_file():
                # Written afresh even if a stray copy exists: see _remove_stray_segments on why
                # every file a main file names must be either named before or newer than it.
                write_atomically(path.parent / name, list(segment.chunks()))
            entries.append({"file": name, "rows": len(segment), "sha256": segment.digest()})
        inline = list(self._segments[-1].chunks()) if self._segments else []
        codes = [memoryview(_faiss().serialize_index(self._coarse))] if self._coarse is not None else []
        digest = hashlib.sha256()
        for chunk in inline + codes:
            digest.update(chunk)
        header = IndexFileHeader(
            model=self.model,
            dimension=self.dimension,
            count=len(self),
            ids_sha256=ids_digest(self.ids()),
            gallery_id=gallery_id,
            generation=generation,
            payload_sha256=digest.hexdigest(),
            payload_length=sum(len(c) for c in inline + codes),
            inline_rows=len(self._segments[-1]) if self._segments else 0,
            codes_length=sum(len(c) for c in codes),
            segments=entries,
        )
        header_bytes = json.dumps(asdict(header), sort_keys=True).encode()
        write_atomically(path, [MAGIC, _HEADER_LENGTH.pack(len(header_bytes)), header_bytes, *inline, *codes])
        _remove_stray_segments(path, keep={entry["file"] for entry in entries})

    @classmethod
    def load(cls, path: Path, *, policy: IndexPolicy = DEFAULT_POLICY) -> tuple[FaceIndex, IndexFileHeader]:
        """Read and check an index (main file and slice files).

        A save that replaces the main file while this reads makes it start over, so a load
        never takes a concurrent save for damage. Slice files an interrupted save left behind
        are deleted (only those older than the main file: see ``_remove_stray_segments``).

        Raises:
            FileNotFoundError: there is no main file.
            IndexFileInvalid: a file is truncated, damaged or missing, or not an index file.
        """
        for attempt in range(_LOAD_ATTEMPTS):
            with open(path, "rb") as file:
                written = os.fstat(file.fileno())
                header, inline, coarse = _read_main_file(path, file)
            try:
                segments = [_read_segment(path, entry, header.dimension) for entry in header.segments]
            except FileNotFoundError as error:
                if attempt + 1 < _LOAD_ATTEMPTS and _replaced_since(path, written):
                    continue
                raise IndexFileInvalid(f"{path}: a segment file is missing ({error.filename})") from error
            break
        _remove_stray_segments(path, keep={e["file"] for e in header.segments}, older_than=written.st_mtime_ns)
        index = cls(header.model, header.dimension, policy=policy)
        try:
            index = index._with([*segments, inline], coarse)
        except ValueError as error:
            raise IndexFileInvalid(f"{path}: {error}") from error
        if len(index) != header.count or ids_digest(index.ids()) != header.ids_sha256:
            raise IndexFileInvalid(f"{path}: the index's ids disagree with its header")
        if coarse is None and len(index._segments) > 1:
            raise IndexFileInvalid(f"{path}: an exact index in several slices")
        return index, header


def _read_main_file(path: Path, file: BinaryIO) -> tuple[IndexFileHeader, _Segment, faiss.IndexPQFastScan | None]:
    """The header, the last slice and the PQ codes' index of an open main file, checksums verified."""
    header = read_header(file.read(len(MAGIC) + _HEADER_LENGTH.size + _MAX_HEADER_BYTES))
    file.seek(len(MAGIC))
    file.seek(len(MAGIC) + _HEADER_LENGTH.size + _HEADER_LENGTH.unpack(file.read(_HEADER_LENGTH.size))[0])
    row_bytes = 8 + 4 * header.dimension
    if header.payload_length != header.inline_rows * row_bytes + header.codes_length:
        raise IndexFileInvalid(f"{path}: the payload's length disagrees with its header")
    digest = hashlib.sha256()
    ids, vectors = _read_rows(file, header.inline_rows, header.dimension, digest)
    codes = bytearray(header.codes_length)
    if file.readinto(codes) != len(codes) or file.read(1):
        raise IndexFileInvalid(f"{path}: the index data is truncated or has extra bytes")
    digest.update(codes)
    if digest.hexdigest() != header.payload_sha256:
        raise IndexFileInvalid(f"{path}: the index data does not match its checksum")
    coarse = None
    if codes:
        faiss = _faiss()
        try:
            coarse = faiss.deserialize_index(np.frombuffer(codes, np.uint8))  # of its own type already
        except RuntimeError as error:
            raise IndexFileInvalid(f"{path}: FAISS cannot read the PQ codes: {error}") from error
        if not isinstance(coarse, faiss.IndexPQFastScan) or coarse.d != header.dimension:
            raise IndexFileInvalid(f"{path}: the PQ codes are not a {header.dimension}-d IndexPQFastScan")
    return header, _Segment(ids, vectors), coarse


def _read_segment(main: Path, entry: dict[str, Any], dimension: int) -> _Segment:
    """One slice file named by the main file ``main``, checked against what it says of the slice."""
    try:
        name, rows, sha256 = str(entry["file"]), int(entry["rows"]), str(entry["sha256"])
    except (KeyError, TypeError, ValueError) as error:
        raise IndexFileInvalid(f"{main}: malformed segment entry {entry!r}") from error
    if name != f"{main.name}.{sha256[:16]}{_SEGMENT_SUFFIX}":  # also keeps it inside the gallery folder
        raise IndexFileInvalid(f"{main}: a segment file is misnamed ({name!r})")
    path = main.parent / name
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        ids, vectors = _read_rows(file, rows, dimension, digest)
        if file.read(1):
            raise IndexFileInvalid(f"{path}: the segment has extra bytes")
    if digest.hexdigest() != sha256:
        raise IndexFileInvalid(f"{path}: the segment does not match its checksum")
    return _Segment(ids, vectors, sha256)


def _read_rows(file: BinaryIO, rows: int, dimension: int, digest: Any) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` ids then their vectors, read straight into their arrays (and hashed)."""
    if rows < 0:
        raise IndexFileInvalid("a negative row count")
    ids = np.empty(rows, "<i8")
    vectors = np.empty((rows, dimension), "<f4")
    for array in (ids, vectors):
        view = _bytes_of(array)
        for start in range(0, len(view), _IO_CHUNK):
            chunk = view[start : start + _IO_CHUNK]
            if file.readinto(chunk) != len(chunk):
                raise IndexFileInvalid("the index data is truncated")
            digest.update(chunk)
    return ids, vectors


def _bytes_of(array: np.ndarray) -> memoryview:
    """A contiguous array's bytes, without a copy (also for no rows, unlike ``memoryview.cast``)."""
    return memoryview(array.reshape(-1).view(np.uint8))


def _replaced_since(path: Path, opened: os.stat_result) -> bool:
    """Whether ``path`` is no longer the file that was opened (a save replaced it)."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return True
    return (now.st_ino, now.st_mtime_ns) != (opened.st_ino, opened.st_mtime_ns)


def _segment_files_named_by(path: Path) -> set[str]:
    """The slice files the main file on disk names (none if it is missing or unreadable)."""
    try:
        with open(path, "rb") as file:
            header = read_header(file.read(len(MAGIC) + _HEADER_LENGTH.size + _MAX_HEADER_BYTES))
    except (OSError, IndexFileInvalid):
        return set()
    return {str(entry.get("file")) for entry in header.segments}


def _remove_stray_segments(path: Path, keep: set[str], older_than: int | None = None) -> None:
    """Delete the slice files beside ``path`` that are not in ``keep``.

    A save (under the writers' lock) deletes every such file: it holds the only main file.
    A load holds no lock, and another process may be saving: it deletes only files older
    than the main file it read (``older_than``, in ns). That is safe because a save names only
    files the main file before it named or that it wrote itself (after that main file, so
    newer): what it needs is never older than a main file it replaces yet unnamed by it.
    """
    for stray in path.parent.glob(f"{path.name}.*{_SEGMENT_SUFFIX}"):
        if stray.name in keep:
            continue
        with contextlib.suppress(OSError):
            if older_than is None or stray.stat().st_mtime_ns < older_than:
                stray.unlink()


def read_header(data: bytes) -> IndexFileHeader:
    """Parse an index main file's header from its leading bytes.

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
    if not isinstance(header.segments, list) or not all(isinstance(e, dict) for e in header.segments):
        raise IndexFileInvalid("index file header lists its segments wrongly")
    return header
