"""``royal db upgrade`` and ``royal db status`` (also ``quart --app royal:create_app db ...``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from quart import Quart
from quart.cli import ScriptInfo, pass_script_info

from royal.db import migrations

T = TypeVar("T")


@click.group("db", help="Database schema migrations.")
def db_command() -> None:
    pass


@db_command.command("upgrade")
@pass_script_info
def upgrade_command(info: ScriptInfo) -> None:
    """Apply pending migrations, printing each one."""
    app = info.load_app()
    applied = run_with_database(app, lambda db: migrations.migrate(db, progress=_announce))
    click.echo(f"Database is up to date ({len(applied)} migration(s) applied now).")


@db_command.command("status")
@pass_script_info
def status_command(info: ScriptInfo) -> None:
    """Show applied and pending migrations."""
    app = info.load_app()
    state = run_with_database(app, migrations.status)
    click.echo(f"database: {app.extensions['royal.db'].url.obscure_password}")
    click.echo(f"applied:  {', '.join(f'{v:04d}' for v in state.applied) or 'none'}")
    click.echo(f"pending:  {', '.join(m.path.name for m in state.pending) or 'none'}")


def _announce(migration: migrations.Migration) -> None:
    click.echo(f"Applying {migration.path.name} ...")


def run_with_database(app: Quart, work: Callable[..., Awaitable[T]]) -> T:
    """Connect the app's Database, run ``work(db)``, disconnect: for CLI commands."""

    async def _inner() -> T:
        database = app.extensions["royal.db"]
        await database.connect()
        try:
            return await work(database)
        finally:
            await database.disconnect()

    return asyncio.run(_inner())
