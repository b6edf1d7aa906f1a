"""``royal user create | set-password | disable``: account management from the console."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any

import click
from quart import Quart
from quart.cli import ScriptInfo, pass_script_info

from royal.db.commands import run_with_database
from royal.services import accounts, users
from royal.services.users import ROLES, Role, User


@click.group("user", help="Manage users.")
def user_command() -> None:
    pass


def _password_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--password-stdin",
        is_flag=True,
        help="Read the password from standard input instead of prompting.",
    )(func)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@user_command.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default="viewer", show_default=True)
@_password_option
@pass_script_info
def create_command(info: ScriptInfo, username: str, role: Role, password_stdin: bool) -> None:
    """Create a user."""
    password = _read_password(password_stdin)
    app = info.load_app()

    async def create(db: Any) -> User:
        return await accounts.create_account(
            db, app.extensions["royal.passwords"], username, password, role
        )

    user = _run(app, create)
    click.echo(f"Created {user.role} {user.username!r} (id {user.id}).")


@user_command.command("set-password")
@click.argument("username")
@_password_option
@pass_script_info
def set_password_command(info: ScriptInfo, username: str, password_stdin: bool) -> None:
    """Set a user's password; their tokens and open streams are revoked."""
    password = _read_password(password_stdin)
    app = info.load_app()

    async def change(db: Any) -> None:
        user = await _existing(db, username)
        await accounts.change_password(db, app.extensions["royal.passwords"], user.id, password)

    _run(app, change)
    click.echo(f"Password of {username!r} changed; their sessions were revoked.")


@user_command.command("disable")
@click.argument("username")
@pass_script_info
def disable_command(info: ScriptInfo, username: str) -> None:
    """Disable a user; their tokens and open streams are revoked."""
    app = info.load_app()

    async def disable(db: Any) -> None:
        await accounts.disable_account(db, (await _existing(db, username)).id)

    _run(app, disable)
    click.echo(f"Disabled {username!r}; their sessions were revoked.")


async def _existing(db: Any, username: str) -> User:
    user = await users.select_user_by_name(db, username)
    if user is None:
        raise click.ClickException(f"No user named {username!r}.")
    return user


def _run(app: Quart, work: Callable[[Any], Awaitable[Any]]) -> Any:
    try:
        return run_with_database(app, work)
    except users.UsernameTaken as error:
        raise click.ClickException(f"Username {error} is taken.") from None
    except accounts.WeakPassword as error:
        raise click.ClickException(str(error)) from None
