"""The facade's methods that learn and measure its rules from labelled photos: calibrate, evaluate, evaluate_pairs.

A part of ``Gallery`` (its base class), kept apart because it is the offline side of the
facade: nothing a door runs goes through it. The work itself is ``gallery.calibrating``'s.
"""

from __future__ import annotations

import os

from gallery.arguments import rate
from gallery.audit import AuditWriter, rule_reference
from gallery.calibrating import LearnedRules, PhaseProgress, embed_folder, learn_rules, score_pairs, score_rule
from gallery.calibration import Evaluation, PairReport
from gallery.calibration.margin import MARGINS, MarginName
from gallery.errors import InvalidArgument
from gallery.reembedding import OneModel
from gallery.rules_in_force import RulesInForce
from gallery.vision.pipeline import FacePipelineProtocol


class RuleLearning:
    """``Gallery``'s calibrate and evaluate methods (``Gallery`` sets these attributes)."""

    _pipeline: FacePipelineProtocol
    _one_model: OneModel
    _rules: RulesInForce
    _audit: AuditWriter

    def calibrate(
        self,
        folder: str | os.PathLike,
        *,
        target_fpir: float = 0.01,
        target_fmr: float = 0.001,
        margin: MarginName = "uniform",
        progress: PhaseProgress | None = None,
    ) -> LearnedRules:
        """Learn this gallery's identify rule and verify threshold from labelled photos, and put them in force.

        ``folder`` holds one sub-folder of photos per identity (``gallery.labelled``). The
        one-shot open-set task is simulated on it: one photo of part of the identities
        enrolled, their other photos and the remaining identities' photos searched. The rule
        accepting ``target_fpir`` of the strangers while missing fewest is stored with its
        provenance, and so is the 1:1 threshold for ``target_fmr``. Both replace the defaults
        (or an earlier calibration) together; on any error nothing is stored.

        Args:
            folder: the labelled photos (at least two people with two photos, and about
                2 / target_fpir photos in all).
            target_fpir: share of strangers identify may accept as someone.
            target_fmr: share of different-person pairs verify may accept.
            margin: how far below ``target_fpir`` each gallery size's threshold is set, for the
                stranger rate to hold on other people than the calibration's. ``"uniform"``: a
                95% Clopper-Pearson bound on a tenth of the simulated strangers at every size;
                ``"clustered"``: a 99% bound on the strangers divided by twice the clustering
                measured at each size (the shipped default rule's). On 100-400 labelled people
                the uniform margin let 1.1-1.3% of strangers in at the 95th percentile at 5-20
                people; the clustered one held 1% at 2-4x the misses (README, Margin).
            progress: called as ``progress(phase, done, total)``.

        Raises:
            CalibrationError: the photos cannot support the targets, or what was learned would
                not pass the checks every stored rule passes (NaN, out of range): nothing stored.
            ImageNotFound: not a folder.
            ModelMismatch: the gallery holds faces of another model; run ``reembed`` first.
            InvalidArgument: a target is not a number strictly between 0 and 1, or ``margin``
                is not one of the names above.
        """
        target_fpir, target_fmr = rate("target_fpir", target_fpir), rate("target_fmr", target_fmr)
        if margin not in MARGINS:
            raise InvalidArgument(f"margin must be one of {', '.join(map(repr, MARGINS))}, got {margin!r}")
        self._one_model.require()
        faces = embed_folder(folder, self._pipeline, progress)
        learned = learn_rules(
            faces, target_fpir=target_fpir, target_fmr=target_fmr, margin=MARGINS[margin], progress=progress
        )
        self._rules.replace(learned.identify, learned.verify)
        self._audit.put(
            "calibrate",
            outcome="calibrated",
            model=self._pipeline.model_id,
            rule=rule_reference(learned.identify.rule),
            detail={"identify": learned.identify.provenance.to_dict(), "verify_threshold": learned.verify.threshold},
        )
        return learned

    def evaluate(self, folder: str | os.PathLike, *, progress: PhaseProgress | None = None) -> Evaluation:
        """How the identify rule in force does on labelled photos, beside the best rules possible on them.

        Simulates one-shot galleries on ``folder`` (as ``calibrate`` does; nothing is enrolled):
        FPIR and FNIR of the rule in force, rank-1, failures to enrol and acquire, and at FPIR
        1% and 0.3% the FNIR of the rule in force, of the best normalised rule and of the best
        single distance threshold, each with its threshold set on this very data.
        """
        self._one_model.require()
        rule, verify_threshold = self._rules.identify_rule(), self._rules.verify_threshold()
        return score_rule(embed_folder(folder, self._pipeline, progress), rule, verify_threshold, progress=progress)

    def evaluate_pairs(
        self,
        pairs_file: str | os.PathLike,
        *,
        root: str | os.PathLike | None = None,
        allow_missing: bool = False,
        progress: PhaseProgress | None = None,
    ) -> PairReport:
        """Verification accuracy on an LFW-format pairs file (10-fold when it has folds), and at the threshold in force.

        Args:
            pairs_file: ``name i j`` / ``name1 i name2 j`` lines, optionally under a header.
            root: the folder holding ``name/name_000i.jpg``; defaults to the pairs file's folder.
            allow_missing: score the pairs whose photo files are all there when some are missing
                or unreadable (counted in ``missing_files``) instead of refusing.

        Raises:
            PairsFormatError: not an LFW pairs list (or not text). PairsFileUnreadable: cannot be read.
            PhotosMissing: photos it names are missing or unreadable (without ``allow_missing``).
            NoUsablePairs: no pair has a face found in both photos.
        """
        return score_pairs(
            pairs_file,
            root,
            self._pipeline,
            threshold=self._rules.verify_threshold(),
            allow_missing=allow_missing,
            progress=progress,
        )
