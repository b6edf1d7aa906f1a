"""The ``royal`` command: Quart's CLI (``routes``, ``run``, ``shell``) plus ``serve`` and ``db``.

``royal serve`` is the production entry point: it checks the config, applies migrations once,
then hands over to Hypercorn with hypercorn.toml, whose workers each build the app again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from quart import Quart
from quart.cli import QuartGroup

from royal.config import ConfigError
from royal.db import Database, migrations
from royal.db.commands import run_with_database
from royal.passwords import Passwords
from royal.services import accounts

APPLICATION_PATH = "royal:create_app()"


def _create_app() -> Quart:
    from royal import create_app

    return create_app()


cli = QuartGroup(create_app=_create_app, help="Royal: run and manage the server.")


@cli.command("serve")
@click.option(
    "--bind", "-b", "binds", multiple=True, help="host:port, unix:PATH or fd://N (repeatable)."
)
@click.option(
    "--workers", "-w", type=int, default=None, help="Worker processes (default: hypercorn.toml)."
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Hypercorn TOML config (default: ./hypercorn.toml when present).",
)
@click.option(
    "--certfile",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="TLS certificate (PEM, chain included): serve HTTPS, and HTTP/2 to clients that ask.",
)
@click.option(
    "--keyfile",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The certificate's private key (PEM); given together with --certfile.",
)
@click.option("--no-migrate", is_flag=True, help="Do not apply pending migrations first.")
@click.option(
    "--app",
    "app_path",
    default=APPLICATION_PATH,
    show_default=True,
    help="The app factory, 'module:function()': your own create_app() that extends Royal's.",
)
def serve_command(
    binds: tuple[str, ...],
    workers: int | None,
    config_path: Path | None,
    certfile: str | None,
    keyfile: str | None,
    no_migrate: bool,
    app_path: str,
) -> None:
    """Serve Royal with Hypercorn (migrates first; the first run creates the admin user)."""
    from hypercorn.config import Config as HypercornConfig

    from royal.access_log import logger_class
    from royal.server import load_app, serve

    if (certfile is None) != (keyfile is None):
        raise click.UsageError("--certfile and --keyfile go together.")
    app = load_app(app_path)
    access_logger = logger_class(app.config.get("ACCESS_LOG_FORMAT", "text"))
    database = app.extensions["royal.db"]
    click.echo(f"Royal {app.config['ENV']} on {database.url.obscure_password}", err=True)
    run_with_database(
        app, lambda db: _prepare(db, app.extensions["royal.passwords"], not no_migrate)
    )

    if config_path is None and Path("hypercorn.toml").is_file():
        config_path = Path("hypercorn.toml")
    config = HypercornConfig.from_toml(config_path) if config_path else HypercornConfig()
    if binds:
        config.bind = list(binds)
    if workers is not None:
        config.workers = workers
    if certfile is not None:
        config.certfile, config.keyfile = certfile, keyfile
    config.application_path = app_path  # each worker builds its app from it
    config.logger_class = access_logger
    sys.exit(serve(config))


async def _prepare(database: Database, passwords: Passwords, migrate: bool) -> None:
    """Migrate, then make sure someone can log in: the first run creates ``admin``."""
    if migrate:
        applied = await migrations.migrate(
            database, progress=lambda m: click.echo(f"Applying {m.path.name} ...", err=True)
        )
        if applied:
            click.echo(f"Applied {len(applied)} migration(s).", err=True)
    created = await accounts.create_first_admin(database, passwords)
    if created is not None:
        user, password = created
        click.echo(
            f"\nCreated the first user: {user.username!r} with password {password!r}\n"
            "It is shown only this once. Change it with: royal user set-password admin\n",
            err=True,
        )


def main() -> None:
    try:
        cli.main(prog_name="royal")
    except ConfigError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(2)
