"""The in-memory FAISS index of face embeddings, keyed by ``faces.id``, and the policy that shapes it.

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

Files: ``save`` and ``load`` go through ``gallery.store.index_file``, which owns the on-disk
format (a main file ``faces.faiss`` and one file per older slice, checksummed, replaced
atomically).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gallery.errors import IndexFileInvalid
from gallery.store.index_file import IndexFileHeader, Segment, ids_digest, read_index_files, write_index_files
from gallery.store.index_file import faiss_module as _faiss

if TYPE_CHECKING:
    import faiss

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


def set_faiss_threads(count: int) -> None:
    """OpenMP threads for FAISS's bulk work (training, many-query searches) on the calling thread.

    OpenMP keeps this per OS thread; threads started later use the runtime's default
    (``OMP_NUM_THREADS``, else one per core). Searches of a few queries always use one thread.
    """
    _faiss().omp_set_num_threads(count)


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
        self._segments: tuple[Segment, ...] = ()
        self._coarse: faiss.IndexPQFastScan | None = None
        self._ends = np.empty(0, np.int64)  # exclusive end row of each slice
        self._sorted_ids: np.ndarray | None = None  # caches, filled on first use
        self._rows_by_id: tuple[np.ndarray, np.ndarray] | None = None

    def _with(self, segments: Iterable[Segment], coarse: faiss.IndexPQFastScan | None) -> FaceIndex:
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

    def _without(self, gone: np.ndarray) -> tuple[list[Segment], np.ndarray]:
        """The slices less the faces ``gone`` (copying only slices that lose some), and the rows removed."""
        if not len(gone) or not self._holds(gone).any():
            return list(self._segments), np.empty(0, np.int64)
        segments, removed = [], []
        for segment, start in zip(self._segments, self._ends - [len(s) for s in self._segments], strict=True):
            losing = np.isin(segment.ids, gone)
            if losing.any():
                removed.append(start + np.flatnonzero(losing))
                segment = Segment(segment.ids[~losing], segment.vectors[~losing])  # fresh copies
            segments.append(segment)
        return segments, np.concatenate(removed).astype(np.int64)

    def _merged(self, segments: list[Segment]) -> list[Segment]:
        """Neighbouring slices joined where they fit in one, so removals do not leave many small ones."""
        merged: list[Segment] = []
        for segment in segments:
            if not len(segment):
                continue
            if merged and len(merged[-1]) + len(segment) <= self.policy.segment_rows:
                merged[-1] = Segment.joined([merged[-1], segment])
            else:
                merged.append(segment)
        return merged

    def _appended(self, segments: list[Segment], ids: np.ndarray, vectors: np.ndarray) -> list[Segment]:
        """The slices with new faces at the end: the last slice filled up, then new ones."""
        if not len(ids):
            return segments
        size = self.policy.segment_rows
        start = 0
        if segments and len(segments[-1]) < size:
            start = size - len(segments[-1])
            segments[-1] = Segment.joined([segments[-1], Segment.of(ids[:start], vectors[:start])])
        for offset in range(start, len(ids), size):
            segments.append(Segment.of(ids[offset : offset + size], vectors[offset : offset + size]))
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
                self._adopt(self._with([Segment.joined(self._segments)], None))
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

        Slices the main file on disk already names are not written again (see
        ``gallery.store.index_file``). Call only while holding the lock that serialises the
        index's writers.

        Args:
            path: the index's main file.
            gallery_id: the database's ``store_state.gallery_id``, binding the file to it.
            generation: the faces generation this index reflects.
        """
        write_index_files(
            path,
            self._segments,
            self._coarse,
            model=self.model,
            dimension=self.dimension,
            ids_sha256=ids_digest(self.ids()),
            gallery_id=gallery_id,
            generation=generation,
        )

    @classmethod
    def load(cls, path: Path, *, policy: IndexPolicy = DEFAULT_POLICY) -> tuple[FaceIndex, IndexFileHeader]:
        """Read and check an index (main file and slice files).

        A save that replaces the main file while this reads makes it start over, so a load
        never takes a concurrent save for damage (``index_file.read_index_files``).

        Raises:
            FileNotFoundError: there is no main file.
            IndexFileInvalid: a file is truncated, damaged or missing, or not an index file.
        """
        header, segments, coarse = read_index_files(path)
        index = cls(header.model, header.dimension, policy=policy)
        try:
            index = index._with(segments, coarse)
        except ValueError as error:
            raise IndexFileInvalid(f"{path}: {error}") from error
        if len(index) != header.count or ids_digest(index.ids()) != header.ids_sha256:
            raise IndexFileInvalid(f"{path}: the index's ids disagree with its header")
        if coarse is None and len(index._segments) > 1:
            raise IndexFileInvalid(f"{path}: an exact index in several slices")
        return index, header
