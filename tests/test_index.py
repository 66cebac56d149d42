"""The FAISS face index: exact Euclidean search keyed by face id, and its checked, atomic file."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from gallery.store import IndexFileInvalid
from gallery.store.index import FaceIndex, IndexPolicy
from gallery.store.index_file import MAGIC

DIMENSION = 128


def random_embeddings(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=0.1, size=(count, DIMENSION)).astype(np.float32)


@pytest.fixture
def index() -> FaceIndex:
    return FaceIndex.build("m", DIMENSION, np.arange(100, 150), random_embeddings(50))


def test_search_returns_euclidean_distances_nearest_first_keyed_by_face_id(index: FaceIndex) -> None:
    vectors = random_embeddings(50)
    query = vectors[7] + 0.01
    ((distances, ids),) = index.search(query, 5)
    expected = np.linalg.norm(vectors.astype(np.float64) - query.astype(np.float32).astype(np.float64), axis=1)
    order = np.argsort(expected)[:5]
    assert ids.tolist() == (order + 100).tolist()
    np.testing.assert_allclose(distances, expected[order], rtol=0, atol=1e-12)
    assert ids[0] == 107


def test_asking_for_more_neighbours_than_faces_returns_only_real_faces(index: FaceIndex) -> None:
    ((distances, ids),) = index.search(random_embeddings(1, seed=5), 500)
    assert len(ids) == 50 and (ids >= 100).all()
    assert np.all(np.diff(distances) >= 0)


def test_an_empty_index_finds_nothing() -> None:
    results = FaceIndex("m", DIMENSION).search(random_embeddings(3), 5)
    assert [len(ids) for _, ids in results] == [0, 0, 0]


def test_distances_do_not_depend_on_how_queries_are_batched(index: FaceIndex) -> None:
    queries = random_embeddings(40, seed=9)
    batched = index.search(queries, 10)
    for query, (distances, ids) in zip(queries, batched, strict=True):
        ((alone_distances, alone_ids),) = index.search(query, 10)
        assert alone_ids.tolist() == ids.tolist()
        assert alone_distances.tolist() == distances.tolist()


def test_remove_ids_removes_exactly_those_faces(index: FaceIndex) -> None:
    assert index.remove_ids(np.array([107, 108, 9999])) == 2
    assert len(index) == 48
    assert 107 not in index.ids() and 108 not in index.ids()
    ((_, ids),) = index.search(random_embeddings(50)[7], 1)
    assert ids[0] != 107


def test_adding_an_id_already_present_is_refused(index: FaceIndex) -> None:
    with pytest.raises(ValueError, match="unique"):
        index.add(np.array([120]), random_embeddings(1))
    with pytest.raises(ValueError, match="unique"):
        index.add(np.array([500, 500]), random_embeddings(2))
    assert len(index) == 50


def test_malformed_embeddings_are_refused(index: FaceIndex) -> None:
    with pytest.raises(ValueError, match="shape"):
        index.add(np.array([500]), np.zeros((1, 64), np.float32))
    bad = random_embeddings(1)
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        index.add(np.array([500]), bad)


def test_a_copy_is_independent_of_the_original(index: FaceIndex) -> None:
    copy = index.copy()
    copy.remove_ids(np.arange(100, 120))
    copy.add(np.array([900]), random_embeddings(1, seed=3))
    assert len(index) == 50 and 900 not in index.ids()
    assert len(copy) == 31


def test_save_then_load_gives_the_same_index_and_header(index: FaceIndex, tmp_path: Path) -> None:
    path = tmp_path / "faces.faiss"
    index.save(path, gallery_id="abc", generation=12)
    loaded, header = FaceIndex.load(path)
    assert (header.model, header.dimension, header.count, header.gallery_id, header.generation) == (
        "m",
        DIMENSION,
        50,
        "abc",
        12,
    )
    assert loaded.ids().tolist() == index.ids().tolist()
    query = random_embeddings(3, seed=4)
    for (d1, i1), (d2, i2) in zip(index.search(query, 5), loaded.search(query, 5), strict=True):
        assert i1.tolist() == i2.tolist() and d1.tolist() == d2.tolist()
    assert [p.name for p in tmp_path.iterdir()] == ["faces.faiss"]  # no temporary left behind


def test_saving_cleans_up_temporaries_of_a_crashed_save(index: FaceIndex, tmp_path: Path) -> None:
    leftover = tmp_path / ".faces.faiss.abc123.tmp"
    leftover.write_bytes(b"half written")
    index.save(tmp_path / "faces.faiss", gallery_id="g", generation=1)
    assert not leftover.exists()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: b"\x00garbage" * 1000, id="garbage"),
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: data[:-1] + bytes([data[-1] ^ 0xFF]), id="payload-bit-flip"),
        pytest.param(lambda data: data[: len(MAGIC) + 4] + b"{not json" + data[len(MAGIC) + 13 :], id="bad-header"),
        pytest.param(lambda data: MAGIC + b"\xff\xff\xff\x7f" + data[len(MAGIC) + 4 :], id="huge-header-length"),
    ],
)
def test_a_damaged_file_is_rejected_before_faiss_parses_it(index: FaceIndex, tmp_path: Path, damage) -> None:
    path = tmp_path / "faces.faiss"
    index.save(path, gallery_id="g", generation=1)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(IndexFileInvalid):
        FaceIndex.load(path)


def test_loading_a_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        FaceIndex.load(tmp_path / "faces.faiss")


# ---- the compressed (PQ codes + exact re-ranking) index a large gallery switches to ----------

SMALL_THRESHOLD = IndexPolicy(exact_up_to=400, training_sample=600)


def clustered_embeddings(count: int, seed: int = 0) -> np.ndarray:
    """Faces around a shared mean, like dlib's descriptors (different people ~0.9 apart)."""
    rng = np.random.default_rng(seed)
    mean = np.random.default_rng(123).normal(scale=0.12, size=DIMENSION)
    return (mean + rng.normal(scale=0.06, size=(count, DIMENSION))).astype(np.float32)


