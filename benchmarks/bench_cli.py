"""Cold ``gallery identify`` wall time, beside face_recognition's CLI with the same known people.

    python -m benchmarks.bench_cli [--photos lfw|camera] [--known 100] [--runs 5] [--server]
        [--face-recognition /root/frvenv/bin/face_recognition]

``--photos lfw``: the first ``--known`` people of LFW view 1 (by name) each contribute their
first photo (250x250 crops). ``--photos camera``: photos as a camera gives them, from
face_recognition's own examples (17 photos of 6 people, 0.3-3 MP), cycled to ``--known``
files, each re-saved with its own JPEG comment so that every file is distinct. gallery
enrols the known photos once (``gallery enroll-dir``, not timed; each person's photos in
their own sub-folder); face_recognition gets them as its known-people folder (one file per
photo, named after the person and a number), which its CLI re-encodes on every run. Both then identify
the same photo of a known person in a fresh process each run; medians of ``--runs``. CPU
time (user + system, children included) is reported beside wall time, being less sensitive
to other load. Also: ``import torch`` and ``import faiss`` alone, and ``gallery --help``.

``--server`` also starts ``gallery serve`` on the enrolled gallery (on a free loopback port,
not timed: it loads the models once) and times the cold client, ``gallery --server URL
identify``, which imports neither torch, FAISS, NumPy nor SQLAlchemy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.serving import gallery_service

DATASETS = Path("/work/shared/datasets")


def timed(command: list[str], runs: int, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds of ``runs`` fresh runs of ``command``."""
    walls, cpus = [], []
    for _ in range(runs):
        before = os.times()
        start = time.perf_counter()
        subprocess.run(command, check=False, capture_output=True, env=env)
        walls.append(time.perf_counter() - start)
        after = os.times()
        cpus.append(after.children_user - before.children_user + after.children_system - before.children_system)
    return statistics.median(walls), statistics.median(cpus)


def lfw_photos(root: Path, count: int) -> tuple[list[tuple[str, Path]], Path]:
    known = []
    for person in sorted(p for p in root.iterdir() if p.is_dir())[:count]:
        known.append((person.name, sorted(person.glob("*.jpg"))))
    probe = next(photos[1] for _, photos in known if len(photos) > 1)
    return [(name, photos[0]) for name, photos in known], probe


def camera_photos(root: Path, count: int, folder: Path) -> tuple[list[tuple[str, Path]], Path]:
    from PIL import Image

    probe = root / "obama" / "obama1.jpg"
    sources = sorted(p for p in root.glob("*/*") if not p.parent.name.startswith("_") and p != probe)
    known = []
    for i in range(count):
        source = sources[i % len(sources)]
        copy = folder / f"{i:03d}.jpg"
        with Image.open(source) as image:
            image.convert("RGB").save(copy, quality=95, comment=f"copy {i}".encode())
        known.append((source.parent.name, copy))
    return known, probe


def identify_key(python: str, env: dict[str, str]) -> str:
    """A new API key with the identify scope for the gallery of ``env`` (``gallery keys create``)."""
    made = subprocess.run(
        [python, "-m", "gallery", "keys", "create", "--name", f"bench-{os.getpid()}", "--scope", "identify"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return made.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", choices=["lfw", "camera"], default="lfw")
    parser.add_argument("--datasets", type=Path, default=DATASETS)
    parser.add_argument("--known", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--face-recognition", metavar="CLI", help="face_recognition's command (in its own venv)")
    parser.add_argument("--server", action="store_true", help="also time gallery --server URL identify")
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory() as folder:
        if args.photos == "lfw":
            known, probe = lfw_photos(args.datasets / "lfw_view1", args.known)
        else:
            (Path(folder) / "copies").mkdir()
            known, probe = camera_photos(
                args.datasets / "face_recognition_examples", args.known, Path(folder) / "copies"
            )
        known_dir, enrol_dir = Path(folder) / "known", Path(folder) / "enrol"
        known_dir.mkdir()
        for i, (name, photo) in enumerate(known):
            (known_dir / f"{name}-{i:03d}.jpg").symlink_to(photo)
            (enrol_dir / name).mkdir(parents=True, exist_ok=True)
            (enrol_dir / name / f"{i:03d}.jpg").symlink_to(photo)
        home = Path(folder) / "home"
        env = {**os.environ, "GALLERY_HOME": str(home)}
        subprocess.run(
            [python, "-m", "gallery", "enroll-dir", "--allow-similar", str(enrol_dir)],
            check=False,
            capture_output=True,
            env=env,
        )
        answer = subprocess.run(
            [python, "-m", "gallery", "identify", str(probe)], capture_output=True, text=True, env=env
        )
        print(
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {len(known)} known photos "
            f"({args.photos}), probe {probe.name}: gallery says "
            f"{answer.stdout.split(chr(9))[0].strip() or answer.stderr.strip()}"
        )
        rows = [
            ("python -c 'import torch'", timed([python, "-c", "import torch"], args.runs)),
            ("python -c 'import faiss'", timed([python, "-c", "import faiss"], args.runs)),
            ("gallery --help", timed([python, "-m", "gallery", "--help"], args.runs, env)),
        ]
        ours = timed([python, "-m", "gallery", "identify", str(probe)], args.runs, env)
        rows.append((f"gallery identify ({len(known)} photos enrolled)", ours))
        if args.server:
            key = identify_key(python, env)
            # The rate limit is for doors; this benchmark is one client asking a few times a second.
            options = ["serve", "--rate-limit", "1000/minute", "--log-level", "warning"]
            with gallery_service(python, options, env) as (url, _):
                client_env = {**os.environ, "GALLERY_API_KEY": key}
                command = [python, "-m", "gallery", "--server", url, "identify", str(probe)]
                said = subprocess.run(command, capture_output=True, text=True, env=client_env)
                print(f"gallery --server says {said.stdout.split(chr(9))[0].strip() or said.stderr.strip()}")
                client = timed(command, args.runs, client_env)
            rows.append((f"gallery --server URL identify ({len(known)} photos enrolled)", client))
        if args.face_recognition:
            theirs = timed([args.face_recognition, str(known_dir), str(probe)], max(1, min(args.runs, 3)))
            rows.append((f"face_recognition CLI ({len(known)} known photos)", theirs))
        print("| command | median wall s | median CPU s |\n|---|---|---|")
        for label, (wall, cpu) in rows:
            print(f"| {label} | {wall:.2f} | {cpu:.2f} |")
        if args.face_recognition:
            print(f"face_recognition / gallery: {theirs[0] / ours[0]:.1f}x wall, {theirs[1] / ours[1]:.1f}x CPU")
            if args.server:
                print(
                    f"face_recognition / gallery --server: {theirs[0] / client[0]:.1f}x wall, "
                    f"{theirs[1] / client[1]:.1f}x CPU"
                )
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
