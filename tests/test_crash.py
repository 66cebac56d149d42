"""Crash safety: SIGKILL a process in the middle of enrolments and removals, reopen, check.

The checks are in tests/crash_harness.py; scripts/crash_soak.py runs the same for longer.
"""

from __future__ import annotations

from pathlib import Path

from crash_harness import run_cycles

CYCLES = 32


def test_a_writer_killed_at_random_moments_leaves_a_sound_gallery_every_time(tmp_path: Path) -> None:
    summary = run_cycles(tmp_path / "gallery", CYCLES, seed=20240611, max_delay_s=0.35)
    assert summary.problems == [], "\n".join(summary.problems[:20])
    assert summary.cycles == CYCLES
    # The kills really landed inside the writes under test, not only between them.
    assert summary.killed_during["enroll"] >= 1, summary.describe()
    assert summary.killed_during["remove"] >= 1, summary.describe()
    # ...and the writer got work done between kills (how much depends on the machine's load).
    assert summary.operations_done >= 1, summary.describe()
    print(summary.describe())
