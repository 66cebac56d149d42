"""``gallery hosts``: the machines sharing the gallery's PostgreSQL database, and what each has applied."""

from __future__ import annotations

import click

from gallery.cli.app import cli
from gallery.cli.context import CliContext, pass_context, print_json


@cli.group()
def hosts() -> None:
    """List the hosts following the gallery's database, or forget one taken out of service.

    Each host (a gallery folder on some machine, with --db) keeps an index replica and reports the
    generation it has applied; a removal's receipt names the hosts that have not applied it yet.
    """


@hosts.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def list_hosts(ctx: CliContext, as_json: bool) -> None:
    """List the hosts, the generation each has applied, and when each last reported.

    \b
    Example:
        gallery --db postgresql://gallery@db/gallery hosts list
    """
    found = ctx.run(lambda g: g.hosting.hosts())
    if as_json:
        print_json([{**vars(h), "connected": h.connected} for h in found])
        return
    for h in found:
        state = "connected" if h.connected else "offline"
        seen = f"{state}, last seen {h.seen_at:%Y-%m-%d %H:%M}"
        click.echo(f"{h.host_id[:8]}\t{h.host}\tgeneration {h.generation}\t{seen}")


@hosts.command(name="forget")
@click.argument("host_id")
@pass_context
def forget(ctx: CliContext, host_id: str) -> None:
    """Forget the host HOST_ID (its first 8 characters or more) once its folder is wiped: removals stop
    listing it as still holding copies. A host that runs again reports itself again.

    \b
    Example:
        gallery hosts forget 1f0c9a2e
    """
    host = ctx.run(lambda g: g.hosting.forget_host(host_id))
    click.echo(f"Forgot host {host.host} ({host.host_id[:8]})")
