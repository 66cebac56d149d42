"""Day-to-day commands: enrol, identify, verify, list, remove, and reading the audit log.

enroll, identify, verify, list, remove and log print a ``gallery.client.answers`` shape, whether the
gallery here answered (``gallery.cli.local``) or a service (``--server``): one rendering for both.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from gallery.cli.app import cli
from gallery.cli.context import (
    EXIT_ERASURE_PENDING,
    EXIT_INTERRUPTED,
    EXIT_NO_FACE,
    EXIT_NO_MATCH,
    EXIT_OK,
    CliContext,
    ProgressBars,
    domain_line,
    pass_context,
    print_json,
)
from gallery.types import AUDITED_ACTIONS


@cli.command()
@click.argument("name")
@click.argument("photo", type=click.Path(path_type=Path))
@click.option("--add", is_flag=True, help="Add another photo of a person already enrolled.")
@click.option("--largest", is_flag=True, help="Take the largest face when the photo holds several.")
@click.option(
    "--allow-similar", is_flag=True, help="Enrol even if identify would already answer another enrolled person."
)
@click.option(
    "--allow-different",
    is_flag=True,
    help="With --add: add the photo even if its face is not that person's by the verify threshold (audited).",
)
@click.option("--external-id", help="The host system's id for this person (with --add: the one they carry).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def enroll(
    ctx: CliContext,
    name: str,
    photo: Path,
    add: bool,
    largest: bool,
    allow_similar: bool,
    allow_different: bool,
    external_id: str | None,
    as_json: bool,
) -> None:
    """Enrol NAME from PHOTO, which must hold exactly one face.

    \b
    Example:
        gallery enroll "Ada Lovelace" ada.jpg
        gallery enroll --add "Ada Lovelace" ada-2.jpg

    A face identify would already answer as someone else is refused (--allow-similar to enrol
    anyway); a photo added with --add must pass verify's threshold for that person.
    """
    result = ctx.answer(
        lambda g: g.enroll(
            name,
            photo,
            add=add,
            largest=largest,
            allow_similar=allow_similar,
            allow_different=allow_different,
            external_id=external_id,
        )
    )
    if as_json:
        print_json(result)
    else:
        verb = "Enrolled" if result["new_person"] else "Added a photo of"
        click.echo(f"{verb} {result['name']} (person {result['person_id']}, face {result['face_id']})")
    resembles = result.get("resembles")
    if resembles is not None:  # on stderr, so a --json reader's output stays one document
        click.echo(_resemblance(result["name"], result["face_id"], resembles), err=True)
    domain = result.get("domain")
    if domain is not None and domain["crowded"]:
        click.echo(f"warning: {domain_line(domain)}", err=True)


def _resemblance(name: str, face_id: int, resembles: str) -> str:
    """The desk's warning for a face enrolled that resembles someone else (``Enrollment.resembles``)."""
    return (
        f"warning: {name}'s face {face_id} resembles {resembles!r}: identify would answer {resembles!r} for it at "
        "the rule's review stranger rate, though not at its own; check they are not one person under two names"
    )


@cli.command(name="enroll-dir")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--largest", is_flag=True, help="Take the largest face of photos holding several.")
@click.option("--allow-similar", is_flag=True, help="Enrol faces even if identify would already answer another person.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (no progress bar).")
@pass_context
def enroll_dir(ctx: CliContext, folder: Path, largest: bool, allow_similar: bool, as_json: bool) -> None:
    """Enrol everyone in FOLDER: one sub-folder per person, or one photo per person named after the file.

    Photos already enrolled as that person's are skipped, so an interrupted run can be started
    again; one enrolled as someone else's is refused. Photos of a name already enrolled are
    added to that person. Exit 0 when every photo was enrolled or skipped, 1 when some were
    refused (the summary says why: a bad name, no face, a lookalike, ...), 130 when
    interrupted (Ctrl-C), after the summary of what was done (whole people) until then.

    \b
    Example:
        gallery enroll-dir staff/        # staff/Ada Lovelace/1.jpg, staff/Alan Turing.jpg, ...
        gallery enroll-dir --json staff/ > report.json
    """
    from gallery.results import EnrolmentInterrupted  # deferred: the results import the store

    interrupted = False
    with ProgressBars(enabled=not as_json) as bars:
        try:
            result = ctx.run(
                lambda g: g.enroll_dir(
                    folder,
                    largest=largest,
                    allow_similar=allow_similar,
                    progress=lambda done, total: bars("Enrolling", done, total),
                )
            )
        except EnrolmentInterrupted as stop:
            result, interrupted = stop.report, True
    if as_json:
        print_json({**result.to_dict(), "interrupted": interrupted})
    else:
        people = len({e.person_id for e in result.enrolled})
        click.echo(
            f"{result.photos} photo(s): {len(result.enrolled)} enrolled ({people} people), "
            f"{len(result.skipped)} already enrolled, {len(result.failures)} refused"
        )
        for failure in result.failures:
            click.echo(failure.describe())
        for enrolment in result.enrolled:
            if enrolment.resembles is not None:
                click.echo(_resemblance(enrolment.name, enrolment.face_id, enrolment.resembles))
        if result.domain is not None and result.domain.crowded:
            click.echo(f"warning: {domain_line(asdict(result.domain))}")
        if interrupted:
            click.echo("interrupted: run the same command again to enrol the rest")
    if interrupted:
        sys.exit(EXIT_INTERRUPTED)
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
    faces = ctx.answer(lambda g: g.identify(photo, top_k=top_k, upsample=upsample))["faces"]
    if as_json:
        print_json({"photo": str(photo), "faces": faces})
    elif not faces:
        click.echo("No face found.", err=True)
    else:
        for face in faces:
            who = face["match"]["name"] if face["match"] else face["outcome"]
            distance = f"{face['candidates'][0]['distance']:.3f}" if face["candidates"] else "-"
            click.echo(f"{who}\tbox={face['box']}\tdistance={distance}\tconfidence={face['confidence']:.2f}")
        click.echo(f"rule: {faces[0]['rule']}", err=True)
    if not faces:
        sys.exit(EXIT_NO_FACE)
    sys.exit(EXIT_OK if any(face["match"] for face in faces) else EXIT_NO_MATCH)


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
    result = ctx.answer(lambda g: g.verify(name, photo))
    if as_json:
        print_json(result)
    else:
        word = "verified" if result["verified"] else "NOT verified"
        click.echo(f"{result['name']}: {word} (distance {result['distance']:.3f}, threshold {result['threshold']:.3f})")
    sys.exit(EXIT_OK if result["verified"] else EXIT_NO_MATCH)


