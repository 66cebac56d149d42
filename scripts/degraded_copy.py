"""Copy a labelled photo folder in greyscale, optionally scaled down: the same people, photos out of LFW's domain.

    python scripts/degraded_copy.py ../shared/datasets/lfw_view1 /tmp/lfw_grey
    python scripts/degraded_copy.py ../shared/datasets/lfw_view1 /tmp/lfw_small_grey --scale 0.5

Greyscale and low resolution are what studio and camera sets such as att_orl differ in: the same
LFW photos in grey sit closer together (median different-person distance 0.791 against 0.816),
so a stranger lands near someone more often. Writes PNGs, one sub-folder per person.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm", ".bmp")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("destination", type=Path)
    parser.add_argument("--scale", type=float, default=1.0, help="resize by this factor (Lanczos); default 1")
    args = parser.parse_args()
    for person in sorted(p for p in args.source.iterdir() if p.is_dir()):
        out = args.destination / person.name
        out.mkdir(parents=True, exist_ok=True)
        for photo in sorted(person.iterdir()):
            if photo.suffix.lower() not in PHOTO_SUFFIXES:
                continue
            grey = Image.open(photo).convert("L")
            if args.scale != 1.0:
                size = (round(grey.width * args.scale), round(grey.height * args.scale))
                grey = grey.resize(size, Image.Resampling.LANCZOS)
            grey.convert("RGB").save(out / f"{photo.stem}.png")


if __name__ == "__main__":
    main()