def test_a_gallery_past_the_threshold_gets_pq_codes_and_finds_what_exact_search_finds() -> None:
    vectors = clustered_embeddings(1000)
    compressed = FaceIndex.build("m", DIMENSION, np.arange(1000), vectors, policy=SMALL_THRESHOLD)
    exact = FaceIndex.build("m", DIMENSION, np.arange(1000), vectors)
    assert (compressed.kind, exact.kind) == ("pq", "exact")
    probes = clustered_embeddings(30, seed=7)
    for (d_pq, i_pq), (d_exact, i_exact) in zip(compressed.search(probes, 3), exact.search(probes, 3), strict=True):
        assert i_pq.tolist() == i_exact.tolist()
        assert d_pq.tolist() == d_exact.tolist()  # exact float64 distances, not FAISS's


def test_compressed_distances_are_exact_euclidean_of_the_stored_vectors() -> None:
    vectors = clustered_embeddings(800)
    index = FaceIndex.build("m", DIMENSION, np.arange(800) + 5, vectors, policy=SMALL_THRESHOLD)
    query = clustered_embeddings(1, seed=5)[0]
    ((distances, ids),) = index.search(query, 10)
    expected = np.linalg.norm(vectors[ids - 5].astype(np.float64) - query.astype(np.float64), axis=1)
    assert np.array_equal(distances, expected)


