"""Account use cases: create, authenticate, change password, disable.

These combine password hashing with the users and tokens tables; like every service they take
their dependencies (the Database and the app's Passwords) as arguments.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from royal.services import tokens, users
from royal.services.users import Role, User

if TYPE_CHECKING:
    from royal.db import Database
    from royal.passwords import Passwords

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # hashing cost is bounded by refusing absurd inputs


class WeakPassword(ValueError):
    """The password does not meet the length policy."""


def check_password_policy(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise WeakPassword(
            f"Passwords have {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters."
        )


async def create_account(
    db: Database, passwords: Passwords, username: str, password: str, role: Role
) -> User:
    check_password_policy(password)
    return await users.insert_user(db, username, await passwords.hash(password), role)


async def create_first_admin(db: Database, passwords: Passwords) -> tuple[User, str] | None:
    """When no user exists, create ``admin`` with a random password (returned once)."""
    if await users.count_users(db) > 0:
        return None
    password = secrets.token_urlsafe(18)
    try:
        return await create_account(db, passwords, "admin", password, "admin"), password
    except users.UsernameTaken:  # another process won the race
        return None


async def authenticate(
    db: Database, passwords: Passwords, username: str, password: str
) -> User | None:
    """The user when the password is right and the account enabled; None otherwise.

    Unknown users cost the same hashing time as wrong passwords. An outdated hash is
    upgraded to the current parameters on a successful login.
    """
    found = await users.select_credentials(db, username)
    stored_hash = found[1] if found else None
    if not await passwords.verify(stored_hash, password) or found is None:
        return None
    user, stored_hash = found
    if user.disabled:
        return None
    if passwords.needs_rehash(stored_hash):
        await users.update_password_hash(db, user.id, await passwords.hash(password))
    return user


async def change_password(db: Database, passwords: Passwords, user_id: int, password: str) -> None:
    """Set a new password and revoke every token of the user."""
    check_password_policy(password)
    password_hash = await passwords.hash(password)
    async with db.transaction():
        await users.update_password_hash(db, user_id, password_hash)
        await tokens.revoke_user_tokens(db, user_id)


async def disable_account(db: Database, user_id: int) -> None:
    """Disable the user and revoke every token (open streams close within seconds)."""
    async with db.transaction():
        await users.set_disabled(db, user_id, True)
        await tokens.revoke_user_tokens(db, user_id)
