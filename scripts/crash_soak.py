"""Crash soak: SIGKILL a process that enrols and removes people, N times, checking the gallery after each.

The same cycle as tests/test_crash.py (see tests/crash_harness.py for what is checked),
run for longer. Prints progress and a summary; exits 1 if any check failed.

    python scripts/crash_soak.py              # 500 cycles in a temporary folder (SQLite)
    python scripts/crash_soak.py 2000 --home /tmp/soak --seed 7
    python scripts/crash_soak.py 300 --postgres                     # a throwaway PostgreSQL server
    python scripts/crash_soak.py 300 --database-url postgresql://user:pw@host/emptydb

With a database server the victims run on two hosts in turn (two home folders under
``--home``) and each check adds a new host built from the database and a host that stayed
open throughout (tests/crash_harness.py, ``_Site``). ``--postgres`` starts its own server with
initdb and pg_ctl (tests/pg_server.py; PostgreSQL's server programs must be installed).
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
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--database-url", help="an empty PostgreSQL database shared by the hosts (default: SQLite)")
    where.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL server for the run")
    args = parser.parse_args()
    logging.getLogger("gallery").setLevel(logging.ERROR)  # index rebuilds after a kill are expected; counted below
    home = args.home or Path(tempfile.mkdtemp(prefix="gallery-crash-soak-")) / "gallery"

    def progress(cycle: int, summary: CrashSummary) -> None:
        if (cycle + 1) % 25 == 0 or summary.problems:
            print(f"[{cycle + 1}/{args.cycles}] {summary.describe()}", flush=True)
        for problem in summary.problems[-3:]:
            print(f"  PROBLEM {problem}", flush=True)

    server = None
    database_url = args.database_url
    if args.postgres:
        from pg_server import PostgresServer, server_programs

        programs = server_programs()
        if programs is None:
            parser.error("--postgres needs PostgreSQL's server programs (initdb, pg_ctl): install postgresql")
        server = PostgresServer(programs)
        database_url = server.new_database()
    try:
        summary = run_cycles(
            home, args.cycles, seed=args.seed, max_delay_s=args.max_delay, progress=progress, database_url=database_url
        )
    finally:
        if server is not None:
            server.close()
    print(f"gallery: {home}" + (f" on {database_url.split('@')[-1]}" if database_url else ""))
    print(f"summary: {summary.describe()}")
    return 1 if summary.problems else 0


if __name__ == "__main__":
    sys.exit(main())
