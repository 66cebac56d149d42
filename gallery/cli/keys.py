"""``gallery keys``: the HTTP service's API keys (only their hashes are stored, in the gallery's database)."""

from __future__ import annotations

import click

from gallery.cli.app import cli
from gallery.cli.context import CliContext, pass_context, print_json

SCOPES = ("identify", "enrol", "admin")  # gallery.store.keys.SCOPES, without importing the store for --help


@cli.group()
def keys() -> None:
    """Make, list and revoke the API keys of `gallery serve`.

    Scopes: identify (identify, verify), enrol (enrol, remove, people), admin (everything, info,
    the audit log). Keys are shared by every service over the same gallery database; a revoked
    key stops working within the services' key cache time (5 s by default).
    """


@keys.command(name="create")
@click.option("--name", required=True, help="A name for the key (who holds it: door-1, desk, ...).")
@click.option("--scope", "scopes", multiple=True, required=True, type=click.Choice(SCOPES), help="Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def create(ctx: CliContext, name: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Make an API key and print it: this is the only time it is shown (only its hash is stored).

    \b
    Example:
        gallery keys create --name door-1 --scope identify
        gallery keys create --name desk --scope enrol --scope identify
    """
    made = ctx.run(lambda g: g.hosting.create_key(name, scopes))
    if as_json:
        print_json({**made.key.to_dict(), "key": made.secret})
        return
    click.echo(f"Created API key {made.key.name!r} ({', '.join(made.key.scopes)}). It is shown only now:", err=True)
    click.echo(made.secret)


@keys.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def list_keys(ctx: CliContext, as_json: bool) -> None:
    """List the API keys (never the keys themselves), revoked ones too.

    \b
    Example:
        gallery keys list
    """
    found = ctx.run(lambda g: g.hosting.keys())
    if as_json:
        print_json([key.to_dict() for key in found])
        return
    for key in found:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "valid"
        used = f"last used {key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never used"
        click.echo(f"{key.name}\t{','.join(key.scopes)}\t{state}\tcreated {key.created_at:%Y-%m-%d}\t{used}")


@keys.command(name="revoke")
@click.argument("name")
@pass_context
def revoke(ctx: CliContext, name: str) -> None:
    """Revoke the key NAME: services stop accepting it within their key cache time (5 s by default).

    \b
    Example:
        gallery keys revoke door-1
    """
    key = ctx.run(lambda g: g.hosting.revoke_key(name))
    click.echo(f"Revoked API key {key.name!r}")
