"""Learning the decision rule from labelled photos' embeddings, offline: simulation, fitting, metrics, pairs.

Pure numpy over embeddings and labels; the Gallery facade embeds the photos. The rules
learned, and everything identify runs, are ``gallery.decision``'s: this package imports it,
and nothing that identify runs imports this one.

    >>> from gallery.calibration import calibrate, evaluate
    >>> calibration = calibrate(embeddings, labels, target_fpir=0.01)   # one label per photo
    >>> calibration.rule.to_dict(), calibration.provenance()             # what to store
    >>> evaluate(embeddings, labels, calibration.rule).to_dict()         # FPIR, FNIR, rank-1, ...
"""

from gallery.calibration.evaluate import AtTarget, Evaluation, evaluate
from gallery.calibration.fit import Calibration, CalibrationError, VerifyCalibration, calibrate, calibrate_verify
from gallery.calibration.pairs import NoUsablePairs, Pair, PairReport, PairsFormatError, pair_report, read_pairs

__all__ = [
    "AtTarget",
    "Calibration",
    "CalibrationError",
    "Evaluation",
    "NoUsablePairs",
    "Pair",
    "PairReport",
    "PairsFormatError",
    "VerifyCalibration",
    "calibrate",
    "calibrate_verify",
    "evaluate",
    "pair_report",
    "read_pairs",
]
