"""Learning and scoring a gallery's decision rules on the operator's labelled photos.

Joins ``gallery.labelled`` (photos -> embeddings) and ``gallery.calibration`` (embeddings ->
rules and rates); the facade stores what is learned. Nothing here writes anything.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gallery.calibration import (
    CalibrationError,
    Evaluation,
    PairReport,
    calibrate,
    calibrate_verify,
    evaluate,
    pair_report,
    read_pairs,
)
from gallery.calibration.margin import UNIFORM_MARGIN, MarginPolicy
from gallery.decision.records import (
    CALIBRATED,
    IdentifyProvenance,
    RuleRecord,
    VerifyProvenance,
    VerifyRecord,
    check_records,
)
from gallery.decision.rule import DecisionRule
from gallery.errors import PhotosMissing, RuleInvalid
from gallery.labelled import LabelledFaces, embed_labelled
from gallery.vision.pipeline import FacePipelineProtocol

PhaseProgress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``; phases: "embedding" (photos), "calibrating" (gallery sizes),
"simulating" (trials)."""


@dataclass(frozen=True)
class LearnedRules:
    """What ``calibrate`` learned: the two settings to store, each with its provenance.

    Attributes:
        identify: the identify rule (a ``NormalisedDistance``) and where it was learned.
        verify: the 1:1 distance threshold and where it was learned.
        description: the identify rule, in words.
    """

    identify: RuleRecord
    verify: VerifyRecord
    description: str

    def to_dict(self) -> dict[str, Any]:
        """``{identify: {rule, provenance}, verify: {threshold, provenance}, description}`` (``calibrate --json``)."""
        return {"identify": self.identify.to_dict(), "verify": self.verify.to_dict(), "description": self.description}


def embed_folder(
    folder: str | os.PathLike, pipeline: FacePipelineProtocol, progress: PhaseProgress | None
) -> LabelledFaces:
    """The labelled folder's faces (``gallery.labelled.embed_labelled``), reporting the "embedding" phase."""
    return embed_labelled(folder, pipeline, progress=_phase("embedding", progress))


def learn_rules(
    faces: LabelledFaces,
    *,
    target_fpir: float,
    target_fmr: float,
    margin: MarginPolicy = UNIFORM_MARGIN,
    progress: PhaseProgress | None = None,
) -> LearnedRules:
    """Calibrate the identify rule for ``target_fpir`` at ``margin`` and the verify threshold for ``target_fmr``.

    Raises:
        CalibrationError: the photos cannot support a target (too few people, photos or strangers),
            or what was learned fails the checks every stored rule passes (a NaN, a threshold <= 0).
    """
    identify = calibrate(
        faces.embeddings, faces.labels, target_fpir=target_fpir, margin=margin, progress=_phase("calibrating", progress)
    )
    verify = calibrate_verify(faces.embeddings, faces.labels, target_fmr=target_fmr)
    source = _source(faces)
    # The calibration's own counts (photos, identities with a face) take the place of the folder's.
    learned = LearnedRules(
        identify=RuleRecord(identify.rule, IdentifyProvenance.from_dict({**source, **identify.provenance()})),
        verify=VerifyRecord(verify.threshold, VerifyProvenance.from_dict({**source, **verify.provenance()})),
        description=identify.rule.describe(),
    )
    try:
        check_records(learned.identify, learned.verify)  # what a reader would refuse is never stored
    except RuleInvalid as error:
        raise CalibrationError(
            f"the calibration produced a rule that would not be trusted ({error.problem}); nothing was stored"
        ) from None
    return learned


def score_rule(
    faces: LabelledFaces, rule: DecisionRule, verify_threshold: float, *, progress: PhaseProgress | None = None
) -> Evaluation:
    """How ``rule`` (and verify's threshold, which a match must pass too) does on the folder by the one-shot
    open-set simulation (``gallery.calibration.evaluate``)."""
    return evaluate(
        faces.embeddings,
        faces.labels,
        rule,
        verify_threshold=verify_threshold,
        failures=faces.failure_labels.tolist(),
        progress=_phase("simulating", progress),
    )


def score_pairs(
    pairs_file: str | os.PathLike,
    root: str | os.PathLike | None,
    pipeline: FacePipelineProtocol,
    *,
    threshold: float,
    allow_missing: bool = False,
    progress: PhaseProgress | None = None,
) -> PairReport:
    """Verification accuracy on an LFW-format pairs file; photos are found under ``root`` (default: the file's folder).

    A photo file the list names that is missing (or cannot be decoded) is an error unless
    ``allow_missing``: an accuracy over the pairs that happen to be there is not the list's
    accuracy, and a wrong ``root`` would otherwise look like a small, confident benchmark.
    Missing files are checked before any photo is embedded.

    Raises:
        PairsFormatError: the file is not an LFW pairs list. PairsFileUnreadable: it cannot be read.
        PhotosMissing: photos are missing or unreadable (without ``allow_missing``).
        NoUsablePairs: no pair has a face in both photos.
    """
    pairs = read_pairs(pairs_file)
    root = Path(root) if root is not None else Path(pairs_file).parent
    wanted = sorted({p.first for p in pairs} | {p.second for p in pairs})
    absent = [relative for relative in wanted if not (root / relative).is_file()]
    if absent and not allow_missing:
        raise _photos_missing(absent, len(wanted), root, "missing")
    photos = [(root / relative, relative.split("/")[0]) for relative in wanted if relative not in set(absent)]
    faces = embed_labelled(root, pipeline, photos=photos, progress=_phase("embedding", progress))
    unreadable = [relative for relative, _ in faces.unreadable]
    if unreadable and not allow_missing:
        raise _photos_missing(unreadable, len(wanted), root, "unreadable")
    return pair_report(pairs, faces.embedding_of(), threshold=threshold, missing=[*absent, *unreadable])


def _photos_missing(photos: list[str], wanted: int, root: Path, what: str) -> PhotosMissing:
    shown = ", ".join(photos[:3]) + (", ..." if len(photos) > 3 else "")
    return PhotosMissing(
        f"{len(photos)} of the {wanted} photos the pairs file names are {what} under {root} ({shown}); "
        "check the folder (--root), or pass allow_missing=True (--allow-missing) to score the pairs that remain"
    )


def _source(faces: LabelledFaces) -> dict[str, Any]:
    """Where a calibration's photos came from, for its provenance."""
    return {
        "source": CALIBRATED,
        "folder": str(faces.root.resolve()),
        "photos": len(faces.labels),  # with a face; the others are counted below
        "failures_to_acquire": len(faces.failure_paths),
        "unreadable": len(faces.unreadable),
        "identities": faces.identities,
        "model": faces.model,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _phase(name: str, progress: PhaseProgress | None) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)
