"""The enrolment lookalike check on held-out people: the old 1:1 question against identify's own (1:N).

    nice -n 10 python scripts/embed_dataset.py ../shared/datasets/lfw_view1 /tmp/lfw_view1_flip.npz
    nice -n 10 python scripts/lookalike_study.py /tmp/lfw_view1_flip.npz --splits 20

Per split (``split_identities``): the identify rule is calibrated on one identity half as
``gallery calibrate`` does (``gallery.calibration.fit.calibrate``, FPIR 1%); the verify threshold
is the shipped one (0.533). Galleries of N people, one random photo each, are drawn from ALL
the set's people (LFW View 1: 3,095, so N = 1,500 is reachable; the gallery overlaps the
calibration half, which flatters the 1:N rows slightly). Every other photo is then presented
for enrolment under a new name: a photo of a person not enrolled is a genuine newcomer (the
check should let it through), another photo of an enrolled person a true duplicate (it should
catch it). The 1:N check is the rule's own ``decide`` on the evidence identify gathers (each
enrolled person's distance, cohort distances of the nearest two, the gallery's size), as
``gallery.enrolment.IdentifyQuestion`` asks it; it fires on ``match`` or ``ambiguous``. The
review tier (``--review-fpir``, the rule's ``Review`` table, learned by the same calibration) asks
the same question at a higher stranger rate: a face it matches is enrolled with a warning, so its
rows count "refused, or warned" (a duplicate the desk is told about) and "warned only" (a genuine
newcomer's share is the operator's extra work).

Port of /work/research/study_enrol.py (which read rules cached by other studies) to the package's
own calibration, so the README's table is reproducible from the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gallery.calibration.fit import REVIEW_FPIR, calibrate
from gallery.calibration.protocol import pairwise_distances, split_identities
from gallery.decision import COHORT_SIZE, DecisionRule, Evidence, default_verify_threshold
from gallery.decision.normalised import NormalisedDistance

DEPTH = 3  # identities identify reads per face (gallery.gallery.EVIDENCE_DEPTH)


def one_gallery(
    embeddings: np.ndarray,
    codes: np.ndarray,
    people: int,
    size: int,
    rule: DecisionRule,
    reviews: dict[float, NormalisedDistance],
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """One gallery of ``size`` people (one random photo each); every other photo presented for enrolment."""
    enrolled_people = rng.choice(people, size, replace=False)
    enrolled_photos = np.array([rng.choice(np.flatnonzero(codes == p)) for p in enrolled_people])
    gallery = embeddings[enrolled_photos].astype(np.float64)
    between = pairwise_distances(gallery, gallery)
    np.fill_diagonal(between, np.inf)
    cohort = np.sort(between, axis=1)[:, :COHORT_SIZE].mean(axis=1) if size > 1 else np.full(size, np.nan)
    probes = np.setdiff1d(np.arange(len(codes)), enrolled_photos)
    distances = pairwise_distances(embeddings[probes].astype(np.float64), gallery)
    nearest = np.argsort(distances, axis=1)[:, :DEPTH]
    one_to_one = distances.min(axis=1) <= default_verify_threshold()
    match = np.zeros(len(probes), bool)
    ambiguous = np.zeros(len(probes), bool)
    flagged = {fpir: np.zeros(len(probes), bool) for fpir in reviews}
    for i, order in enumerate(nearest):
        evidence = [
            Evidence(int(j), float(distances[i, j]), float(cohort[j]) if rank < 2 and rule.uses_cohort else None)
            for rank, j in enumerate(order)
        ]
        outcome = rule.decide(evidence, size).outcome
        match[i], ambiguous[i] = outcome == "match", outcome == "ambiguous"
        for fpir, review in reviews.items():
            flagged[fpir][i] = review.decide(evidence, size).outcome in ("match", "ambiguous")
    refused = match | ambiguous
    return {
        "duplicate": np.isin(codes[probes], enrolled_people),
        "1:1 every face <= verify threshold (before)": one_to_one,
        "1:N rule in force: match": match,
        "1:N rule in force: match or ambiguous (shipped)": refused,
        **{f"refused, or warned at review FPIR {fpir:g}": refused | flagged[fpir] for fpir in reviews},
        **{f"warned only, at review FPIR {fpir:g}": flagged[fpir] & ~refused for fpir in reviews},
    }


@dataclass(frozen=True)
class Row:
    """One check on one gallery: the share of newcomers it refused and of duplicates it caught."""

    split: int
    size: int
    check: str
    newcomers_refused: float
    duplicates_caught: float
    newcomers: int
    duplicates: int


def spread(values: list[float]) -> str:
    v = 100 * np.asarray(values)
    return f"{np.median(v):.2f}% (p95 {np.percentile(v, 95):.2f}, {v.min():.2f}-{v.max():.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("npz", type=Path, help="scripts/embed_dataset.py's output")
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1500])
    parser.add_argument("--target-fpir", type=float, default=0.01)
    parser.add_argument(
        "--review-fpir", type=float, nargs="*", default=[REVIEW_FPIR], help="review tables to measure (warnings)"
    )
    parser.add_argument("--json", type=Path, help="write every split's rates here")
    args = parser.parse_args()
    data = np.load(args.npz)
    embeddings, labels = data["embeddings"], data["labels"]
    _, codes = np.unique(labels, return_inverse=True)
    people = int(codes.max()) + 1
    print(f"{len(labels)} photos, {people} people; {args.splits} splits; load average {os.getloadavg()[0]:.1f}")
    rows: list[Row] = []
    started = time.time()
    for split in range(args.splits):
        calibration, _ = split_identities(labels, seed=split)
        reviews: dict[float, NormalisedDistance] = {}
        for fpir in args.review_fpir:
            # The same seed each time: the rule itself is identical, only its review table differs.
            rule = calibrate(
                embeddings[calibration],
                labels[calibration],
                target_fpir=args.target_fpir,
                seed=1000 * split,
                review_fpir=fpir,
            ).rule
            review = rule.for_review()
            assert review is not None
            reviews[fpir] = review
        rng = np.random.default_rng(20_000 + split)
        for size in args.sizes:
            fired = one_gallery(embeddings, codes, people, size, rule, reviews, rng)
            duplicate = fired.pop("duplicate")
            for check, refuses in fired.items():
                rows.append(
                    Row(
                        split,
                        size,
                        check,
                        float(refuses[~duplicate].mean()),
                        float(refuses[duplicate].mean()),
                        int((~duplicate).sum()),
                        int(duplicate.sum()),
                    )
                )
        print(f"split {split + 1}/{args.splits}: {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows]))
    print("\n| enrolled | check | newcomers refused | duplicates caught | photos per split (newcomers / duplicates) |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        for check in dict.fromkeys(r.check for r in rows):
            chosen = [r for r in rows if r.size == size and r.check == check]
            refused = spread([r.newcomers_refused for r in chosen])
            caught = spread([r.duplicates_caught for r in chosen])
            counts = f"{np.mean([r.newcomers for r in chosen]):.0f} / {np.mean([r.duplicates for r in chosen]):.0f}"
            print(f"| {size:,} | {check} | {refused} | {caught} | {counts} |")


if __name__ == "__main__":
    main()
