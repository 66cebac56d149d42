"""The index's files on disk: ``faces.faiss`` and its slice files, written atomically and checked.

Files: ``faces.faiss`` (the main file) holds the last slice and the PQ codes, and names
the other slices, each in its own file ``faces.faiss.<digest>.seg`` (its ids, then its
vectors, little-endian) with its SHA-256; so a save writes the main file and only the slices
that are new, and a small gallery is the main file alone. The main file is ``MAGIC``, a
little-endian u32 header length, a UTF-8 JSON header (format, model, dimension, count,
SHA-256 of the sorted ids, the gallery id and faces generation it was saved at, the slices
in their files, SHA-256 and length of the payload), then the payload: the last slice's ids
and vectors, then FAISS's serialization of the PQ codes' index if any (``codes_length``
bytes). Every file is replaced atomically (``gallery.atomicfile``), slices before the main
file that names them, and slices no longer named are deleted after it (so a removed face's
vector leaves every file). Checksums are verified before FAISS parses a byte, so a damaged
file is rejected instead of crashing the process.

The in-memory index (``gallery.store.index.FaceIndex``) is made of ``Segment``s; this module
knows how they are laid out in files, not how they are searched.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gallery.atomicfile import remove_stale_temporaries, write_atomically
from gallery.errors import IndexFileInvalid

if TYPE_CHECKING:
    import faiss

MAGIC = b"GALLERY-FAISS\n"
FORMAT_VERSION = 3
_HEADER_LENGTH = struct.Struct("<I")
_MAX_HEADER_BYTES = 1 << 20
_SEGMENT_SUFFIX = ".seg"
_LOAD_ATTEMPTS = 5  # a save that replaces the main file mid-load makes a load start over
_IO_CHUNK = 1 << 22


def faiss_module() -> Any:
    """The faiss module, imported on first use (it takes a noticeable fraction of a second)."""
    import faiss

    return faiss


def open_regular(path: Path) -> io.BufferedReader:
    """Open ``path`` for reading only if it is a regular file, never blocking and never through a link.

    A FIFO, device, folder or symbolic link where an index file should be is treated as a
    damaged file (the index is a cache: it is rebuilt and saved over it); a plain ``open``
    would block forever on a FIFO or read a device without end.

    Raises:
        FileNotFoundError: there is no such file.
        IndexFileInvalid: something other than a regular file has that name.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as error:  # ELOOP: a symbolic link; EISDIR, ENXIO: not a plain file
        raise IndexFileInvalid(f"{path} is not a regular file ({error.strerror})") from None
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise IndexFileInvalid(f"{path} is not a regular file (mode {stat.filemode(mode)})")
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def delete_index_files(path: Path) -> list[Path]:
    """Delete an index's main file, its slice files and any temporary files of them.

    For when a save failed: the files on disk may hold faces the database no longer has, and
    the index is a cache (the next open rebuilds it). Call only under the writers' lock.

    Returns:
        The files that could not be deleted (empty when none is left).
    """
    left: list[Path] = []
    slices = path.parent.glob(f"{path.name}.*{_SEGMENT_SUFFIX}")
    for candidate in [path, *slices, *path.parent.glob(f".{path.name}.*.tmp")]:
        try:
            if stat.S_ISDIR(os.lstat(candidate).st_mode):
                continue  # not a file a save made: it holds no index
            candidate.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            left.append(candidate)
    return left


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


class Segment:
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
    def of(cls, ids: np.ndarray, vectors: np.ndarray) -> Segment:
        """A slice holding copies of ``ids`` (int64) and ``vectors`` (float32 rows)."""
        return cls(np.array(ids, dtype="<i8"), np.array(vectors, dtype="<f4"))

    @classmethod
    def joined(cls, parts: Sequence[Segment]) -> Segment:
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


