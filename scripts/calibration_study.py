"""Which decision rule wins on held-out identities, and does it stay honest as the gallery size changes.

Splits the labelled embeddings by identity into a calibration half and a held-out half (several
random splits), calibrates each rule variant on the first for the target FPIR (as
``gallery.calibration.calibrate`` does) and measures it on the second: one-shot galleries
enrolling half the held-out identities, the other half strangers. Beside each rule's held-out
FNIR stands the best single distance threshold's FNIR at the FPIR that rule achieved, that
threshold set on the held-out half itself (an oracle no deployment has). Then, for the first
target, FPIR and FNIR of a few rules on held-out galleries of many sizes, over the same splits.

    nice -n 10 python scripts/embed_dataset.py ../shared/datasets/lfw_view1 /tmp/lfw_view1_flip.npz
    nice -n 10 python scripts/calibration_study.py /tmp/lfw_view1_flip.npz --json study.json

The embeddings file comes from scripts/embed_dataset.py (arrays ``embeddings`` and ``labels``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gallery.calibration.evaluate import apply_rule
from gallery.calibration.fit import (
    STRENGTHS,
    fit_rule,
    simulate_sizes,
    strangers_per_trial,
    trials_for_size,
    typical_impostor_distance,
)
from gallery.calibration.metrics import fnir_at_fpir, open_set_rates
from gallery.calibration.protocol import Searches, simulate, split_identities
from gallery.decision import DLIB_DISTANCE_THRESHOLD, ConfidenceCurve, NormalisedDistance

# name: (runner-up exponent, cohort exponent, strengths tried per size); None marks fixed distances.
VARIANTS = {
    "dlib 0.6 (fixed)": None,
    "one distance threshold": None,
    "distance, size-aware threshold": (0.5, 0.5, (0.0,)),
    "ratio d1/d2": (1.0, 0.0, (1.0,)),
    "cohort d1/c1": (0.0, 1.0, (1.0,)),
    "d1/sqrt(d2*c1)": (0.5, 0.5, (1.0,)),
    "d1/sqrt(d2*c1)^s, s by size (shipped)": (0.5, 0.5, STRENGTHS),
}
CHOSEN = "d1/sqrt(d2*c1)^s, s by size (shipped)"
EXTRAPOLATED = "shipped kind, calibrated on galleries <= 50 only"
# Held-out gallery sizes of the size study (and the largest the held-out half allows); 10, 100
# and 400 fall between the calibration's sizes, so the rule's interpolation is tested too.
STUDY_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 400)
SIZE_RULES = ("dlib 0.6 (fixed)", "one distance threshold", "distance, size-aware threshold", CHOSEN, EXTRAPOLATED)
FLAT = ConfidenceCurve((0.0,), (0.5,))


def fixed_distance(threshold: float) -> NormalisedDistance:
    """A plain distance threshold, the same at every gallery size, as a NormalisedDistance."""
    return NormalisedDistance(sizes=(1,), thresholds=(threshold,), strengths=(0.0,), reference=1.0, confidence=FLAT)


def rates(rule: NormalisedDistance, searches: Searches) -> tuple[float, float]:
    return open_set_rates(
        rule.accepts(searches.distances, searches.cohort, searches.gallery_size), searches.correct, searches.mated
    )


def calibrate_variants(by_size: list[Searches], reference: float, target: float) -> dict[str, NormalisedDistance]:
    full = by_size[-1]
    one = -fnir_at_fpir(-full.distances[:, 0], full.correct, full.mated, target).threshold
    rules = {"dlib 0.6 (fixed)": fixed_distance(DLIB_DISTANCE_THRESHOLD), "one distance threshold": fixed_distance(one)}
    for name, shape in VARIANTS.items():
        if shape is not None:
            a, b, strengths = shape
            rules[name] = fit_rule(
                by_size,
                reference=reference,
                target_fpir=target,
                strengths=strengths,
                runner_up_exponent=a,
                cohort_exponent=b,
            )
    return rules


def held_out_at(
    embeddings: np.ndarray, labels: np.ndarray, size: int | None, largest: int, target: float, seed: int
) -> Searches:
    trials = trials_for_size(size, largest) if size else 10
    return simulate(
        embeddings,
        labels,
        trials=trials,
        gallery_size=size,
        seed=seed,
        strangers_per_trial=strangers_per_trial(trials, target) if size else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("embeddings", type=Path)
    parser.add_argument("--splits", type=int, default=10, help="random identity splits (default 10)")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.01, 0.003])
    parser.add_argument("--json", type=Path, help="write every number here too")
    args = parser.parse_args()
    data = np.load(args.embeddings)
    embeddings, labels = data["embeddings"].astype(np.float64), data["labels"]
    model = str(data["model"]) if "model" in data else "(not recorded)"
    print(
        f"{args.embeddings}: {len(labels)} photos, {len(np.unique(labels))} identities, model {model}; "
        f"{args.splits} identity splits; load average {os.getloadavg()[0]:.2f}"
    )
    report: dict = {
        "embeddings": str(args.embeddings),
        "model": model,
        "photos": len(labels),
        "identities": len(np.unique(labels)),
        "splits": args.splits,
        "variants": {},
    }
    started = time.time()
    for number, target in enumerate(args.targets):
        rows: dict[str, list[tuple[float, ...]]] = {name: [] for name in VARIANTS}
        by_gallery_size: dict[str, list[list[tuple[float, float]]]] = {name: [] for name in SIZE_RULES}
        searches_per_size: list[tuple[tuple[int, int, int], ...]] = []  # per split, per size: (size, mated, strangers)
        for split in range(args.splits):
            calibration, held_out = split_identities(labels, seed=split)
            by_size = simulate_sizes(
                embeddings[calibration], labels[calibration], target_fpir=target, seed=1000 * split
            )
            reference = typical_impostor_distance(embeddings[calibration], labels[calibration], seed=split)
            rules = calibrate_variants(by_size, reference, target)
            test = held_out_at(embeddings[held_out], labels[held_out], None, 0, target, seed=1000 * split + 500)
            for name, rule in rules.items():
                fpir, fnir = rates(rule, test)
                # The best single distance threshold on the held-out half at the FPIR this rule achieved.
                oracle = fnir_at_fpir(-test.distances[:, 0], test.correct, test.mated, max(fpir, 1e-9)).fnir
                rows[name].append((rates(rule, by_size[-1])[1], fpir, fnir, oracle))
            if split == 0:
                check_decide_path(rules[CHOSEN], test, target, report)
            if number == 0:
                small = simulate_sizes(
                    embeddings[calibration],
                    labels[calibration],
                    target_fpir=target,
                    seed=1000 * split,
                    largest_gallery=50,
                )
                rules[EXTRAPOLATED] = fit_rule(small, reference=reference, target_fpir=target)
                largest = int(test.gallery_size[0])
                sizes = [s for s in STUDY_SIZES if s < largest] + [largest]
                tests = [
                    held_out_at(embeddings[held_out], labels[held_out], s, largest, target, seed=1000 * split + 700 + s)
                    for s in sizes
                ]
                searches_per_size.append(
                    tuple((int(t.gallery_size[0]), int(t.mated.sum()), int((~t.mated).sum())) for t in tests)
                )
                for name in SIZE_RULES:
                    by_gallery_size[name].append([rates(rules[name], t) for t in tests])
        print_held_out(target, args.splits, rows, test, time.time() - started)
        report["variants"][str(target)] = {
            name: {
                "calibration_fnir": v[:, 0].tolist(),
                "held_out_fpir": v[:, 1].tolist(),
                "held_out_fnir": v[:, 2].tolist(),
                "best_distance_fnir_same_fpir": v[:, 3].tolist(),
            }
            for name, v in ((name, np.array(values)) for name, values in rows.items())
        }
        if number == 0:
            report["sizes"] = print_sizes(target, by_gallery_size, np.array(searches_per_size))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print(f"\n[{time.time() - started:.0f} s; load average now {os.getloadavg()[0]:.2f}]")


def check_decide_path(chosen: NormalisedDistance, test: Searches, target: float, report: dict) -> None:
    """The vectorised rates equal those of ``decide`` (what identify runs); note how often it says ambiguous."""
    outcomes, _ = apply_rule(chosen, test)
    fast = rates(chosen, test)
    slow = open_set_rates(outcomes == "match", test.correct, test.mated)
    assert np.isclose(fast[0], slow[0]), (fast, slow)
    report.setdefault("strengths", {})[str(target)] = dict(zip(chosen.sizes, chosen.strengths, strict=True))
    report.setdefault("ambiguous", {})[str(target)] = {
        "mated": float((outcomes[test.mated] == "ambiguous").mean()),
        "strangers": float((outcomes[~test.mated] == "ambiguous").mean()),
    }


def spread(values: np.ndarray, digits: int) -> str:
    """mean [min-max]"""
    return f"{values.mean():.{digits}f} [{values.min():.{digits}f}-{values.max():.{digits}f}]"


def print_held_out(
    target: float, splits: int, rows: dict[str, list[tuple[float, ...]]], test: Searches, elapsed: float
) -> None:
    print(f"\n## Target FPIR {target:g}: rules calibrated on half the identities, measured on the other half")
    print(
        f"\n{splits} identity splits; held-out galleries of {int(test.gallery_size[0])} people, one photo each "
        f"(split {splits - 1}: {int(test.mated.sum())} mated and {int((~test.mated).sum())} stranger searches); "
        f"mean [min-max] over the splits. Oracle: the best single distance threshold set on the held-out "
        f"half itself, at the FPIR the rule achieved. [{elapsed:.0f} s]\n"
    )
    print("| rule | held-out FPIR | held-out FNIR | oracle distance threshold FNIR at that FPIR | calibration FNIR |")
    print("|---|---|---|---|---|")
    for name, values in rows.items():
        v = np.array(values)
        print(f"| {name} | {spread(v[:, 1], 4)} | {spread(v[:, 2], 3)} | {spread(v[:, 3], 3)} | {v[:, 0].mean():.3f} |")
    shipped, distance = np.array(rows[CHOSEN]), np.array(rows["one distance threshold"])
    print(
        f"\nper split: held-out FPIR / FNIR of {CHOSEN}; of one distance threshold (set on the calibration "
        "half); oracle distance threshold FNIR at the shipped kind's FPIR"
    )
    for split in range(splits):
        print(
            f"  split {split}: {shipped[split, 1]:.4f} / {shipped[split, 2]:.3f};  {distance[split, 1]:.4f} / "
            f"{distance[split, 2]:.3f};  oracle {shipped[split, 3]:.3f}"
        )


def print_sizes(
    target: float, by_gallery_size: dict[str, list[list[tuple[float, float]]]], searches: np.ndarray
) -> dict:
    """Tables of FPIR and FNIR by held-out gallery size (columns), mean over splits."""
    sizes = searches[0, :, 0]
    largest = f"{sizes[-1]}" if (searches[:, -1, 0] == sizes[-1]).all() else f"{searches[:, -1, 0].mean():.0f}"
    names = [str(s) for s in sizes[:-1]] + [largest]
    print(
        f"\n## Target FPIR {target:g}: held-out FPIR and FNIR by gallery size (people enrolled), "
        f"mean over {len(searches)} splits\n"
    )
    print(
        "searches in split 0 (mated / strangers): "
        + ", ".join(f"{n}: {m} / {s}" for n, m, s in zip(names, searches[0, :, 1], searches[0, :, 2], strict=True))
    )
    report: dict = {"sizes": names, "searches": searches.tolist()}
    for what, column in (("FPIR", 0), ("FNIR", 1)):
        print(f"\n| {what} | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for name, per_split in by_gallery_size.items():
            values = np.array(per_split)[:, :, column]  # (splits, sizes)
            print(
                f"| {name} | "
                + " | ".join(f"{v:.4f}" if column == 0 else f"{v:.3f}" for v in values.mean(axis=0))
                + " |"
            )
            report.setdefault(name, {})[what.lower()] = values.tolist()
    shipped = np.array(by_gallery_size[CHOSEN])[:, :, 0]
    ranges = zip(names, shipped.min(axis=0), shipped.max(axis=0), strict=True)
    print(f"\n{CHOSEN}, FPIR range over splits: " + ", ".join(f"{n}: {lo:.4f}-{hi:.4f}" for n, lo, hi in ranges))
    return report


if __name__ == "__main__":
    main()