@cli.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def list_people(ctx: CliContext, as_json: bool) -> None:
    """List everyone enrolled.

    \b
    Example:
        gallery list --json
    """
    people = ctx.answer(lambda g: g.people())
    if as_json:
        print_json(people)
    else:
        for p in people:
            since = datetime.fromisoformat(p["created_at"])
            click.echo(f"{p['name']}\t{p['face_count']} photo(s)\tsince {since:%Y-%m-%d}")


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def remove(ctx: CliContext, name: str, as_json: bool) -> None:
    """Erase NAME: their photos' embeddings and face chips are deleted for good.

    Exit code 5 when NAME is removed but a file still holds copies of their faces (the index
    file could not be rewritten, or a reader kept the database's WAL busy); the next open or
    write of the gallery finishes the erasure.

    \b
    Example:
        gallery remove "Ada Lovelace"
    """
    result = ctx.answer(lambda g: g.remove(name))
    if as_json:
        print_json(result)
    else:
        click.echo(f"Removed {result['name']} ({result['faces_removed']} face(s))")
    if not result["erasure_complete"]:
        pending = " and ".join(result["pending"])
        click.echo(f"Warning: erasure pending: the {pending} still hold(s) copies of the faces", err=True)
        sys.exit(EXIT_ERASURE_PENDING)


class _Moment(click.ParamType):
    """An ISO 8601 date or time; one without a UTC offset is taken in the local time zone."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time (e.g. 2026-11-29 or 2026-11-29T08:00+01:00)", param, ctx)
        return moment if moment.utcoffset() is not None else moment.astimezone()


@cli.command(name="log")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(0), help="At most this many events.")
@click.option("--action", type=click.Choice(AUDITED_ACTIONS), help="Only events of this action.")
@click.option("--person", help="Events naming this person, or identifies in which any face matched them.")
@click.option("--outcome", help="Events with this outcome (any face's, for identify): match, unknown, enrolled, ...")
@click.option("--since", type=_Moment(), help="From this time on (ISO 8601; local time without an offset).")
@click.option("--until", type=_Moment(), help="Before this time.")
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON.")
@pass_context
def log(
    ctx: CliContext,
    limit: int,
    action: str | None,
    person: str | None,
    outcome: str | None,
    since: datetime | None,
    until: datetime | None,
    as_json: bool,
) -> None:
    """Show the audit log, newest first: every decision and change, never a face.

    \b
    Example:
        gallery log --person "Ada Lovelace"
        gallery log --action identify --outcome match --since 2026-11-29 --json
    """
    events = ctx.answer(
        lambda g: g.audit_log(limit=limit, action=action, person=person, outcome=outcome, since=since, until=until)
    )
    if as_json:
        print_json(events)
        return
    for event in events:
        who = f"{event['person_name']} (person {event['person_id']})" if event["person_name"] else "-"
        facts = f"\t{json.dumps(event['detail'], ensure_ascii=False)}" if event["detail"] else ""
        at = datetime.fromisoformat(event["at"]).isoformat(timespec="seconds")
        click.echo(f"{at}\t{event['action']}\t{event['outcome']}\t{who}{facts}")