def test_removal_from_a_compressed_index_deletes_vectors_and_codes_and_shrinking_returns_to_exact() -> None:
    vectors = clustered_embeddings(1000)
    index = FaceIndex.build("m", DIMENSION, np.arange(1000), vectors, policy=SMALL_THRESHOLD)
    assert index.remove_ids(np.array([3, 4, 5000])) == 2
    assert index.kind == "pq" and len(index) == 998 and index._coarse.ntotal == 998
    assert 3 not in index.ids() and 4 not in index.ids()
    with pytest.raises(KeyError):
        index.vector(3)
    ((_, ids),) = index.search(vectors[3], 5)
    assert not {3, 4} & set(ids.tolist())
    probes = vectors[5:40] + 0.001  # rows after the removed ones: codes and vectors still aligned
    assert [int(i[0]) for _, i in index.search(probes, 1)] == list(range(5, 40))
    index.remove_ids(np.arange(10, 850))  # 158 left: below half the threshold
    assert index.kind == "exact" and index.ids().tolist() == [0, 1, 2, *range(5, 10), *range(850, 1000)]
    assert np.array_equal(index.vector(900), vectors[900])


def test_a_copy_of_a_compressed_index_is_independent() -> None:
    index = FaceIndex.build("m", DIMENSION, np.arange(500), clustered_embeddings(500), policy=SMALL_THRESHOLD)
    grown = index.copy()
    grown.add(np.arange(500, 900), clustered_embeddings(400, seed=2))
    grown.remove_ids(np.array([1, 2]))
    assert len(index) == 500 and index._coarse.ntotal == 500
    assert grown.ids().tolist() == [0, *range(3, 900)] and grown._coarse.ntotal == 898


def test_a_compressed_index_rebuilt_from_the_same_faces_answers_the_same() -> None:
    vectors = clustered_embeddings(900)
    order = np.random.default_rng(3).permutation(900)
    a = FaceIndex.build("m", DIMENSION, np.arange(900), vectors, policy=SMALL_THRESHOLD)
    b = FaceIndex.build("m", DIMENSION, order, vectors[order], policy=SMALL_THRESHOLD)
    probes = clustered_embeddings(30, seed=9)
    assert [i.tolist() for _, i in a.search(probes, 5)] == [i.tolist() for _, i in b.search(probes, 5)]


def test_a_compressed_index_survives_save_and_load(tmp_path: Path) -> None:
    vectors = clustered_embeddings(700)
    index = FaceIndex.build("m", DIMENSION, np.arange(700) * 3, vectors, policy=SMALL_THRESHOLD)
    index.remove_ids(np.array([0, 3, 6]))
    index.save(tmp_path / "faces.faiss", gallery_id="g", generation=2)
    loaded, header = FaceIndex.load(tmp_path / "faces.faiss", policy=SMALL_THRESHOLD)
    assert loaded.kind == "pq" and header.count == 697 and header.codes_length > 0
    assert loaded.ids().tolist() == index.ids().tolist()
    probes = clustered_embeddings(10, seed=4)
    assert [i.tolist() for _, i in loaded.search(probes, 3)] == [i.tolist() for _, i in index.search(probes, 3)]


@pytest.mark.parametrize("policy", [IndexPolicy(), SMALL_THRESHOLD], ids=["exact", "pq"])
def test_updated_equals_copy_remove_add_and_leaves_the_original_alone(policy: IndexPolicy) -> None:
    vectors = clustered_embeddings(700)
    index = FaceIndex.build("m", DIMENSION, np.arange(700), vectors, policy=policy)
    new = clustered_embeddings(5, seed=8)
    updated = index.updated(np.array([3, 400, 9999]), np.arange(1000, 1005), new)
    expected = index.copy()
    expected.remove_ids(np.array([3, 400]))
    expected.add(np.arange(1000, 1005), new)
    assert updated.kind == expected.kind == index.kind
    assert updated.ids().tolist() == expected.ids().tolist()
    assert np.array_equal(updated.vector(1002), new[2]) and np.array_equal(updated.vector(699), vectors[699])
    probes = clustered_embeddings(20, seed=4)
    assert [i.tolist() for _, i in updated.search(probes, 4)] == [i.tolist() for _, i in expected.search(probes, 4)]
    assert len(index) == 700 and 3 in index.ids()
    with pytest.raises(ValueError):
        index.updated(np.array([], np.int64), np.array([5]), new[:1])  # face 5 is held


# ---- segments: a large index is kept in slices of faces that writes share instead of copying -----

