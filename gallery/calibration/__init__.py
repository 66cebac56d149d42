"""Learning the decision rule from labelled photos' embeddings: simulation, rules, fitting, metrics.

Pure numpy over embeddings and labels; the Gallery facade and the CLI embed the photos.

    >>> from gallery.calibration import calibrate, evaluate
    >>> calibration = calibrate(embeddings, labels, target_fpir=0.01)   # one label per photo
    >>> calibration.rule.to_dict(), calibration.provenance()             # what to store
    >>> evaluate(embeddings, labels, calibration.rule).to_dict()         # FPIR, FNIR, rank-1, ...
"""

from gallery.calibration.defaults import default_rule, default_rule_record, default_verify_threshold
from gallery.calibration.evaluate import AtTarget, Evaluation, evaluate
from gallery.calibration.fit import Calibration, CalibrationError, VerifyCalibration, calibrate, calibrate_verify
from gallery.calibration.pairs import NoUsablePairs, Pair, PairReport, PairsFormatError, pair_report, read_pairs
from gallery.calibration.protocol import COHORT_SIZE, cohort_distance, cohort_from_searches
from gallery.calibration.rules import NormalisedDistance

__all__ = [
    "COHORT_SIZE",
    "AtTarget",
    "Calibration",
    "CalibrationError",
    "Evaluation",
    "NoUsablePairs",
    "NormalisedDistance",
    "Pair",
    "PairReport",
    "PairsFormatError",
    "VerifyCalibration",
    "calibrate",
    "calibrate_verify",
    "cohort_distance",
    "cohort_from_searches",
    "default_rule",
    "default_rule_record",
    "default_verify_threshold",
    "evaluate",
    "pair_report",
    "read_pairs",
]
