"""Administration: re-embedding after a model change, calibrating and evaluating the rules, gallery info."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gallery.cli.app import cli
from gallery.cli.context import CliContext, ProgressBars, domain_line, pass_context, print_json

if TYPE_CHECKING:
    from gallery import Evaluation, MarginName


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def reembed(ctx: CliContext, as_json: bool) -> None:
    """Re-embed faces stored by another (older) embedding model, from their stored face chips.

    Needed after upgrading to a gallery whose model differs from the one that enrolled the
    faces: until then enroll, identify and verify refuse. Safe to interrupt and run again.

    \b
    Example:
        gallery reembed
    """
    result = ctx.run(lambda g: g.reembed())
    if as_json:
        print_json(result.to_dict())
    elif result.reembedded:
        click.echo(f"Re-embedded {result.reembedded} face(s) with {result.model}")
    else:
        click.echo(f"Every face is already {result.model}'s")


@cli.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option(
    "--fpir",
    default=0.01,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Target false positive identification rate: share of strangers `identify` may accept.",
)
@click.option(
    "--fmr",
    default=0.001,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Target false match rate: share of other people's photos `verify` may accept.",
)
@click.option(
    "--margin",
    default="uniform",
    show_default=True,
    type=click.Choice(["uniform", "clustered"]),
    help="How far below FPIR the thresholds are set: clustered holds the rate on other people more "
    "surely, at more misses (README, Margin).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (no progress bar).")
@pass_context
def calibrate(ctx: CliContext, folder: Path, fpir: float, fmr: float, margin: MarginName, as_json: bool) -> None:
    """Learn the decision rules from labelled photos in FOLDER (one sub-folder per person) and put them in force.

    Simulates one-shot enrolment on the photos (one photo of half the people enrolled, all
    other photos searched) and stores the identify rule that accepts FPIR of the strangers
    while missing fewest, and the verify threshold for FMR, with where they were learned.
    Needs at least two people with two photos and about 2/FPIR photos in all. Nothing is
    enrolled. `gallery info` shows the rules in force.

    \b
    Example:
        gallery calibrate labelled-staff-photos/ --fpir 0.01
        gallery calibrate --json --fpir 0.003 --fmr 0.0001 photos/ > calibration.json
        gallery calibrate --margin clustered labelled-staff-photos/
    """
    with ProgressBars(enabled=not as_json) as bars:
        learned = ctx.run(lambda g: g.calibrate(folder, target_fpir=fpir, target_fmr=fmr, margin=margin, progress=bars))
    if as_json:
        print_json(learned.to_dict())
        return
    found, verify = learned.identify.provenance, learned.verify.provenance
    click.echo(
        f"Calibrated on {found.photos} faces of {found.identities} people "
        f"({found.failures_to_acquire} photo(s) without a face)."
    )
    click.echo(f"identify: {learned.description}")
    click.echo(
        f"  simulated galleries of {found.gallery_size} people: FPIR {found.fpir:.4f} "
        f"(target {fpir:g}), FNIR {found.fnir:.4f}; a single distance threshold would miss "
        f"{found.distance_threshold_fnir:.4f}"
    )
    click.echo(
        f"verify: distance <= {learned.verify.threshold:.4f}: FMR {verify.fmr:.5f} (target {fmr:g}), "
        f"FNMR {verify.fnmr:.4f}"
    )
    click.echo(
        f"Calibrated for galleries of up to {found.gallery_size} people: a larger gallery refuses more "
        "strangers than the target, and more enrolled people; calibrate on more people to lift that."
    )


@cli.command(name="eval")
@click.argument("folder", required=False, type=click.Path(path_type=Path))
@click.option(
    "--pairs",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Report verification accuracy on an LFW-format pairs file instead.",
)
@click.option(
    "--root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="With --pairs: the folder holding Name/Name_0001.jpg (default: the pairs file's folder).",
)
@click.option(
    "--allow-missing",
    is_flag=True,
    help="With --pairs: score the pairs that remain when photo files are missing (otherwise an error).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (no progress bar).")
@pass_context
def evaluate(
    ctx: CliContext, folder: Path | None, pairs: Path | None, root: Path | None, allow_missing: bool, as_json: bool
) -> None:
    """Measure the rules in force on labelled photos in FOLDER (one sub-folder per person), or on --pairs.

    FOLDER: simulates one-shot galleries (nothing is enrolled) and reports the rule in force
    (FPIR: strangers accepted, FNIR: enrolled people missed), rank-1, failures to enrol and
    to acquire, and at FPIR 1% and 0.3% the FNIR of the rule in force and of the best rules
    possible, thresholds set on these very photos.
    --pairs: LFW pair verification accuracy, 10-fold when the file has folds, and at the
    verify threshold in force. A photo file the list names that is missing or unreadable is an
    error (exit 4) unless --allow-missing, which scores the rest and counts them apart from
    photos without a face.

    \b
    Example:
        gallery eval labelled-photos/
        gallery eval --pairs lfw/pairsDevTest.txt --json
    """
    if (folder is None) == (pairs is None):
        raise click.UsageError("give either FOLDER or --pairs FILE")
    with ProgressBars(enabled=not as_json) as bars:
        if pairs is not None:
            pair_report = ctx.run(
                lambda g: g.evaluate_pairs(pairs, root=root, allow_missing=allow_missing, progress=bars)
            )
        else:
            assert folder is not None  # exactly one of the two, checked above
            evaluation = ctx.run(lambda g: g.evaluate(folder, progress=bars))
    if pairs is not None:
        if as_json:
            print_json(pair_report.to_dict())
        else:
            click.echo(
                f"{pair_report.pairs} pairs ({pair_report.no_face} skipped: no face; {pair_report.missing_files} "
                f"skipped: photo file missing or unreadable): accuracy "
                f"{pair_report.accuracy:.4f} ± {pair_report.std:.4f} over {pair_report.folds} folds (mean learned "
                f"threshold {pair_report.threshold:.4f}); "
                f"at the verify threshold in force: {pair_report.accuracy_at:.4f}"
            )
    elif as_json:
        print_json(evaluation.to_dict())
    else:
        _echo_evaluation(evaluation)


def _echo_evaluation(report: Evaluation) -> None:
    click.echo(f"rule in force: {report.rule}")
    click.echo(
        f"simulated galleries of {report.gallery_size} people ({report.mated_searches} searches of enrolled "
        f"people, {report.stranger_searches} of strangers): FPIR {report.fpir:.4f}, FNIR {report.fnir:.4f}, "
        f"ambiguous {report.ambiguous_rate:.4f}, rank-1 {report.rank_one:.4f}"
    )
    click.echo(
        f"failure to enrol {report.fte:.4f}, to acquire {report.fta:.4f} ({report.photos} photos of "
        f"{report.identities} people)"
    )
    for target in report.targets:
        click.echo(
            f"at FPIR {target.target_fpir:g} (thresholds set on these photos): FNIR {target.rule_fnir:.4f} "
            f"(rule in force), {target.normalised_fnir:.4f} (best normalised rule), {target.distance_fnir:.4f} "
            f"(single distance {target.distance_threshold:.4f})"
        )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def info(ctx: CliContext, as_json: bool) -> None:
    """Show where the gallery lives, what it holds and the decision rule in force.

    A stored rule that cannot be trusted is shown as UNREADABLE, with why (`rule_error` in
    --json); identify, verify and enroll refuse until `gallery calibrate` replaces it.

    \b
    Example:
        gallery --home ./my-gallery info
    """
    result = ctx.answer(lambda g: g.info())
    if as_json:
        print_json(result)
        return
    click.echo(
        f"home: {result['home']}\ndatabase: {result['database']}\npeople: {result['people']}\n"
        f"faces: {result['faces']}\nmodel: {result['model']}\nschema: {result['schema_revision']}"
    )
    if result["pending_erasure"]:
        click.echo(f"erasure pending: {', '.join(result['pending_erasure'])} (the next open or write finishes it)")
    rule, verify_rule = result["rule"], result["verify_rule"]
    if rule is None:
        click.echo("identify rule: UNREADABLE: identify refuses to decide")
    else:
        click.echo(f"identify rule: {result['rule_description']}")
        calibrated_for = rule["provenance"]["gallery_size"]
        if result["people"] > calibrated_for:  # GalleryInfo.outgrown_calibration
            click.echo(
                f"  note: calibrated for up to {calibrated_for} people, this gallery has "
                f"{result['people']}: stricter than its target (more enrolled people refused); calibrate on more people"
            )
        click.echo(f"  learned: {_summary(rule['provenance'])}")
        if result["domain"] is not None:
            click.echo(f"  {domain_line(result['domain'])}")
    if verify_rule is None:
        click.echo("verify threshold: UNREADABLE: verify and enroll refuse")
    else:
        click.echo(f"verify threshold: {verify_rule['threshold']:.4f}")
        click.echo(f"  learned: {_summary(verify_rule['provenance'])}")
    if result["rule_error"]:
        click.echo(f"rule error: {result['rule_error']}")


def _summary(provenance: dict[str, Any]) -> str:
    """A provenance record (``IdentifyProvenance.to_dict()``, ``VerifyProvenance``'s) on one line."""
    return ", ".join(f"{key} {value}" for key, value in provenance.items() if key != "command")