SEGMENTED = IndexPolicy(exact_up_to=400, training_sample=600, segment_rows=256)


def segmented_index(count: int = 1000) -> tuple[FaceIndex, np.ndarray]:
    vectors = clustered_embeddings(count)
    return FaceIndex.build("m", DIMENSION, np.arange(count), vectors, policy=SEGMENTED), vectors


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    """File name -> (inode, modification time in ns): which files a save replaced."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_a_segmented_index_answers_like_one_built_in_a_single_slice() -> None:
    index, vectors = segmented_index()
    whole = FaceIndex.build("m", DIMENSION, np.arange(1000), vectors, policy=SMALL_THRESHOLD)
    probes = np.concatenate([vectors[::50] + 0.001, clustered_embeddings(20, seed=11)])
    for (d1, i1), (d2, i2) in zip(index.search(probes, 6), whole.search(probes, 6), strict=True):
        assert i1.tolist() == i2.tolist() and d1.tolist() == d2.tolist()
    assert np.array_equal(index.vector(777), vectors[777])


def test_a_small_index_is_one_file_and_a_large_one_a_main_file_plus_segment_files(tmp_path: Path) -> None:
    small = FaceIndex.build("m", DIMENSION, np.arange(50), random_embeddings(50), policy=SEGMENTED)
    (tmp_path / "small").mkdir()
    small.save(tmp_path / "small" / "faces.faiss", gallery_id="g", generation=1)
    assert [p.name for p in (tmp_path / "small").iterdir()] == ["faces.faiss"]
    index, _ = segmented_index()
    index.save(tmp_path / "faces.faiss", gallery_id="g", generation=1)
    segments = sorted(p.name for p in tmp_path.glob("faces.faiss.*.seg"))
    assert len(segments) == 3  # 1000 faces in slices of 256: three sealed, the last kept in the main file
    loaded, header = FaceIndex.load(tmp_path / "faces.faiss", policy=SEGMENTED)
    assert sorted(entry["file"] for entry in header.segments) == segments and header.count == 1000
    assert loaded.ids().tolist() == list(range(1000))


def test_adding_a_face_rewrites_only_the_main_file_and_keeps_the_old_index_answering(tmp_path: Path) -> None:
    index, _vectors = segmented_index()
    path = tmp_path / "faces.faiss"
    index.save(path, gallery_id="g", generation=1)
    before = files_of(tmp_path)
    newcomer = clustered_embeddings(1, seed=99)
    grown = index.updated(np.empty(0, np.int64), np.array([5000]), newcomer)
    grown.save(path, gallery_id="g", generation=2)
    after = files_of(tmp_path)
    assert {name: stamp for name, stamp in after.items() if name != "faces.faiss"} == {
        name: stamp for name, stamp in before.items() if name != "faces.faiss"
    }  # sealed segment files untouched
    assert after["faces.faiss"] != before["faces.faiss"]
    assert 5000 not in index.ids() and len(index) == 1000  # the old snapshot is unchanged
    ((_, ids),) = index.search(newcomer[0], 1)
    assert ids[0] != 5000
    loaded, _ = FaceIndex.load(path, policy=SEGMENTED)
    ((distances, ids),) = loaded.search(newcomer[0], 1)
    assert ids[0] == 5000 and distances[0] == 0.0


def test_removing_a_face_erases_its_vector_from_every_file_and_drops_the_old_segment(tmp_path: Path) -> None:
    index, vectors = segmented_index()
    path = tmp_path / "faces.faiss"
    index.save(path, gallery_id="g", generation=1)
    old_segments = {p.name for p in tmp_path.glob("faces.faiss.*.seg")}
    shrunk = index.updated(np.array([300]), np.empty(0, np.int64), np.empty((0, DIMENSION), np.float32))
    shrunk.save(path, gallery_id="g", generation=2)
    secret = vectors[300].tobytes()
    assert all(secret[:16] not in p.read_bytes() for p in tmp_path.iterdir())
    assert len(old_segments - {p.name for p in tmp_path.glob("faces.faiss.*.seg")}) == 1  # only its segment
    assert 300 in index.ids() and np.array_equal(index.vector(300), vectors[300])  # old snapshot intact
    loaded, _ = FaceIndex.load(path, policy=SEGMENTED)
    assert 300 not in loaded.ids() and len(loaded) == 999
    probes = vectors[[10, 299, 301, 600, 999]] + 0.001  # codes and vectors still aligned around the gap
    assert [int(i[0]) for _, i in loaded.search(probes, 1)] == [10, 299, 301, 600, 999]


def test_many_removals_merge_thinned_segments() -> None:
    index, vectors = segmented_index()
    thinned = index.updated(np.arange(0, 1000, 2)[:400], np.empty(0, np.int64), np.empty((0, DIMENSION), np.float32))
    assert len(thinned) == 600 and len(thinned._segments) <= 3  # not four half-empty slices
    probes = vectors[[1, 799, 801, 998]] + 0.001
    assert [int(i[0]) for _, i in thinned.search(probes, 1)] == [1, 799, 801, 998]


@pytest.mark.parametrize("damage", ["missing", "bit-flip", "truncated"])
def test_a_damaged_or_missing_segment_file_makes_the_index_invalid(tmp_path: Path, damage: str) -> None:
    index, _ = segmented_index()
    path = tmp_path / "faces.faiss"
    index.save(path, gallery_id="g", generation=1)
    segment = sorted(tmp_path.glob("faces.faiss.*.seg"))[1]
    data = segment.read_bytes()
    if damage == "missing":
        segment.unlink()
    elif damage == "bit-flip":
        segment.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    else:
        segment.write_bytes(data[:-4])
    with pytest.raises(IndexFileInvalid):
        FaceIndex.load(path, policy=SEGMENTED)


def test_loading_deletes_segment_files_left_by_an_interrupted_save_but_not_a_save_in_progress(tmp_path: Path) -> None:
    index, vectors = segmented_index()
    path = tmp_path / "faces.faiss"
    index.save(path, gallery_id="g", generation=1)
    main_written = path.stat().st_mtime_ns
    # An older segment the main file no longer names (a save killed before deleting it) ...
    stale = tmp_path / "faces.faiss.00000000deadbeef.seg"
    stale.write_bytes(vectors[300].tobytes())
    os.utime(stale, ns=(main_written - 10**9, main_written - 10**9))
    # ... and a newer one another writer may be about to name in its main file.
    fresh = tmp_path / "faces.faiss.00000000cafef00d.seg"
    fresh.write_bytes(b"segment of a save in progress")
    os.utime(fresh, ns=(main_written + 10**9, main_written + 10**9))
    FaceIndex.load(path, policy=SEGMENTED)
    assert not stale.exists() and fresh.exists()
    index.save(path, gallery_id="g", generation=2)  # a save (under the writers' lock) deletes every stray
    assert not fresh.exists()


def test_loads_never_fail_while_another_thread_keeps_saving(tmp_path: Path) -> None:
    # A save replaces the main file, then deletes the segment files it no longer names: a load that
    # read the old main file must then read the new one rather than report the index damaged.
    index, _ = segmented_index()
    path = tmp_path / "faces.faiss"
    index.save(path, gallery_id="g", generation=0)
    stop = threading.Event()
    failures: list[BaseException] = []

    def load_repeatedly() -> None:
        while not stop.is_set():
            try:
                FaceIndex.load(path, policy=SEGMENTED)
            except BaseException as error:
                failures.append(error)
                return

    reader = threading.Thread(target=load_repeatedly)
    reader.start()
    try:
        for generation in range(1, 25):  # each removal rewrites the first segment under a new name
            index = index.updated(np.array([generation]), np.empty(0, np.int64), np.empty((0, DIMENSION), np.float32))
            index.save(path, gallery_id="g", generation=generation)
    finally:
        stop.set()
        reader.join()
    assert failures == []
