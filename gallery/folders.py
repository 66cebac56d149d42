"""Reading a folder of people's photos for bulk enrolment: who is who, from the folder's layout.

Two layouts, which may be mixed in one folder:

    staff/Ada Lovelace/1.jpg, staff/Ada Lovelace/2.jpg   one sub-folder per person (any number of photos)
    staff/Alan Turing.jpg                                one photo per person, named after the file

Names are taken verbatim (a folder ``AJ_Cook`` enrols ``AJ_Cook``), as Unicode NFC; bulk enrolment
refuses the photos of a name that breaks the name rules (``gallery.store.validation.new_name``),
such as a file name that is not UTF-8. Hidden files and folders, files that are not photos by
their extension, and folders nested deeper are ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gallery.errors import ImageNotFound
from gallery.store import normalise_name

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})


@dataclass(frozen=True)
class PersonPhotos:
    """One person's photos found in the folder, in name order."""

    name: str
    photos: tuple[Path, ...]


def is_photo(path: Path) -> bool:
    """A visible regular file with a photo's extension."""
    return not path.name.startswith(".") and path.suffix.lower() in PHOTO_SUFFIXES and path.is_file()


def scan_people_folder(root: str | os.PathLike) -> list[PersonPhotos]:
    """The people in ``root`` and their photos, by name; a name given twice (folder and file) is merged.

    Raises:
        ImageNotFound: ``root`` does not exist or is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise ImageNotFound(f"not a folder: {os.fsdecode(root)!r}")
    people: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            name, photos = entry.name, sorted(p for p in entry.iterdir() if is_photo(p))
        elif is_photo(entry):
            name, photos = entry.stem, [entry]
        else:
            continue
        if photos:
            # As the store keeps names, so "José" typed two ways is one person.
            people.setdefault(normalise_name(name), []).extend(photos)
    return [PersonPhotos(name, tuple(photos)) for name, photos in sorted(people.items())]
