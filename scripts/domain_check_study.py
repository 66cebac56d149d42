"""How often the domain check calls a gallery crowded, in LFW's domain and out of it, and what it is worth there.

    nice -n 10 python scripts/domain_check_study.py /tmp/lfw_view1_flip.npz --splits 20
    nice -n 10 python scripts/domain_check_study.py /tmp/lfw_view1_flip.npz --splits 5 \\
        --others /tmp/att_orl.npz /tmp/yaleb.npz /tmp/lfw_gray.npz /tmp/lfw_small_gray.npz
    nice -n 10 python scripts/domain_check_study.py /tmp/lfw_view1_flip.npz --splits 20 --decide

Each split halves LFW's identities (``split_identities``) and learns the check's limits on one
half (``learn_domain_check``, as ``calibrate`` does). Without ``--others``: galleries of one
photo each of the other half's people, flagged share by size (the check's false alarms; 5% by
design). With ``--others``: also a rule on that half (P99 clustered margin, verify's threshold
at FMR 0.1%) and, per set, galleries of one photo each (``simulate``), flagged share and the
stranger rate among flagged and unflagged galleries, and the stranger and miss rates with the
crowded galleries' distances read as identify reads them (scaled) and as they are. With
``--decide``: what that scale costs in LFW's own domain, the rule as shipped learned on one half
and held-out galleries of the other's people (``calibration_study``'s trials per size): the 95th
percentile of FPIR and the median FNIR over splits, scaled and not. A set whose name starts with ``lfw`` is
LFW's photos processed otherwise (``scripts/degraded_copy.py``): only the held-out half's people
are drawn from it. Embeddings from ``scripts/embed_dataset.py``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from gallery.calibration.domain import gallery_spreads, learn_domain_check, search_scales
from gallery.calibration.fit import (
    calibrate,
    calibrate_verify,
    calibration_sizes,
    strangers_per_trial,
    trials_for_size,
)
from gallery.calibration.margin import CLUSTERED_MARGIN
from gallery.calibration.metrics import open_set_rates
from gallery.calibration.protocol import Searches, simulate, split_identities
from gallery.decision import NormalisedDistance

IN_DOMAIN_SIZES = (2, 3, 5, 8, 13, 20, 50)
OTHER_SIZES = (2, 3, 5, 8, 13, 20)
DECIDE_SIZES = (2, 3, 5, 8, 13, 20, 50, 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lfw", type=Path)
    parser.add_argument("--others", type=Path, nargs="*", default=[])
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--galleries", type=int, default=500, help="galleries per size and split (default 500)")
    parser.add_argument("--decide", action="store_true", help="the scale's cost in LFW's own domain")
    args = parser.parse_args()
    data = np.load(args.lfw)
    embeddings, labels = data["embeddings"].astype(np.float64), data["labels"]
    print(f"load average {os.getloadavg()[0]:.1f}")
    if args.decide:
        decide(embeddings, labels, args)
    elif args.others:
        out_of_domain(embeddings, labels, args)
    else:
        in_domain(embeddings, labels, args)


def in_domain(embeddings: np.ndarray, labels: np.ndarray, args: argparse.Namespace) -> None:
    flagged: dict[int, list[float]] = {size: [] for size in IN_DOMAIN_SIZES}
    for split in range(args.splits):
        first, second = split_identities(labels, seed=split)
        check = learn_domain_check(embeddings[first], labels[first], calibration_sizes(len(labels)), seed=split)
        assert check is not None
        rng = np.random.default_rng(10_000 + split)
        for size in IN_DOMAIN_SIZES:
            spreads = gallery_spreads(embeddings[second], labels[second], size, args.galleries, rng)
            flagged[size].append(float(np.mean(spreads < check.limit(size))))
    print("\n| people | flagged, pooled | median | 95th percentile | max |\n|---|---|---|---|---|")
    for size, shares in flagged.items():
        v = 100 * np.array(shares)
        print(f"| {size} | {v.mean():.2f}% | {np.median(v):.2f}% | {np.percentile(v, 95):.2f}% | {v.max():.2f}% |")


def accepted(rule: NormalisedDistance, verify: float, searches: Searches, scaled: bool) -> np.ndarray:
    """identify's matches (the verify cap on raw distances), the rule reading crowded galleries scaled or not."""
    factor = search_scales(rule, searches.spread, searches.gallery_size)[:, None] if scaled else 1.0
    chosen = rule.accepts(searches.distances * factor, searches.cohort * factor, searches.gallery_size)
    return chosen & (searches.distances[:, 0] <= verify)


