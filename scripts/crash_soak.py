"""Crash soak: SIGKILL a process that enrols and removes people, N times, checking the gallery after each.

The same cycle as tests/test_crash.py (see tests/crash_harness.py for what is checked),
run for longer. Prints progress and a summary; exits 1 if any check failed.

    python scripts/crash_soak.py              # 500 cycles in a temporary folder
    python scripts/crash_soak.py 2000 --home /tmp/soak --seed 7
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the harness and the fake pipeline

from crash_harness import CrashSummary, run_cycles


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cycles", nargs="?", type=int, default=500, help="kill cycles (default 500)")
    parser.add_argument("--home", type=Path, help="gallery folder (default: a new temporary folder)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for the kill moments and operations")
    parser.add_argument("--max-delay", type=float, default=0.5, help="longest wait before a kill, seconds")
    args = parser.parse_args()
    logging.getLogger("gallery").setLevel(logging.ERROR)  # index rebuilds after a kill are expected; counted below
    home = args.home or Path(tempfile.mkdtemp(prefix="gallery-crash-soak-")) / "gallery"

    def progress(cycle: int, summary: CrashSummary) -> None:
        if (cycle + 1) % 25 == 0 or summary.problems:
            print(f"[{cycle + 1}/{args.cycles}] {summary.describe()}", flush=True)
        for problem in summary.problems[-3:]:
            print(f"  PROBLEM {problem}", flush=True)

    summary = run_cycles(home, args.cycles, seed=args.seed, max_delay_s=args.max_delay, progress=progress)
    print(f"gallery: {home}")
    print(f"summary: {summary.describe()}")
    return 1 if summary.problems else 0


if __name__ == "__main__":
    sys.exit(main())
