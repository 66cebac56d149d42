"""Bulk enrolment throughput on LFW-size photos (250x250), beside face_recognition's encoding rate.

    python -m benchmarks.bench_enroll [--lfw /work/shared/datasets/lfw_view1] [--photos 1000]
        [--threads 2] [--check] [--face-recognition /root/frvenv/bin/python]

Takes whole people (sub-folders, in name order) from LFW until ``--photos`` photos, and runs
``Gallery.enroll_dir(largest=True, allow_similar=True)`` on them into a new gallery, in this
process, after loading the models (reported apart). Photos per second = photos / wall time,
everything included: reading and hashing, detection, landmarks, chips, batched embedding,
the chips' JPEG and the batched writes; with ``--check`` the lookalike check too
(``allow_similar=False``: identify's question for every photo, against the gallery and the people
earlier in the folder). A second run over the same folder shows the resume path (every photo
skipped by SHA-256).

With ``--face-recognition PYTHON``: the same photos through its API
(``load_image_file`` + ``face_encodings``, its default HOG detector; and dlib's CNN detector
on a subset), which is what its CLI does for every known photo on every run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

DEFAULT_LFW = Path("/work/shared/datasets/lfw_view1")

FACE_RECOGNITION_SCRIPT = """
import json, sys, time
import face_recognition
paths = sys.argv[1:]
result = {}
for model, subset in (("hog", paths), ("cnn", paths[:100])):
    start = time.perf_counter()
    for path in subset:
        face_recognition.face_encodings(face_recognition.load_image_file(path), model=model)
    result[model] = len(subset) / (time.perf_counter() - start)
print(json.dumps(result))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--check", action="store_true", help="run the lookalike check (allow_similar=False)")
    parser.add_argument("--face-recognition", metavar="PYTHON", help="a python with face_recognition installed")
    args = parser.parse_args()

    from gallery import Gallery, set_threads
    from gallery.vision.pipeline import default_pipeline

    set_threads(args.threads)
    print(f"{os.cpu_count()} cores, {args.threads} threads, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as folder:
        staff = Path(folder) / "staff"
        staff.mkdir()
        chosen: list[Path] = []
        for person in sorted(p for p in args.lfw.iterdir() if p.is_dir()):
            if len(chosen) >= args.photos:
                break
            photos = sorted(person.glob("*.jpg"))
            (staff / person.name).symlink_to(person, target_is_directory=True)
            chosen += photos
        start = time.perf_counter()
        pipeline = default_pipeline()
        pipeline.faces(str(chosen[0]))  # load every model
        load_s = time.perf_counter() - start
        with Gallery(Path(folder) / "home") as gallery:
            start = time.perf_counter()
            result = gallery.enroll_dir(staff, largest=True, allow_similar=not args.check)
            wall = time.perf_counter() - start
            start = time.perf_counter()
            again = gallery.enroll_dir(staff, largest=True, allow_similar=not args.check)
            resume = time.perf_counter() - start
        people = len({e.person_id for e in result.enrolled})
        print(f"models loaded in {load_s:.1f} s (not counted)")
        print(
            f"enroll-dir: {result.photos} photos ({people} people) in {wall:.1f} s: "
            f"{result.photos / wall:.1f} photos/s; {len(result.enrolled)} enrolled, {len(result.failures)} refused "
            f"({', '.join(sorted({f.error for f in result.failures})) or 'none'})"
        )
        print(
            f"second run (resume): {len(again.skipped)} skipped in {resume:.1f} s: {again.photos / resume:.0f} photos/s"
        )
        if args.face_recognition:
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            out = subprocess.run(
                [args.face_recognition, "-c", FACE_RECOGNITION_SCRIPT, *map(str, chosen)],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            )
            theirs = json.loads(out.stdout.strip().splitlines()[-1])
            rate = result.photos / wall
            print(
                f"face_recognition face_encodings: {theirs['hog']:.1f} photos/s with its HOG detector, "
                f"{theirs['cnn']:.1f} with dlib's CNN detector (gallery's); gallery / face_recognition: "
                f"{rate / theirs['hog']:.2f}x (HOG), {rate / theirs['cnn']:.2f}x (CNN)"
            )
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
