"""The ``gallery`` command: a thin click layer over ``gallery.Gallery``.

Exit codes (documented in the README):
    0  success: someone identified, verified, enrolled, removed, listed
    1  no match: faces found but nobody recognised, or verification failed
    2  usage error (bad options)
    3  no face found in the photo
    4  bad input or any other error (message on stderr)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from gallery.errors import GalleryError, NoFaceFound

if TYPE_CHECKING:
    from gallery import Evaluation
    from gallery.decision import IdentifyProvenance, VerifyProvenance
    from gallery.gallery import Gallery
    from gallery.vision.pipeline import FacePipelineProtocol

T = TypeVar("T")

EXIT_OK, EXIT_NO_MATCH, EXIT_USAGE, EXIT_NO_FACE, EXIT_ERROR = 0, 1, 2, 3, 4


def _fail(err: GalleryError) -> NoReturn:
    # One line, as documented, even when the message quotes a path or a SQLite error holding newlines.
    message = " ".join(str(err).splitlines())
    click.echo(f"Error: {message}", err=True)
    sys.exit(EXIT_NO_FACE if isinstance(err, NoFaceFound) else EXIT_ERROR)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


@dataclass(frozen=True)
class CliContext:
    """What every command works with: the gallery folder, the CPU threads, and the face pipeline.

    The ``cli`` group builds one from its options. A program embedding the command (or a test)
    may hand one in as click's ``obj``, e.g. to run the commands over another pipeline:
    ``cli.main(args, obj=CliContext(pipeline=FacePipeline(flip=False)))``. ``--home`` and
    ``--threads`` (or their environment variables), when given, override its own.

    Attributes:
        home: the gallery folder (None: ``$GALLERY_HOME``, else the user data directory).
        threads: CPU threads (None: every core the process may use).
        pipeline: the face pipeline (None: the process-wide ``FacePipeline``).
    """

    home: Path | None = None
    threads: int | None = None
    pipeline: FacePipelineProtocol | None = None

    def run(self, action: Callable[[Gallery], T]) -> T:
        """Open the gallery, run ``action`` on it, turn gallery errors into exit codes."""
        from gallery.gallery import Gallery, set_threads  # deferred: keeps `--help` instant (no torch import)

        set_threads(self.threads or _available_cores())
        try:
            with Gallery(self.home, pipeline=self.pipeline) as g:
                return action(g)
        except GalleryError as err:
            _fail(err)


pass_context = click.make_pass_decorator(CliContext)


class _ProgressBars(contextlib.AbstractContextManager):
    """Progress bars on stderr for a long run, one per phase; called as ``bars(phase, done, total)``."""

    def __init__(self, *, enabled: bool) -> None:
        self._enabled = enabled
        self._phase: str | None = None
        self._bar: Any = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self._enabled:
            return
        if phase != self._phase:
            self._finish()
            self._phase = phase
            self._bar = click.progressbar(length=total, label=phase.capitalize(), file=sys.stderr).__enter__()
        self._bar.update(done - self._bar.pos)

    def __exit__(self, *exc_info: object) -> None:
        self._finish()

    def _finish(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _available_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@click.group()
@click.version_option(package_name="gallery")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="GALLERY_HOME",
    help="Gallery folder (default: $GALLERY_HOME, else the user data directory).",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    envvar="GALLERY_THREADS",
    help="CPU threads for the networks and the index (default: $GALLERY_THREADS, else all cores).",
)
@click.pass_context
def cli(ctx: click.Context, home: Path | None, threads: int | None) -> None:
    """One-shot face identification: enrol a person from one photo, identify them in others.

    \b
    Example:
        gallery enroll "Ada Lovelace" ada.jpg
        gallery identify door.jpg
    """
    given = ctx.obj if isinstance(ctx.obj, CliContext) else CliContext()
    ctx.obj = dataclasses.replace(given, home=home or given.home, threads=threads or given.threads)


@cli.command()
@click.argument("name")
@click.argument("photo", type=click.Path(path_type=Path))
@click.option("--add", is_flag=True, help="Add another photo of a person already enrolled.")
@click.option("--largest", is_flag=True, help="Take the largest face when the photo holds several.")
@click.option("--allow-similar", is_flag=True, help="Enrol even if the face matches another enrolled person.")
@click.option("--external-id", help="The host system's id for this person.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def enroll(
    ctx: CliContext,
    name: str,
    photo: Path,
    add: bool,
    largest: bool,
    allow_similar: bool,
    external_id: str | None,
    as_json: bool,
) -> None:
    """Enrol NAME from PHOTO, which must hold exactly one face.

    \b
    Example:
        gallery enroll "Ada Lovelace" ada.jpg
        gallery enroll --add "Ada Lovelace" ada-2.jpg
    """
    result = ctx.run(
        lambda g: g.enroll(name, photo, add=add, largest=largest, allow_similar=allow_similar, external_id=external_id)
    )
    if as_json:
        _print_json(asdict(result))
    else:
        verb = "Enrolled" if result.new_person else "Added a photo of"
        click.echo(f"{verb} {result.name} (person {result.person_id}, face {result.face_id})")


@cli.command(name="enroll-dir")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--largest", is_flag=True, help="Take the largest face of photos holding several.")
@click.option("--allow-similar", is_flag=True, help="Enrol faces even if they match another enrolled person.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (no progress bar).")
@pass_context
def enroll_dir(ctx: CliContext, folder: Path, largest: bool, allow_similar: bool, as_json: bool) -> None:
    """Enrol everyone in FOLDER: one sub-folder per person, or one photo per person named after the file.

    Photos already enrolled are skipped, so an interrupted run can be started again. Photos
    of a name already enrolled are added to that person. Exit 0 when every photo was
    enrolled or skipped, 1 when some were refused (the summary says why).

    \b
    Example:
        gallery enroll-dir staff/        # staff/Ada Lovelace/1.jpg, staff/Alan Turing.jpg, ...
        gallery enroll-dir --json staff/ > report.json
    """
    with _ProgressBars(enabled=not as_json) as bars:
        result = ctx.run(
            lambda g: g.enroll_dir(
                folder,
                largest=largest,
                allow_similar=allow_similar,
                progress=lambda done, total: bars("Enrolling", done, total),
            )
        )
    if as_json:
        _print_json(result.to_dict())
    else:
        people = len({e.person_id for e in result.enrolled})
        click.echo(
            f"{result.photos} photo(s): {len(result.enrolled)} enrolled ({people} people), "
            f"{len(result.skipped)} already enrolled, {len(result.failures)} refused"
        )
        for failure in result.failures:
            click.echo(f"refused {failure.photo} ({failure.name}): {failure.error}: {failure.reason}")
    sys.exit(EXIT_NO_MATCH if result.failures else EXIT_OK)


@cli.command()
@click.argument("photo", type=click.Path(path_type=Path))
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(1, 100), help="Candidates per face.")
@click.option(
    "--upsample",
    default=0,
    show_default=True,
    type=click.IntRange(0, 3),
    help="Detector upsampling steps: finds faces under ~80 px, about 4x slower per step.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def identify(ctx: CliContext, photo: Path, top_k: int, upsample: int, as_json: bool) -> None:
    """Identify every face in PHOTO. Exit 0 if anyone is recognised, 1 if not, 3 if no face.

    \b
    Example:
        gallery identify door.jpg
        gallery identify --json --top-k 3 group.jpg
    """
    results = ctx.run(lambda g: g.identify(photo, top_k=top_k, upsample=upsample))
    if as_json:
        _print_json({"photo": str(photo), "faces": [r.to_dict() for r in results]})
    elif not results:
        click.echo("No face found.", err=True)
    else:
        for r in results:
            who = r.match.name if r.match else r.outcome
            distance = f"{r.candidates[0].distance:.3f}" if r.candidates else "-"
            click.echo(f"{who}\tbox={list(r.box)}\tdistance={distance}\tconfidence={r.confidence:.2f}")
        click.echo(f"rule: {results[0].rule}", err=True)
    if not results:
        sys.exit(EXIT_NO_FACE)
    sys.exit(EXIT_OK if any(r.match for r in results) else EXIT_NO_MATCH)


@cli.command()
@click.argument("name")
@click.argument("photo", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def verify(ctx: CliContext, name: str, photo: Path, as_json: bool) -> None:
    """Check that the largest face in PHOTO is NAME. Exit 0 if so, 1 if not.

    \b
    Example:
        gallery verify "Ada Lovelace" badge-photo.jpg
    """
    result = ctx.run(lambda g: g.verify(name, photo))
    if as_json:
        _print_json(asdict(result))
    else:
        word = "verified" if result.verified else "NOT verified"
        click.echo(f"{result.name}: {word} (distance {result.distance:.3f}, threshold {result.threshold:.3f})")
    sys.exit(EXIT_OK if result.verified else EXIT_NO_MATCH)


@cli.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def list_people(ctx: CliContext, as_json: bool) -> None:
    """List everyone enrolled.

    \b
    Example:
        gallery list --json
    """
    people = ctx.run(lambda g: g.people())
    if as_json:
        _print_json([asdict(p) for p in people])
    else:
        for p in people:
            click.echo(f"{p.name}\t{p.face_count} photo(s)\tsince {p.created_at:%Y-%m-%d}")


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def remove(ctx: CliContext, name: str, as_json: bool) -> None:
    """Erase NAME: their photos' embeddings and face chips are deleted for good.

    \b
    Example:
        gallery remove "Ada Lovelace"
    """
    result = ctx.run(lambda g: g.remove(name))
    if as_json:
        _print_json(asdict(result))
    else:
        click.echo(f"Removed {result.name} ({result.faces_removed} face(s))")


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
        _print_json(result.to_dict())
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
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (no progress bar).")
@pass_context
def calibrate(ctx: CliContext, folder: Path, fpir: float, fmr: float, as_json: bool) -> None:
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
    """
    with _ProgressBars(enabled=not as_json) as bars:
        learned = ctx.run(lambda g: g.calibrate(folder, target_fpir=fpir, target_fmr=fmr, progress=bars))
    if as_json:
        _print_json(learned.to_dict())
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
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (no progress bar).")
@pass_context
def evaluate(ctx: CliContext, folder: Path | None, pairs: Path | None, root: Path | None, as_json: bool) -> None:
    """Measure the rules in force on labelled photos in FOLDER (one sub-folder per person), or on --pairs.

    FOLDER: simulates one-shot galleries (nothing is enrolled) and reports the rule in force
    (FPIR: strangers accepted, FNIR: enrolled people missed), rank-1, failures to enrol and
    to acquire, and at FPIR 1% and 0.3% the FNIR of the rule in force and of the best rules
    possible, thresholds set on these very photos.
    --pairs: LFW pair verification accuracy, 10-fold when the file has folds, and at the
    verify threshold in force.

    \b
    Example:
        gallery eval labelled-photos/
        gallery eval --pairs lfw/pairsDevTest.txt --json
    """
    if (folder is None) == (pairs is None):
        raise click.UsageError("give either FOLDER or --pairs FILE")
    with _ProgressBars(enabled=not as_json) as bars:
        if pairs is not None:
            pair_report = ctx.run(lambda g: g.evaluate_pairs(pairs, root=root, progress=bars))
        else:
            assert folder is not None  # exactly one of the two, checked above
            evaluation = ctx.run(lambda g: g.evaluate(folder, progress=bars))
    if pairs is not None:
        if as_json:
            _print_json(pair_report.to_dict())
        else:
            click.echo(
                f"{pair_report.pairs} pairs ({pair_report.missing} skipped: no face): accuracy "
                f"{pair_report.accuracy:.4f} ± {pair_report.std:.4f} over {pair_report.folds} folds (mean learned "
                f"threshold {pair_report.threshold:.4f}); "
                f"at the verify threshold in force: {pair_report.accuracy_at:.4f}"
            )
    elif as_json:
        _print_json(evaluation.to_dict())
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

    \b
    Example:
        gallery --home ./my-gallery info
    """
    result = ctx.run(lambda g: g.info())
    if as_json:
        _print_json(result.to_dict())
        return
    click.echo(
        f"home: {result.home}\npeople: {result.people}\nfaces: {result.faces}\nmodel: {result.model}\n"
        f"schema: {result.schema_revision}"
    )
    click.echo(f"identify rule: {result.rule_description}")
    if result.outgrown_calibration:
        click.echo(
            f"  note: calibrated for up to {result.rule.provenance.gallery_size} people, this gallery has "
            f"{result.people}: stricter than its target (more enrolled people refused); calibrate on more people"
        )
    click.echo(f"  learned: {_summary(result.rule.provenance)}")
    click.echo(f"verify threshold: {result.verify_rule.threshold:.4f}")
    click.echo(f"  learned: {_summary(result.verify_rule.provenance)}")


def _summary(provenance: IdentifyProvenance | VerifyProvenance) -> str:
    return ", ".join(f"{key} {value}" for key, value in provenance.to_dict().items() if key != "command")


def main() -> None:
    cli(prog_name="gallery")
