"""What every command shares: the context (gallery folder, threads, pipeline), exit codes, output helpers.

Exit codes (documented in the README):
    0    success: someone identified, verified, enrolled, removed, listed
    1    no match: faces found but nobody recognised, or verification failed (enroll-dir: some refused)
    2    usage error (bad options)
    3    no face found in the photo
    4    bad input or any other error, a bug included (one line on stderr); with --server also
         a service that cannot be reached or does not answer as one (ServiceUnreachable,
         ServiceResponseInvalid), a key refused (401 NotAuthenticated) or without the scope
         (403 ScopeDenied), too many requests (429 RateLimited), an overloaded or starting
         service (503 ServiceOverloaded, ServiceNotReady): a door must not open on any of them
    5    remove: the person is removed but their erasure is pending (a file still holds copies
         of their faces; the JSON's "pending" says which); the next open or write finishes it
    130  interrupted (Ctrl-C: 128 + SIGINT, the shell's convention); enroll-dir first prints what it did

1 is an answer ("nobody I know"), so nothing else may exit with it: a ``GalleryError`` is 4 (3
for ``NoFaceFound``), and so is any other exception reaching the command (a bug, or a library
failing in a way the gallery did not foresee): ``Error: unexpected <class>: <message>`` on one
line, and the traceback too only with ``--debug`` or ``GALLERY_DEBUG=1`` (one option; the
variable is its default, so a service's environment can turn it on without changing the
command line). Click's own "Aborted!" (exit 1) on Ctrl-C is replaced by exit 130.

With ``--server URL`` (or ``$GALLERY_SERVER``) identify, verify, enroll, remove, list, info and log
ask a gallery service instead of opening a gallery (``gallery.client``): the service's error
JSON names the library's error class, so the output and exit codes are the local command's.
Commands that need the gallery's files, or folders of photos, on this machine (enroll-dir,
reembed, calibrate, eval) refuse ``--server`` as a usage error (2).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from gallery.client.answers import json_value
from gallery.errors import GalleryError, NoFaceFound

if TYPE_CHECKING:
    from gallery.audit import AuditPolicy
    from gallery.client.answers import GalleryAnswers
    from gallery.gallery import Gallery
    from gallery.vision.pipeline import FacePipelineProtocol

T = TypeVar("T")

EXIT_OK, EXIT_NO_MATCH, EXIT_USAGE, EXIT_NO_FACE, EXIT_ERROR, EXIT_ERASURE_PENDING = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130  # 128 + SIGINT
DEBUG_ENV = "GALLERY_DEBUG"
SERVER_ENV = "GALLERY_SERVER"
# The key is read from the environment only: on a command line it would show in `ps` and in
# the shell's history.
API_KEY_ENV = "GALLERY_API_KEY"


def fail(err: GalleryError) -> NoReturn:
    # One line, as documented, even when the message quotes a path or a SQLite error holding newlines.
    message = " ".join(str(err).splitlines())
    click.echo(f"Error: {message}", err=True)
    sys.exit(EXIT_NO_FACE if isinstance(err, NoFaceFound) else EXIT_ERROR)


def fail_unexpected(err: BaseException, *, debug: bool) -> NoReturn:
    """A bug or an unforeseen failure: exit 4 with one line (and the traceback above it when debugging)."""
    if debug:
        click.echo("".join(traceback.format_exception(err)), err=True, nl=False)
    message = " ".join(str(err).splitlines()) or "(no message)"
    hint = "" if debug else f" (run with --debug or {DEBUG_ENV}=1 for the traceback)"
    click.echo(f"Error: unexpected {type(err).__name__}: {message}{hint}", err=True)
    sys.exit(EXIT_ERROR)


def interrupted() -> NoReturn:
    click.echo("Interrupted.", err=True)
    sys.exit(EXIT_INTERRUPTED)


def print_json(value: Any) -> None:
    """``value`` as indented JSON: times in ISO 8601 (``isoformat()``), paths and other objects as text."""
    click.echo(json.dumps(value, indent=2, default=json_value, ensure_ascii=False))


def domain_line(domain: Mapping[str, object]) -> str:
    """The domain check (``DomainStatus`` as sent) in words: for ``info``, and the desk's warning when crowded."""
    measured = f"median distance {domain['spread']:.3f} between {domain['measured']} people"
    if not domain["crowded"]:
        return f"domain: as calibrated ({measured}; crowded below {domain['limit']:.3f})"
    return (
        f"domain: CROWDED: the enrolled faces sit closer together than the calibration photos' ({measured}, "
        f"below {domain['limit']:.3f}, where {domain['quantile']:.0%} of the calibration's galleries of this size "
        f"fell): identify reads distances x{domain['scale']:.3f}, stricter, and the stated stranger rate is still not "
        "expected to hold here; calibrate on photos from this site (gallery calibrate)"
    )


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
        audit: the gallery's audit policy (``Gallery``'s ``audit``): ``"best_effort"`` or ``"required"``.
        database_url: the gallery's database (``Gallery``'s ``database_url``; None: ``gallery.db`` in the home).
        server: the URL of a gallery service to ask instead (None: open the gallery here).
        api_key: the key sent to ``server`` (never shown in a repr or a traceback).
    """

    home: Path | None = None
    threads: int | None = None
    pipeline: FacePipelineProtocol | None = None
    audit: AuditPolicy = "best_effort"
    database_url: str | None = None
    server: str | None = None
    api_key: str | None = field(default=None, repr=False)

    def answer(self, question: Callable[[GalleryAnswers], T]) -> T:
        """Ask ``question`` of the service at ``server``, else of the gallery here; errors become exit codes."""
        if self.server is None:
            from gallery.cli.local import LocalAnswers

            return self.run(lambda gallery: question(LocalAnswers(gallery)))
        from gallery.client import GalleryClient  # neither torch, FAISS, NumPy nor SQLAlchemy

        try:
            return question(GalleryClient(self.server, api_key=self.api_key))
        except GalleryError as err:
            fail(err)

    def run(self, action: Callable[[Gallery], T]) -> T:
        """Open the gallery, run ``action`` on it, turn gallery errors into exit codes (a usage error with a server)."""
        if self.server is not None:
            command = click.get_current_context().info_name
            raise click.UsageError(f"{command} works on the gallery's own files: it cannot be run with --server")
        from gallery.gallery import Gallery  # deferred: keeps `--help` instant (no torch import)
        from gallery.runtime import set_threads

        set_threads(self.threads or available_cores())
        try:
            with Gallery(self.home, pipeline=self.pipeline, audit=self.audit, database_url=self.database_url) as g:
                return action(g)
        except GalleryError as err:
            fail(err)


pass_context = click.make_pass_decorator(CliContext)


class ProgressBars(contextlib.AbstractContextManager):
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


def available_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
