"""Rebuild data/*.jpg from public-domain photos shipped in registry packages.

Sources (see data/PROVENANCE.md): the official portraits in the PyPI sdist of
face_recognition 1.3.0 (tests/test_images), matplotlib's grace_hopper.jpg and
scikit-image's astronaut.png. Run with the three archives downloaded into SRC:

    pip download --no-deps --no-binary :all: face_recognition==1.3.0 -d SRC
    pip download --no-deps --only-binary :all: matplotlib==3.11.2 scikit-image==0.26.0 -d SRC
    python scripts/make_sample_photos.py SRC data/
"""

from __future__ import annotations

import io
import sys
import tarfile
import zipfile
from pathlib import Path

from PIL import Image


def _from_archive(src: Path, pattern: str, member: str) -> Image.Image:
    archive = next(src.glob(pattern))
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            data = z.read(member)
    else:
        with tarfile.open(archive) as t:
            data = t.extractfile(member).read()  # type: ignore[union-attr]
    return Image.open(io.BytesIO(data)).convert("RGB")


def _width(im: Image.Image, width: int) -> Image.Image:
    return im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)


def _square(im: Image.Image, box: tuple[int, int, int, int], size: int) -> Image.Image:
    return im.crop(box).resize((size, size), Image.LANCZOS)


def main(src: Path, out: Path) -> None:
    def fr(name):
        return _from_archive(src, "face_recognition-1.3.0.tar.gz", f"face_recognition-1.3.0/tests/test_images/{name}")

    photos = {
        "obama.jpg": _width(fr("obama.jpg"), 480),
        "obama2.jpg": _width(fr("obama2.jpg").crop((0, 0, 626, 700)), 480),
        "biden.jpg": _width(fr("biden.jpg").crop((150, 0, 970, 820)), 480),
        "obama3.jpg": _width(fr("obama3.jpg").crop((300, 100, 1434, 1100)), 560),
        "obama_partial_face.jpg": _width(fr("obama_partial_face.jpg"), 400),
        "grace_hopper.jpg": _from_archive(src, "matplotlib-*.whl", "matplotlib/mpl-data/sample_data/grace_hopper.jpg"),
        "astronaut.jpg": _from_archive(src, "scikit_image-*.whl", "skimage/data/astronaut.png"),
    }
    ob, bi, gh, ast = photos["obama.jpg"], photos["biden.jpg"], photos["grace_hopper.jpg"], photos["astronaut.jpg"]
    o2, o3 = photos["obama2.jpg"], photos["obama3.jpg"]

    two = Image.new("RGB", (640, 320))
    two.paste(_square(bi, (0, 0, 480, 480), 320), (0, 0))
    two.paste(_square(ob, (0, 0, 480, 480), 320), (320, 0))
    four = Image.new("RGB", (640, 640))
    for i, (im, box) in enumerate(
        [(ast, (0, 0, 512, 512)), (gh, (0, 0, 512, 512)), (o2, (0, 0, 480, 480)), (bi, (0, 0, 480, 480))]
    ):
        four.paste(_square(im, box, 320), ((i % 2) * 320, (i // 2) * 320))
    six = Image.new("RGB", (720, 480))
    tiles = [
        (ast, (0, 0, 512, 512)),
        (gh, (0, 0, 512, 512)),
        (ob, (0, 0, 480, 480)),
        (bi, (0, 0, 480, 480)),
        (o3, (80, 0, 560, 480)),
        (o2, (0, 0, 480, 480)),
    ]
    for i, (im, box) in enumerate(tiles):
        six.paste(_square(im, box, 240), ((i % 3) * 240, (i // 3) * 240))
    three = Image.new("RGB", (840, 300))
    for i, im in enumerate([o3, gh, ast]):
        three.paste(_square(im, (40, 0, 440, 400), 280), (i * 280, 10))
    # Mirrored tiles at another scale: new faces for the parity fixture, same public-domain sources.
    mirrored = Image.new("RGB", (560, 560))
    for i, (im, box) in enumerate(
        [(bi, (60, 20, 420, 380)), (ob, (60, 20, 420, 380)), (ast, (60, 0, 460, 400)), (gh, (60, 20, 460, 420))]
    ):
        tile = _square(im, box, 280).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        mirrored.paste(tile, ((i % 2) * 280, (i // 2) * 280))
    photos.update(
        {
            "two_people.jpg": two,
            "four_people.jpg": four,
            "group_of_six.jpg": six,
            "three_people.jpg": three,
            "mirrored_four.jpg": mirrored,
        }
    )

    out.mkdir(parents=True, exist_ok=True)
    for name, im in photos.items():
        im.save(out / name, quality=90)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
