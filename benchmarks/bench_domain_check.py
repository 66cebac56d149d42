"""What the domain check costs each enrolment (and ``info``), by gallery size, and what it says of synthetic faces.

    python -m benchmarks.bench_domain_check [--sizes 1000,100000] [--runs 20] [--work /tmp/gallery-bench]

Uses ``bench_identify``'s gallery homes (one synthetic descriptor per person, drawn from the
two-level Gaussian fitted to LFW View 1: ``benchmarks/synthetic.py``; made once and reused).
Each run times ``gallery.cohorts.domain_status`` under the shipped rule with fresh templates,
as after an enrolment (every write moves the store's generation, so nothing is cached): the
replica's people, 50 of them every k-th by id, their templates from the in-memory replica, and
the median of their 1,225 distances. Prints the median and p95 time and the status.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_identify import build_home, refresh_home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "gallery-bench")
    args = parser.parse_args()

    from gallery.cohorts import PersonTemplates, domain_status
    from gallery.decision import default_rule
    from gallery.store import Store
    from gallery.vision.pipeline import FacePipeline

    rule, model_id = default_rule(), FacePipeline().model_id
    print(f"load average {os.getloadavg()[0]:.1f}")
    for size in (int(s) for s in args.sizes.split(",")):
        home = args.work / f"size-{size}"  # bench_identify's homes, shared
        if (home / "complete").exists():
            refresh_home(home, size)
        else:
            build_home(home, size)
        with Store.open(home, model=model_id) as store:
            times, status = [], None
            for _ in range(args.runs):
                started = time.perf_counter()
                status = domain_status(store, PersonTemplates(store), rule)
                times.append(time.perf_counter() - started)
        ms = 1000 * np.array(times)
        print(f"{size} people: median {np.median(ms):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms; {status}")


if __name__ == "__main__":
    main()
