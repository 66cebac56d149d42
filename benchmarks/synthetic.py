"""Synthetic dlib-like face descriptors, for gallery sizes no photo collection here reaches.

A two-level Gaussian fitted to real descriptors (gallery's pipeline on LFW view 1): each
person's own descriptor is drawn around the population mean with the between-person
covariance, and each photo of them adds the within-person covariance. The fitted mean and
covariance factors ship as ``face_statistics.npz`` (statistics only, no photo or person;
fitted to the 4,992 LFW view 1 descriptors, 3,095 people).
Queries come in two kinds: another photo of an enrolled person (a genuine probe: same
person, fresh within-person variation) and a stranger. Norms, genuine and impostor distances
match the real ones (``fit`` prints both).

    python -m benchmarks.synthetic fit GALLERY_HOME   # refit from an enrolled gallery's faces
    python -m benchmarks.synthetic fit FACES.npz      # or from arrays "embeddings" and "labels"
"""

from __future__ import annotations

import argparse
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STATISTICS = Path(__file__).resolve().parent / "face_statistics.npz"


@dataclass(frozen=True)
class FaceModel:
    """Population mean and the factors of the between- and within-person covariances."""

    mean: np.ndarray  # (d,)
    between: np.ndarray  # (d, d): a person = mean + between @ z
    within: np.ndarray  # (d, d): a photo = person + within @ z

    @classmethod
    def load(cls, path: Path = STATISTICS) -> FaceModel:
        data = np.load(path)
        return cls(
            data["mean"].astype(np.float64), data["between"].astype(np.float64), data["within"].astype(np.float64)
        )

    def gallery(
        self, count: int, probes: int, rng: np.random.Generator, chunk: int = 100_000
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One enrolment photo of each of ``count`` people, and other photos of ``probes`` of them.

        Returns:
            ``(photos, probe_people, probe_photos)``: float32 (count, d), the enrolled rows
            the probes show, and those probes, float32 (probes, d).
        """
        d = len(self.mean)
        photos = np.empty((count, d), np.float32)
        probe_people = np.sort(rng.choice(count, probes, replace=False))
        probe_photos = np.empty((probes, d), np.float32)
        for start in range(0, count, chunk):
            n = min(chunk, count - start)
            person = self.mean + rng.standard_normal((n, d)) @ self.between.T
            photos[start : start + n] = person + rng.standard_normal((n, d)) @ self.within.T
            mine = (probe_people >= start) & (probe_people < start + n)
            chosen = person[probe_people[mine] - start]
            probe_photos[mine] = chosen + rng.standard_normal(chosen.shape) @ self.within.T
        return photos, probe_people, probe_photos

    def strangers(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """Photos of ``count`` people nobody enrolled, float32 (count, d)."""
        return self.gallery(count, 0, rng)[0]


def fit(embeddings: np.ndarray, person_ids: np.ndarray) -> FaceModel:
    """Fit the two-level Gaussian to real descriptors labelled by person."""
    x = embeddings.astype(np.float64)
    residuals = []
    for person in np.unique(person_ids):
        mine = x[person_ids == person]
        if len(mine) >= 2:
            # Deviations from a sample mean shrink by (n-1)/n; scale them back.
            residuals.append((mine - mine.mean(0)) * np.sqrt(len(mine) / (len(mine) - 1)))
    within_cov = np.cov(np.concatenate(residuals).T, bias=True)
    between_cov = np.cov(x.T) - within_cov
    return FaceModel(x.mean(0), _factor(between_cov), _factor(within_cov))


def _factor(covariance: np.ndarray) -> np.ndarray:
    """A symmetric square root of the covariance, negative eigenvalues (noise) clipped."""
    values, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def gallery_faces(home: Path) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and person ids of every face in a gallery's database."""
    with sqlite3.connect(f"file:{home / 'gallery.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT person_id, embedding FROM faces ORDER BY id").fetchall()
    return np.stack([np.frombuffer(e, "<f4") for _, e in rows]), np.array([p for p, _ in rows])


def describe(name: str, embeddings: np.ndarray, person_ids: np.ndarray, rng: np.random.Generator) -> None:
    same = person_ids[:, None] == person_ids[None, :]
    distances = np.linalg.norm(embeddings[:, None] - embeddings[None], axis=2)
    upper = np.triu(np.ones_like(same), 1)
    genuine, impostor = distances[same & upper], distances[~same & upper]
    print(
        f"{name}: norm {np.linalg.norm(embeddings, axis=1).mean():.3f}, genuine distance mean "
        f"{genuine.mean():.3f} (p95 {np.percentile(genuine, 95):.3f}), impostor mean {impostor.mean():.3f} "
        f"(p1 {np.percentile(impostor, 1):.3f}), impostors under 0.6: {(impostor < 0.6).mean():.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    fit_parser = sub.add_parser("fit", help="fit face_statistics.npz to a gallery's faces or an .npz of them")
    fit_parser.add_argument("source", type=Path)
    args = parser.parse_args()
    if args.source.suffix == ".npz":
        arrays = np.load(args.source)
        embeddings, person_ids = arrays["embeddings"], np.unique(arrays["labels"], return_inverse=True)[1]
    else:
        embeddings, person_ids = gallery_faces(args.source)
    model = fit(embeddings, person_ids)
    np.savez(
        STATISTICS,
        mean=model.mean.astype(np.float32),
        between=model.between.astype(np.float32),
        within=model.within.astype(np.float32),
    )
    rng = np.random.default_rng(0)
    sample = rng.choice(len(embeddings), min(2000, len(embeddings)), replace=False)
    describe("real", embeddings[sample], person_ids[sample], rng)
    photos, shown, probes = model.gallery(1000, 500, rng)
    describe("synthetic", np.concatenate([photos, probes]), np.concatenate([np.arange(1000), shown]), rng)
    print(f"wrote {STATISTICS} from {len(embeddings)} faces of {len(np.unique(person_ids))} people")


if __name__ == "__main__":
    main()
