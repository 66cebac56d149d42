"""The shipped rules on other labelled photos, by gallery size: strangers accepted and people missed.

    nice -n 10 python scripts/embed_dataset.py ../shared/datasets/att_orl /tmp/att_orl.npz
    nice -n 10 python scripts/stranger_rate_by_size.py /tmp/att_orl.npz --sizes 1 2 3 5 8 13 20

For each set (``scripts/embed_dataset.py``'s output) and gallery size: ``--trials`` galleries of
one random photo per enrolled person, searched with every photo of the people left out
(strangers) and with the enrolled people's other photos (``gallery.calibration.protocol.simulate``),
decided by the shipped identify rule alone and as identify applies it, with verify's threshold
(``within_verify``; one photo each, so a candidate's distance is verify's distance). The rule was
learned on LFW View 1: on other photos nothing promises its rate, which is what this measures.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from gallery.calibration.metrics import open_set_rates
from gallery.calibration.protocol import simulate
from gallery.decision import default_rule, default_verify_threshold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("npz", type=Path, nargs="+")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 3, 5, 8, 13, 20])
    parser.add_argument("--trials", type=int, default=300, help="galleries drawn per size (default 300)")
    args = parser.parse_args()
    rule, verify = default_rule(), default_verify_threshold()
    print(f"shipped rule, verify threshold {verify:.3f}; load average {os.getloadavg()[0]:.1f}")
    print("\n| set | decided by | " + " | ".join(f"{s} people" for s in args.sizes) + " |")
    print("|---|---|" + "---|" * len(args.sizes))
    for path in args.npz:
        data = np.load(path)
        embeddings, labels = data["embeddings"].astype(np.float64), data["labels"]
        people = len(np.unique(labels))
        cells: dict[str, list[str]] = {"the rule alone": [], "the rule within verify's threshold": []}
        for size in args.sizes:
            if 2 * size > people:
                for row in cells.values():
                    row.append("")
                continue
            searches = simulate(embeddings, labels, trials=args.trials, gallery_size=size, seed=size)
            accepted = rule.accepts(searches.distances, searches.cohort, searches.gallery_size)
            for name, chosen in (
                ("the rule alone", accepted),
                ("the rule within verify's threshold", accepted & (searches.distances[:, 0] <= verify)),
            ):
                fpir, fnir = open_set_rates(chosen, searches.correct, searches.mated)
                cells[name].append(f"{100 * fpir:.2f}% ({100 * fnir:.1f}%)")
        for name, row in cells.items():
            print(f"| {path.stem} | {name} | " + " | ".join(row) + " |")
    print("\nFPIR (FNIR in brackets), over every stranger and mated search of the galleries drawn.")


if __name__ == "__main__":
    main()
