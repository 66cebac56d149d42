"""Learn the decision rule shipped in gallery/data/default_rule.json from labelled embeddings.

    nice -n 10 python scripts/embed_dataset.py ../shared/datasets/lfw_view1 /tmp/lfw_view1_flip.npz
    python scripts/learn_default_rule.py /tmp/lfw_view1_flip.npz

Calibrates a NormalisedDistance rule for FPIR 1% on every identity of the file (galleries of
up to half of them, the other half strangers) and a 1:1 verify threshold for FMR 0.1%, and
writes both with their provenance. The embeddings must be the default pipeline's (the rule
ships for that model); scripts/calibration_study.py measures such a rule on held-out people.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gallery.calibration.fit import calibrate, calibrate_verify
from gallery.calibration.margin import CLUSTERED_MARGIN
from gallery.vision.pipeline import FacePipeline

OUT = Path(__file__).resolve().parents[1] / "gallery" / "data" / "default_rule.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("embeddings", type=Path)
    parser.add_argument("--fpir", type=float, default=0.01)
    parser.add_argument("--fmr", type=float, default=0.001)
    parser.add_argument("--dataset", default="LFW View 1 (../shared/datasets/lfw_view1)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    data = np.load(args.embeddings)
    embeddings, labels = data["embeddings"], data["labels"]
    model = str(data["model"]) if "model" in data else "(not recorded)"
    if model != FacePipeline().model_id:  # the shipped rule is read against the default pipeline's distances
        sys.exit(
            f"{args.embeddings} holds embeddings of model {model}, not the default pipeline's "
            f"{FacePipeline().model_id}: embed again with scripts/embed_dataset.py"
        )
    calibration = calibrate(
        embeddings,
        labels,
        target_fpir=args.fpir,
        margin=CLUSTERED_MARGIN,  # validated held out on LFW at every size (gallery/calibration/margin.py)
        progress=lambda done, total: print(f"gallery size {done}/{total}", file=sys.stderr),
    )
    verify = calibrate_verify(embeddings, labels, target_fmr=args.fmr)
    command = (
        f"python scripts/embed_dataset.py ../shared/datasets/lfw_view1 {args.embeddings} && "
        f"python scripts/learn_default_rule.py {args.embeddings} --fpir {args.fpir:g} --fmr {args.fmr:g}"
    )
    record = {
        "rule": calibration.rule.to_dict(),
        "provenance": {
            "dataset": args.dataset,
            "photos": calibration.photos,
            "failures_to_acquire": len(data["failures"]) if "failures" in data else None,
            "model": model,
            "date": datetime.date.today().isoformat(),
            "command": command,
            **calibration.provenance(),
        },
        "verify": {
            "threshold": verify.threshold,
            "provenance": {"dataset": args.dataset, "model": model, **verify.provenance()},
        },
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record["provenance"], indent=1))
    print(f"verify threshold {verify.threshold:.4f} at FMR {verify.fmr:.5f}, FNMR {verify.fnmr:.4f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
