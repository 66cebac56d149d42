"""Cold ``gallery identify`` wall time, beside face_recognition's CLI with the same known people.

    python -m benchmarks.bench_cli [--lfw /work/shared/datasets/lfw_view1] [--known 100] [--runs 5]
        [--face-recognition /root/frvenv/bin/face_recognition]

The first ``--known`` people of LFW (by name) each contribute their first photo: gallery
enrols them once (``gallery enroll-dir``, not timed here), face_recognition gets them as its
known-people folder, which its CLI re-encodes on every run. Both then identify the same
photo (another photo of one of those people) in a fresh process each run; medians of
``--runs``. Also reported: import times of torch and faiss alone, and ``gallery --help``.
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

DEFAULT_LFW = Path("/work/shared/datasets/lfw_view1")


def wall_s(command: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=False, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--known", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--face-recognition", metavar="CLI", help="face_recognition's command (in its own venv)")
    args = parser.parse_args()
    people = sorted(p for p in args.lfw.iterdir() if p.is_dir())
    known = [(p.name, sorted(p.glob("*.jpg"))) for p in people[: args.known]]
    probe = next(photos[1] for _, photos in known if len(photos) > 1)
    python = sys.executable
    with tempfile.TemporaryDirectory() as folder:
        known_dir = Path(folder) / "known"
        known_dir.mkdir()
        for name, photos in known:
            (known_dir / f"{name}.jpg").symlink_to(photos[0])
        home = Path(folder) / "home"
        env = {**os.environ, "GALLERY_HOME": str(home)}
        subprocess.run([python, "-m", "gallery", "enroll-dir", "--allow-similar", str(known_dir)],
                       check=False, capture_output=True, env=env)
        answer = subprocess.run([python, "-m", "gallery", "identify", str(probe)], capture_output=True, text=True,
                                env=env)
        print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {len(known)} known people, "
              f"probe {probe.name}: gallery says {answer.stdout.split(chr(9))[0].strip() or answer.stderr.strip()}")
        rows = [
            ("python -c 'import torch'", wall_s([python, "-c", "import torch"], args.runs)),
            ("python -c 'import faiss'", wall_s([python, "-c", "import faiss"], args.runs)),
            ("gallery --help", wall_s([python, "-m", "gallery", "--help"], args.runs, env)),
        ]
        ours = wall_s([python, "-m", "gallery", "identify", str(probe)], args.runs, env)
        rows.append((f"gallery identify ({len(known)} enrolled)", ours))
        if args.face_recognition:
            theirs = wall_s([args.face_recognition, str(known_dir), str(probe)], max(1, min(args.runs, 3)))
            rows.append((f"face_recognition CLI ({len(known)} known photos)", theirs))
        print("| command | median wall s |\n|---|---|")
        for label, seconds in rows:
            print(f"| {label} | {seconds:.2f} |")
        if args.face_recognition:
            print(f"face_recognition / gallery: {theirs / ours:.1f}x")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
