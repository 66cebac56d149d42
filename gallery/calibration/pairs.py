"""LFW-format pair lists (which two photos, same person or not, which fold) and their verification accuracy."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gallery.calibration.metrics import pair_accuracy
from gallery.errors import NoUsablePairs, PairsFileUnreadable, PairsFormatError


@dataclass(frozen=True)
class Pair:
    """Two photos, as paths relative to the dataset root (``Name/Name_0001.jpg``)."""

    first: str
    second: str
    same: bool
    fold: int | None  # None when the file has no folds


def photo_path(name: str, number: str) -> str:
    """LFW's layout: ``Name/Name_NNNN.jpg``."""
    return f"{name}/{name}_{int(number):04d}.jpg"


def read_pairs(path: str | os.PathLike) -> list[Pair]:
    """Parse an LFW pairs file.

    The first line may be a header: ``folds pairs_per_kind`` (View 2's ``10 300``: each fold is
    that many same-person pairs then as many different-person pairs), or a single count
    (View 1's ``1100``), or absent. Without a two-number header, pairs carry no fold.

    Raises:
        PairsFormatError: the file is not UTF-8 text, or a line has the wrong number of fields or
            a non-numeric photo number.
        PairsFileUnreadable: the file cannot be read.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise PairsFormatError(
            f"{path}: not a text file (byte {err.start} is not UTF-8); give an LFW pairs list"
        ) from None
    except OSError as err:
        raise PairsFileUnreadable(f"cannot read the pairs file {path}: {err.strerror or err}") from err
    lines = [line.split() for line in text.splitlines() if line.strip()]
    folds = per_kind = None
    if lines and all(field.isdigit() for field in lines[0]):
        header = lines.pop(0)
        if len(header) == 2:
            folds, per_kind = int(header[0]), int(header[1])
    pairs = []
    for number, fields in enumerate(lines):
        try:
            if len(fields) == 3:
                first, second, same = photo_path(fields[0], fields[1]), photo_path(fields[0], fields[2]), True
            elif len(fields) == 4:
                first, second, same = photo_path(fields[0], fields[1]), photo_path(fields[2], fields[3]), False
            else:
                raise ValueError(f"{len(fields)} fields")
        except ValueError as err:
            raise PairsFormatError(f"{path}: pair {number + 1} ({' '.join(fields)!r}): {err}") from None
        fold = number // (2 * per_kind) if per_kind else None
        pairs.append(Pair(first, second, same, fold))
    if folds is not None and per_kind and len(pairs) != folds * 2 * per_kind:
        raise PairsFormatError(f"{path}: header promises {folds} folds of {2 * per_kind} pairs, found {len(pairs)}")
    return pairs


@dataclass(frozen=True)
class PairReport:
    """Verification accuracy on a pairs file (see ``metrics.pair_accuracy``)."""

    accuracy: float  # cross-validated over folds (10 by position when the file has none)
    std: float
    folds: int
    pairs: int  # pairs judged: both photos have a face
    no_face: int  # pairs skipped: a photo had no face found in it
    missing_files: int  # pairs skipped: a photo file is missing or unreadable (only with allow_missing)
    threshold: float  # the mean of the folds' learned thresholds
    accuracy_at: float | None  # accuracy at the given threshold (the verify threshold in force), if any
    missing_photos: tuple[str, ...] = ()  # the missing or unreadable photo files, relative to the root

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pair_report(
    pairs: Sequence[Pair],
    embedding_of: Mapping[str, np.ndarray],
    threshold: float | None = None,
    *,
    missing: Collection[str] = (),
) -> PairReport:
    """Score pairs whose photos both have an embedding.

    Args:
        pairs: from ``read_pairs``.
        embedding_of: photo path (as in ``Pair.first``) to its face's embedding; photos without
            a face are simply absent.
        threshold: also report the accuracy of this fixed distance threshold.
        missing: photo paths whose files are missing or unreadable: their pairs are counted as
            ``missing_files``, apart from pairs with a photo without a face (``no_face``).

    Raises:
        NoUsablePairs: no pair has both photos embedded.
    """
    usable = [p for p in pairs if p.first in embedding_of and p.second in embedding_of]
    missing = set(missing)
    missing_files = sum(1 for p in pairs if p.first in missing or p.second in missing)
    if not usable:
        raise NoUsablePairs(
            f"none of the {len(pairs)} pairs has a face found in both photos (are the photos "
            "where the pairs file says? see --root)"
        )
    first = np.stack([np.asarray(embedding_of[p.first], np.float64) for p in usable])
    second = np.stack([np.asarray(embedding_of[p.second], np.float64) for p in usable])
    distances = np.linalg.norm(first - second, axis=1)
    same = np.array([p.same for p in usable])
    folds = np.array([p.fold for p in usable]) if all(p.fold is not None for p in usable) else None
    result = pair_accuracy(distances, same, folds)
    at = float(((distances <= threshold) == same).mean()) if threshold is not None else None
    return PairReport(
        result.accuracy,
        result.std,
        result.folds,
        len(usable),
        len(pairs) - len(usable) - missing_files,
        missing_files,
        float(np.mean(result.thresholds)),
        at,
        tuple(sorted(missing)),
    )
