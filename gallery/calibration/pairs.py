"""LFW-format pair lists: which two photos, same person or not, and in which fold."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class PairsFormatError(ValueError):
    """A line of the pairs file is neither "name i j" nor "name1 i name2 j"."""


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
        PairsFormatError: a line has the wrong number of fields or a non-numeric photo number.
    """
    lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
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
