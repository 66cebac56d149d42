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

With ``--photos`` it studies the shipped kind of rule instead, as calibrate learns it (margin,
within-person variance, confidence bands), on held-out galleries of up to k photos per person
for each k given (a person keeps one photo back as a probe) and of exactly k for each k of
``--exact`` (only people with that many photos enrolled): the 95th percentile over splits of the
held-out FPIR at each gallery size, the median FNIR, and the reliability of the confidence:

    nice -n 10 python scripts/calibration_study.py /tmp/lfw_view1_flip.npz --photos 1,3,10 --exact 3,5 --splits 20

The embeddings file comes from scripts/embed_dataset.py (arrays ``embeddings`` and ``labels``).
"""

from __future__ import annotations

import argparse
import itertools
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
    calibrate_verify,
    fit_rule,
    simulate_sizes,
    strangers_per_trial,
    trials_for_size,
    typical_impostor_distance,
)
from gallery.calibration.margin import CLUSTERED_MARGIN, UNIFORM_MARGIN
from gallery.calibration.metrics import fnir_at_fpir, open_set_rates
from gallery.calibration.protocol import Searches, simulate, split_identities
from gallery.decision import DLIB_DISTANCE_THRESHOLD, ConfidenceCurve, NormalisedDistance
from gallery.decision.templates import within_variance

# name: (runner-up exponent, cohort exponent, strengths tried per size); None marks fixed distances.
VARIANTS = {
    "dlib 0.6 (fixed)": None,
    "one distance threshold": None,
    "distance, size-aware threshold": (0.5, 0.5, (0.0,)),
    "ratio d1/d2": (1.0, 0.0, (1.0,)),
    "cohort d1/c1": (0.0, 1.0, (1.0,)),
    "d1/sqrt(d2*c1)": (0.5, 0.5, (1.0,)),
    "d1/sqrt(d2*c1)^s, s by size (shipped kind, point estimate)": (0.5, 0.5, STRENGTHS),
}
CHOSEN = "d1/sqrt(d2*c1)^s, s by size (shipped kind, point estimate)"
EXTRAPOLATED = "shipped kind, calibrated on galleries <= 50 only"
# Held-out gallery sizes of the size study (and the largest the held-out half allows); 10, 100
# and 400 fall between the calibration's sizes, so the rule's interpolation is tested too.
STUDY_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 400)
SIZE_RULES = ("dlib 0.6 (fixed)", "one distance threshold", "distance, size-aware threshold", CHOSEN, EXTRAPOLATED)
FLAT = ConfidenceCurve((0.0,), (0.5,))


def fixed_distance(threshold: float) -> NormalisedDistance:
    """A plain distance threshold, the same at every gallery size, as a NormalisedDistance."""
    return NormalisedDistance(sizes=(1,), thresholds=(threshold,), strengths=(0.0,), reference=1.0, confidence=FLAT)


def rates(rule: NormalisedDistance, searches: Searches, verify: float | None = None) -> tuple[float, float]:
    """(FPIR, FNIR); with ``verify``, a match must also lie within it (``within_verify``, one photo each)."""
    accepted = rule.accepts(searches.distances, searches.cohort, searches.gallery_size)
    if verify is not None:
        accepted &= searches.distances[:, 0] <= verify
    return open_set_rates(accepted, searches.correct, searches.mated)


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
    parser.add_argument("--photos", help="study photos per person instead: up to k each, e.g. 1,3,10")
    parser.add_argument("--exact", default="", help="with --photos: also exactly k each, e.g. 3,5")
    parser.add_argument("--summarize", type=Path, help="with --photos: print the tables of this --json file again")
    parser.add_argument(
        "--split-selection", action="store_true", help="with --photos: also strengths chosen on other galleries"
    )
    parser.add_argument("--uniform", action="store_true", help="with --photos: also the margin n/10 at every size")
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
    if args.photos and args.summarize:
        done = json.loads(args.summarize.read_text())
        photos = done["photos"]
        reliability = {key: np.array(table) for key, table in photos["reliability"].items()}
        names = list(dict.fromkeys(r["config"] for r in photos["rows"]))
        print_photos(photos["rows"], names, reliability, done["splits"], args.targets[0])
        return
    if args.photos:
        report["photos"] = photos_study(
            embeddings,
            labels,
            args.splits,
            args.targets[0],
            [(int(k), False) for k in args.photos.split(",")] + [(int(k), True) for k in args.exact.split(",") if k],
            args.split_selection,
            args.uniform,
        )
        if args.json:
            args.json.write_text(json.dumps(report, indent=1))
        print(f"\n[{time.time() - started:.0f} s; load average now {os.getloadavg()[0]:.2f}]")
        return
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


PHOTO_SIZES = (1, 5, 20, 100, 400)
VERIFIED = "margin + verify's threshold (shipped)"
# Confidence bins of the reliability table (predicted probability that a match is right).
BINS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 1.0001)


def photos_study(
    embeddings: np.ndarray,
    labels: np.ndarray,
    splits: int,
    target: float,
    configs: list[tuple[int, bool]],
    split_selection: bool = False,
    uniform: bool = False,
) -> dict:
    """Held-out FPIR / FNIR by gallery size and photos per person, with and without the margin; reliability."""
    names = [f"{'exactly' if exact else 'up to'} {k}" for k, exact in configs]
    rows: list[dict] = []
    reliability: dict[str, np.ndarray] = {}  # "config|band" -> (bins, 3): weight, weighted right, weighted confidence
    for split in range(splits):
        calibration, held_out = split_identities(labels, seed=split)
        cal_embeddings, cal_labels = embeddings[calibration], labels[calibration]
        by_size = simulate_sizes(cal_embeddings, cal_labels, target_fpir=target, seed=1000 * split)
        reference = typical_impostor_distance(cal_embeddings, cal_labels, seed=split)
        variance = within_variance(cal_embeddings, cal_labels)
        # identify's match must also pass verify's threshold (within_verify), learned as calibrate learns it.
        verify = calibrate_verify(cal_embeddings, cal_labels).threshold
        rules = {
            "margin (shipped)": fit_rule(by_size, reference=reference, target_fpir=target, margin=CLUSTERED_MARGIN),
            "point estimate": fit_rule(by_size, reference=reference, target_fpir=target),
        }
        if uniform:
            # The margin as shipped before the design effect: n/10 at every size.
            rules["margin n/10 everywhere"] = fit_rule(
                by_size, reference=reference, target_fpir=target, margin=UNIFORM_MARGIN
            )
        if split_selection:
            # Strengths chosen on other simulated galleries than those that set the thresholds.
            other = simulate_sizes(cal_embeddings, cal_labels, target_fpir=target, seed=1000 * split + 100)
            rules["margin, strength chosen apart"] = fit_rule(
                by_size,
                reference=reference,
                target_fpir=target,
                margin=CLUSTERED_MARGIN,
                selection=other,
            )
        held_embeddings, held_labels = embeddings[held_out], labels[held_out]
        _, counts = np.unique(held_labels, return_counts=True)
        for (k, exact), name in zip(configs, names, strict=True):
            if exact:
                largest = min(int((counts >= k).sum()), len(counts) // 2)
            else:
                largest = round((counts >= 2).sum() / 2) + round((counts < 2).sum() / 2)
            for size in [s for s in PHOTO_SIZES if s < largest] + [largest]:
                trials = trials_for_size(size, largest)
                test = simulate(
                    held_embeddings,
                    held_labels,
                    trials=trials,
                    gallery_size=size,
                    strangers_per_trial=strangers_per_trial(trials, target),
                    seed=1000 * split + 700 + size + 37 * k + exact,
                    photos=k,
                    exact=exact,
                    variance=variance,
                )
                for rule_name, rule in rules.items():
                    fpir, fnir = rates(rule, test)
                    rows.append(
                        {"split": split, "config": name, "size": size, "rule": rule_name, "fpir": fpir, "fnir": fnir}
                    )
                if k == 1:  # one photo each: the candidate's distance is verify's (nearest photo) distance
                    fpir, fnir = rates(rules["margin (shipped)"], test, verify)
                    rows.append(
                        {"split": split, "config": name, "size": size, "rule": VERIFIED, "fpir": fpir, "fnir": fnir}
                    )
                add_reliability(reliability, name, size, rules["margin (shipped)"], test)
        print(f"split {split} done", file=sys.stderr, flush=True)
    return print_photos(rows, names, reliability, splits, target)


def add_reliability(
    reliability: dict[str, np.ndarray], config: str, size: int, rule: NormalisedDistance, test: Searches
) -> None:
    """Bin the matches by announced confidence; strangers and mated searches weighted equally (calibrate's prior)."""
    accepted = rule.accepts(test.distances, test.cohort, test.gallery_size)
    confidence = rule.confidence_at(size)(rule.margins(test.distances, test.cohort, test.gallery_size))
    weight = np.where(test.mated, 0.5 / max(int(test.mated.sum()), 1), 0.5 / max(int((~test.mated).sum()), 1))
    right = test.mated & test.correct
    band = "1 person" if size == 1 else ("2-19 people" if size < 20 else ">= 20 people")
    table = reliability.setdefault(f"{config}|{band}", np.zeros((len(BINS) - 1, 4)))
    which = np.clip(np.searchsorted(BINS, confidence, side="right") - 1, 0, len(BINS) - 2)
    for b in range(len(BINS) - 1):
        chosen = accepted & (which == b)
        table[b] += [
            weight[chosen].sum(),
            weight[chosen & right].sum(),
            (weight * confidence)[chosen].sum(),
            chosen.sum(),
        ]


def print_photos(
    rows: list[dict], names: list[str], reliability: dict[str, np.ndarray], splits: int, target: float
) -> dict:
    print(
        f"\n## Photos per person: held-out FPIR p95 over {splits} splits by gallery size (median FNIR), "
        f"target {target:g}\n"
    )
    # The largest gallery a split's held-out half allows (people with k photos, for exactly k) varies: one column.
    for r in rows:
        r["column"] = str(r["size"]) if r["size"] in PHOTO_SIZES else "largest"
    sizes = [str(s) for s in PHOTO_SIZES if any(r["column"] == str(s) for r in rows)] + ["largest"]
    largest = {
        name: sorted({r["size"] for r in rows if r["config"] == name and r["column"] == "largest"}) for name in names
    }
    print("largest gallery per split: " + "; ".join(f"{n}: {v[0]}-{v[-1]}" for n, v in largest.items() if v) + "\n")
    print("| rule | photos per person | " + " | ".join(sizes) + " |")
    print("|---|---|" + "---|" * len(sizes))
    summary: dict = {"rows": rows, "table": {}}
    for rule in sorted({r["rule"] for r in rows}, key=lambda r: (r != "margin (shipped)", r)):
        for name in names:
            cells = []
            for size in sizes:
                chosen = [r for r in rows if r["rule"] == rule and r["config"] == name and r["column"] == size]
                if not chosen:
                    cells.append("")
                    continue
                fpir = np.array([r["fpir"] for r in chosen])
                fnir = np.array([r["fnir"] for r in chosen])
                p95 = float(np.percentile(fpir, 95))
                summary["table"][f"{rule}|{name}|{size}"] = {
                    "fpir_p95": p95,
                    "fpir_median": float(np.median(fpir)),
                    "fnir_median": float(np.nanmedian(fnir)),
                    "splits": len(chosen),
                }
                cells.append(f"{100 * p95:.2f}% ({100 * np.nanmedian(fnir):.1f}%)")
            print(f"| {rule} | {name} | " + " | ".join(cells) + " |")
    print(
        "\n## Reliability of the shipped kind's confidence: matches by announced confidence, "
        "predicted -> observed (matches)\n"
    )
    print(
        "| photos per person | gallery | "
        + " | ".join(f"{lo:g}-{min(hi, 1):g}" for lo, hi in itertools.pairwise(BINS))
        + " |"
    )
    print("|---|---|" + "---|" * (len(BINS) - 1))
    summary["reliability"] = {}
    for key, table in reliability.items():
        config, band = key.split("|")
        cells = [
            f"{t[2] / t[0]:.3f} -> {t[1] / t[0]:.3f} ({int(t[3])})"
            if t[3] >= 20
            else (f"({int(t[3])})" if t[3] else "")
            for t in table
        ]
        summary["reliability"][key] = table.tolist()
        print(f"| {config} | {band} | " + " | ".join(cells) + " |")
    return summary


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
