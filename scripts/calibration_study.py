"""Which decision rule wins on held-out identities, and does it stay honest as the gallery size changes.

Splits the labelled embeddings by identity into a calibration half and a held-out half (several
random splits), calibrates each rule variant on the first for the target FPIR and measures it on
the second: one-shot galleries of the largest size the half allows, half its identities enrolled.
Then, on the first split, measures FPIR and FNIR across gallery sizes.

    python scripts/calibration_study.py /tmp/lfw_view1_embeddings.npz --json study.json

The embeddings file comes from scripts/lfw_embeddings.py (arrays ``embeddings`` and ``labels``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gallery.calibration.confidence import ConfidenceCurve  # noqa: E402
from gallery.calibration.evaluate import apply_rule  # noqa: E402
from gallery.calibration.fit import (  # noqa: E402
    STRENGTHS,
    strangers_per_trial,
    trials_for_size,
    fit_rule,
    simulate_sizes,
    typical_impostor_distance,
)
from gallery.calibration.metrics import fnir_at_fpir, open_set_rates  # noqa: E402
from gallery.calibration.protocol import Searches, simulate, split_identities  # noqa: E402
from gallery.calibration.rules import NormalisedDistance  # noqa: E402

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
STUDY_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 400)
FLAT = ConfidenceCurve((0.0,), (0.5,))


def fixed_distance(threshold: float) -> NormalisedDistance:
    """A plain distance threshold, the same at every gallery size, as a NormalisedDistance."""
    return NormalisedDistance(sizes=(1,), thresholds=(threshold,), strengths=(0.0,), reference=1.0, confidence=FLAT)


def rates(rule: NormalisedDistance, searches: Searches) -> tuple[float, float]:
    return open_set_rates(rule.accepts(searches.distances, searches.cohort, searches.gallery_size),
                          searches.correct, searches.mated)


def calibrate_variants(by_size: list[Searches], reference: float, target: float) -> dict[str, NormalisedDistance]:
    full = by_size[-1]
    one = -fnir_at_fpir(-full.distances[:, 0], full.correct, full.mated, target).threshold
    rules = {"dlib 0.6 (fixed)": fixed_distance(0.6), "one distance threshold": fixed_distance(one)}
    for name, shape in VARIANTS.items():
        if shape is not None:
            a, b, strengths = shape
            rules[name] = fit_rule(by_size, reference=reference, target_fpir=target, strengths=strengths,
                                   runner_up_exponent=a, cohort_exponent=b)
    return rules


def held_out_at(embeddings: np.ndarray, labels: np.ndarray, size: int | None, largest: int, target: float,
                seed: int) -> Searches:
    trials = trials_for_size(size, largest) if size else 10
    return simulate(embeddings, labels, trials=trials, gallery_size=size, seed=seed,
                    strangers_per_trial=strangers_per_trial(trials, target) if size else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("embeddings", type=Path)
    parser.add_argument("--splits", type=int, default=5, help="random identity splits (default 5)")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.01, 0.003])
    parser.add_argument("--json", type=Path, help="write every number here too")
    args = parser.parse_args()
    data = np.load(args.embeddings)
    embeddings, labels = data["embeddings"].astype(np.float64), data["labels"]
    print(f"{len(labels)} photos, {len(np.unique(labels))} identities, {args.splits} identity splits")
    report: dict = {"photos": len(labels), "identities": int(len(np.unique(labels))), "splits": args.splits,
                    "variants": {}, "sizes": {}}
    started = time.time()
    for target in args.targets if args.splits else ():
        rows: dict[str, list[tuple[float, ...]]] = {name: [] for name in VARIANTS}
        for split in range(args.splits):
            calibration, held_out = split_identities(labels, seed=split)
            by_size = simulate_sizes(embeddings[calibration], labels[calibration], target_fpir=target, seed=1000 * split)
            reference = typical_impostor_distance(embeddings[calibration], labels[calibration], seed=split)
            rules = calibrate_variants(by_size, reference, target)
            test = held_out_at(embeddings[held_out], labels[held_out], None, 0, target, seed=1000 * split + 500)
            for name, rule in rules.items():
                fpir, fnir = rates(rule, test)
                # The best single distance threshold on the held-out half at the FPIR this rule achieved.
                oracle = fnir_at_fpir(-test.distances[:, 0], test.correct, test.mated, max(fpir, 1e-9)).fnir
                cal_fpir, cal_fnir = rates(rule, by_size[-1])
                rows[name].append((cal_fnir, fpir, fnir, oracle))
            if split == 0:
                chosen = rules[CHOSEN]
                report.setdefault("strengths", {})[str(target)] = dict(zip(chosen.sizes, chosen.strengths, strict=True))
                outcomes, matched = apply_rule(chosen, test)  # the decide() path identify uses
                fast = rates(chosen, test)
                slow = open_set_rates(outcomes == "match", test.correct, test.mated)
                assert np.isclose(fast[0], slow[0]), (fast, slow)
                report.setdefault("ambiguous", {})[str(target)] = {
                    "mated": float((outcomes[test.mated] == "ambiguous").mean()),
                    "strangers": float((outcomes[~test.mated] == "ambiguous").mean())}
        print(f"\n## target FPIR {target:g}: held-out mean (std) over {args.splits} splits "
              f"[{time.time() - started:.0f} s]")
        print("| rule | calibration FNIR | held-out FPIR | held-out FNIR | best distance threshold FNIR at that FPIR |")
        print("|---|---|---|---|---|")
        report["variants"][str(target)] = {}
        for name, values in rows.items():
            v = np.array(values)
            mean, std = v.mean(axis=0), v.std(axis=0)
            print(f"| {name} | {mean[0]:.3f} | {mean[1]:.4f} ({std[1]:.4f}) | {mean[2]:.3f} ({std[2]:.3f}) "
                  f"| {mean[3]:.3f} |")
            report["variants"][str(target)][name] = {
                "calibration_fnir": v[:, 0].tolist(), "held_out_fpir": v[:, 1].tolist(),
                "held_out_fnir": v[:, 2].tolist(), "best_distance_fnir_same_fpir": v[:, 3].tolist()}
        shipped, distance = np.array(rows[CHOSEN]), np.array(rows["one distance threshold"])
        print(f"\nper split, {CHOSEN} vs one distance threshold (held-out FPIR / FNIR):")
        for split in range(args.splits):
            print(f"  split {split}: {shipped[split, 1]:.4f} / {shipped[split, 2]:.3f}   vs   "
                  f"{distance[split, 1]:.4f} / {distance[split, 2]:.3f}; best distance threshold at "
                  f"{shipped[split, 1]:.4f}: FNIR {shipped[split, 3]:.3f}")

    target = args.targets[0]
    calibration, held_out = split_identities(labels, seed=0)
    by_size = simulate_sizes(embeddings[calibration], labels[calibration], target_fpir=target, seed=0)
    reference = typical_impostor_distance(embeddings[calibration], labels[calibration], seed=0)
    rules = calibrate_variants(by_size, reference, target)
    small = simulate_sizes(embeddings[calibration], labels[calibration], target_fpir=target, seed=0, largest_gallery=50)
    study = {name: rules[name] for name in ("one distance threshold", "distance, size-aware threshold",
                                            "d1/sqrt(d2*c1)", CHOSEN)}
    study["shipped kind, calibrated on galleries <= 50 only"] = fit_rule(small, reference=reference, target_fpir=target)
    largest = int(by_size[-1].gallery_size[0])
    sizes = [s for s in STUDY_SIZES if s < largest] + [None]
    print(f"\n## gallery size (split 0, target FPIR {target:g}): held-out FPIR / FNIR per number of people enrolled")
    tests = {s: held_out_at(embeddings[held_out], labels[held_out], s, largest, target, seed=77) for s in sizes}
    names = [int(t.gallery_size[0]) for t in tests.values()]
    print("| rule | " + " | ".join(str(n) for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for name, rule in study.items():
        cells = [rates(rule, test) for test in tests.values()]
        print(f"| {name} | " + " | ".join(f"{fp:.4f} / {fn:.3f}" for fp, fn in cells) + " |")
        report["sizes"][name] = {str(n): {"fpir": fp, "fnir": fn} for n, (fp, fn) in zip(names, cells, strict=True)}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print(f"\n[{time.time() - started:.0f} s]")


if __name__ == "__main__":
    main()