def write_index_files(
    path: Path,
    segments: Sequence[Segment],
    coarse: faiss.IndexPQFastScan | None,
    *,
    model: str,
    dimension: int,
    ids_sha256: str,
    gallery_id: str,
    generation: int,
) -> None:
    """Write an index to ``path`` (its main file) and its slice files, each atomically.

    Slices the main file on disk already names are not written again; slice files the new
    main file does not name are deleted once it is in place. Call only while holding the
    lock that serialises the index's writers.

    Args:
        path: the index's main file.
        segments: the index's slices in order; the last is kept in the main file.
        coarse: the PQ codes' index, row for row with the slices, if any.
        model, dimension: what the vectors are.
        ids_sha256: ``ids_digest`` of every face id held.
        gallery_id: the database's ``store_state.gallery_id``, binding the file to it.
        generation: the faces generation this index reflects.
    """
    remove_stale_temporaries(path)
    named_on_disk = _segment_files_named_by(path)
    entries: list[dict[str, Any]] = []
    for segment in segments[:-1]:
        name = segment.file_name(path)
        if name not in named_on_disk or not _is_plain_file(path.parent / name):
            # Written afresh even if a stray copy exists: see _remove_stray_segments on why
            # every file a main file names must be either named before or newer than it.
            write_atomically(path.parent / name, list(segment.chunks()))
        entries.append({"file": name, "rows": len(segment), "sha256": segment.digest()})
    inline = list(segments[-1].chunks()) if segments else []
    codes = [memoryview(faiss_module().serialize_index(coarse))] if coarse is not None else []
    digest = hashlib.sha256()
    for chunk in inline + codes:
        digest.update(chunk)
    header = IndexFileHeader(
        model=model,
        dimension=dimension,
        count=sum(len(s) for s in segments),
        ids_sha256=ids_sha256,
        gallery_id=gallery_id,
        generation=generation,
        payload_sha256=digest.hexdigest(),
        payload_length=sum(len(c) for c in inline + codes),
        inline_rows=len(segments[-1]) if segments else 0,
        codes_length=sum(len(c) for c in codes),
        segments=entries,
    )
    header_bytes = json.dumps(asdict(header), sort_keys=True).encode()
    write_atomically(path, [MAGIC, _HEADER_LENGTH.pack(len(header_bytes)), header_bytes, *inline, *codes])
    _remove_stray_segments(path, keep={str(entry["file"]) for entry in entries})


def read_index_files(path: Path) -> tuple[IndexFileHeader, list[Segment], faiss.IndexPQFastScan | None]:
    """Read and check an index's files: its header, its slices in order, and its PQ codes' index.

    A save that replaces the main file while this reads makes it start over, so a load
    never takes a concurrent save for damage. Slice files an interrupted save left behind
    are deleted (only those older than the main file: see ``_remove_stray_segments``).

    Raises:
        FileNotFoundError: there is no main file.
        IndexFileInvalid: a file is truncated, damaged or missing, or not an index file.
    """
    for attempt in range(_LOAD_ATTEMPTS):
        with open_regular(path) as file:
            written = os.fstat(file.fileno())
            header, inline, coarse = _read_main_file(path, file)
        try:
            segments = [_read_segment(path, entry, header.dimension) for entry in header.segments]
        except FileNotFoundError as error:
            if attempt + 1 < _LOAD_ATTEMPTS and _replaced_since(path, written):
                continue
            raise IndexFileInvalid(f"{path}: a segment file is missing ({error.filename})") from error
        break
    _remove_stray_segments(path, keep={str(e["file"]) for e in header.segments}, older_than=written.st_mtime_ns)
    return header, [*segments, inline], coarse


def _read_main_file(
    path: Path, file: io.BufferedIOBase
) -> tuple[IndexFileHeader, Segment, faiss.IndexPQFastScan | None]:
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
        faiss = faiss_module()
        try:
            coarse = faiss.deserialize_index(np.frombuffer(codes, np.uint8))  # of its own type already
        except RuntimeError as error:
            raise IndexFileInvalid(f"{path}: FAISS cannot read the PQ codes: {error}") from error
        if not isinstance(coarse, faiss.IndexPQFastScan) or coarse.d != header.dimension:
            raise IndexFileInvalid(f"{path}: the PQ codes are not a {header.dimension}-d IndexPQFastScan")
    return header, Segment(ids, vectors), coarse


def _read_segment(main: Path, entry: dict[str, Any], dimension: int) -> Segment:
    """One slice file named by the main file ``main``, checked against what it says of the slice."""
    try:
        name, rows, sha256 = str(entry["file"]), int(entry["rows"]), str(entry["sha256"])
    except (KeyError, TypeError, ValueError) as error:
        raise IndexFileInvalid(f"{main}: malformed segment entry {entry!r}") from error
    if name != f"{main.name}.{sha256[:16]}{_SEGMENT_SUFFIX}":  # also keeps it inside the gallery folder
        raise IndexFileInvalid(f"{main}: a segment file is misnamed ({name!r})")
    path = main.parent / name
    digest = hashlib.sha256()
    with open_regular(path) as file:
        ids, vectors = _read_rows(file, rows, dimension, digest)
        if file.read(1):
            raise IndexFileInvalid(f"{path}: the segment has extra bytes")
    if digest.hexdigest() != sha256:
        raise IndexFileInvalid(f"{path}: the segment does not match its checksum")
    return Segment(ids, vectors, sha256)


def _read_rows(file: io.BufferedIOBase, rows: int, dimension: int, digest: Any) -> tuple[np.ndarray, np.ndarray]:
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
    return array.reshape(-1).view(np.uint8).data


def _is_plain_file(path: Path) -> bool:
    """Whether ``path`` is a regular file itself (not a link to one, not a FIFO)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


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
        with open_regular(path) as file:
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