def decide(embeddings: np.ndarray, labels: np.ndarray, args: argparse.Namespace) -> None:
    cells: dict[tuple[int, bool], list[tuple[float, float]]] = {}
    for split in range(args.splits):
        started = time.time()
        first, second = split_identities(labels, seed=split)
        rule = calibrate(embeddings[first], labels[first], margin=CLUSTERED_MARGIN, seed=1000 * split).rule
        verify = calibrate_verify(embeddings[first], labels[first]).threshold
        counts = np.unique(labels[second], return_counts=True)[1]
        largest = round((counts >= 2).sum() / 2) + round((counts < 2).sum() / 2)
        for size in DECIDE_SIZES:
            trials = trials_for_size(size, largest)
            searches = simulate(
                embeddings[second],
                labels[second],
                trials=trials,
                gallery_size=size,
                seed=1000 * split + 700 + size,
                strangers_per_trial=strangers_per_trial(trials, 0.01),
            )
            for scaled in (False, True):
                chosen = accepted(rule, verify, searches, scaled)
                cells.setdefault((size, scaled), []).append(open_set_rates(chosen, searches.correct, searches.mated))
        print(f"split {split}: {time.time() - started:.0f} s", flush=True)
    print("\n| people | p95 FPIR, as is | p95 FPIR, scaled | median FNIR, as is | median FNIR, scaled |")
    print("|---|---|---|---|---|")
    for size in DECIDE_SIZES:
        plain, scaled = (100 * np.array(cells[(size, s)]) for s in (False, True))
        print(
            f"| {size} | {np.percentile(plain[:, 0], 95):.3f}% | {np.percentile(scaled[:, 0], 95):.3f}% | "
            f"{np.median(plain[:, 1]):.2f}% | {np.median(scaled[:, 1]):.2f}% |"
        )


def out_of_domain(embeddings: np.ndarray, labels: np.ndarray, args: argparse.Namespace) -> None:
    sets = {path.stem: np.load(path) for path in [args.lfw, *args.others]}
    # Per gallery: crowded, then strangers accepted and mated searches missed, as is and scaled, and the totals.
    rows: dict[tuple[str, int], list[tuple[int, ...]]] = {}
    for split in range(args.splits):
        started = time.time()
        first, _ = split_identities(labels, seed=split)
        rule = calibrate(embeddings[first], labels[first], margin=CLUSTERED_MARGIN, seed=1000 * split).rule
        verify = calibrate_verify(embeddings[first], labels[first]).threshold
        check = rule.domain
        assert check is not None
        calibration_people = set(labels[first].tolist())
        for name, other in sets.items():
            keep = np.array([label not in calibration_people for label in other["labels"].tolist()])
            if not name.startswith("lfw"):
                keep[:] = True
            faces, people = other["embeddings"][keep].astype(np.float64), other["labels"][keep]
            for size in OTHER_SIZES:
                if 2 * size > len(np.unique(people)):
                    continue
                for g in range(args.galleries):
                    seed = 100_000 * split + 1000 * size + g
                    searches = simulate(faces, people, trials=1, gallery_size=size, seed=seed, strangers_per_trial=400)
                    strangers, mated = ~searches.mated, searches.mated
                    counts = [int(searches.spread[0] < check.limit(size))]
                    for scaled in (False, True):
                        chosen = accepted(rule, verify, searches, scaled)
                        right = chosen & searches.correct
                        counts += [int((chosen & strangers).sum()), int((mated & ~right).sum())]
                    rows.setdefault((name, size), []).append((*counts, int(strangers.sum()), int(mated.sum())))
        print(f"split {split}: {time.time() - started:.0f} s", flush=True)
    print(
        "\n| set | people | flagged | FPIR, flagged | FPIR, unflagged | FPIR (FNIR), as is | FPIR (FNIR), scaled |"
        "\n|---|---|---|---|---|---|---|"
    )
    for (name, size), found in rows.items():
        table = np.array(found)
        crowded = table[:, 0] > 0
        everyone = np.ones(len(table), bool)

        def rate(mask: np.ndarray, column: int, total: int, table: np.ndarray = table) -> str:
            return f"{100 * table[mask, column].sum() / max(table[mask, total].sum(), 1):.2f}%" if mask.any() else "-"

        print(
            f"| {name} | {size} | {100 * crowded.mean():.1f}% | {rate(crowded, 1, 5)} | {rate(~crowded, 1, 5)} | "
            f"{rate(everyone, 1, 5)} ({rate(everyone, 2, 6)}) | {rate(everyone, 3, 5)} ({rate(everyone, 4, 6)}) |"
        )


if __name__ == "__main__":
    main()
