"""LFW View 1 pair verification accuracy of gallery's descriptors, with and without the mirrored chip.

    python scripts/embed_dataset.py ../shared/datasets/lfw_view1 /tmp/lfw_view1_flip.npz --plain-too
    python scripts/lfw_view1_accuracy.py /tmp/lfw_view1_flip.npz ../shared/datasets/lfw_view1

Reports accuracy on pairsDevTest (a) at dlib's fixed threshold 0.6, (b) at the threshold of best
accuracy on pairsDevTrain (View 1's protocol: choose on train, report on test) and (c) 10-fold
cross-validated on pairsDevTest alone; each for plain descriptors and for test-time
augmentation (descriptor averaged with its mirrored chip's).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from gallery.calibration.metrics import best_accuracy_threshold, pair_accuracy
from gallery.calibration.pairs import read_pairs
from gallery.decision import DLIB_DISTANCE_THRESHOLD


def distances(pairs, row: dict[str, int], embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    first = embeddings[[row[p.first] for p in pairs]]
    second = embeddings[[row[p.second] for p in pairs]]
    return np.linalg.norm(first - second, axis=1), np.array([p.same for p in pairs])


def main(faces_npz: Path, lfw: Path) -> None:
    faces = np.load(faces_npz)
    row = {str(path): i for i, path in enumerate(faces["paths"])}
    train, test = read_pairs(lfw / "pairsDevTrain.txt"), read_pairs(lfw / "pairsDevTest.txt")
    missing = [p for p in train + test if p.first not in row or p.second not in row]
    print(f"pairs: train {len(train)}, test {len(test)}; pairs with a photo lacking a face: {len(missing)}")
    for label, key in (("plain", "embeddings_plain"), ("mirrored chip averaged in", "embeddings")):
        d_train, same_train = distances(train, row, faces[key])
        d_test, same_test = distances(test, row, faces[key])
        fixed = float(np.mean((d_test <= DLIB_DISTANCE_THRESHOLD) == same_test))
        threshold = best_accuracy_threshold(d_train, same_train)
        chosen = float(np.mean((d_test <= threshold) == same_test))
        folds = pair_accuracy(d_test, same_test)
        print(
            f"{label}: test accuracy at 0.6 {fixed:.2%}; at train's best threshold {threshold:.3f} {chosen:.2%}; "
            f"10-fold on test {folds.accuracy:.2%} ± {folds.std:.2%}"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
