"""Users: create, look up, change passwords, disable. Passwords arrive already hashed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from royal.db import Database

Role = Literal["admin", "operator", "viewer"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")  # a ladder, lowest first


class UsernameTaken(Exception):
    """Another user already has this username (case-insensitively)."""


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: Role
    disabled: bool
    created_at: str

    @classmethod
    def from_row(cls, row: Any) -> User:
        return cls(
            id=row["id"],
            username=row["username"],
            role=row["role"],
            disabled=bool(row["disabled"]),
            created_at=str(row["created_at"]),
        )


def role_at_least(role: str, minimum: str) -> bool:
    """Roles are a ladder: does ``role`` stand at or above ``minimum``?"""
    return role in ROLES and ROLES.index(role) >= ROLES.index(minimum)


_COLUMNS = "id, username, role, disabled, created_at"


async def count_users(db: Database) -> int:
    return int(await db.fetch_val("SELECT count(*) FROM users"))


async def insert_user(db: Database, username: str, password_hash: str, role: Role) -> User:
    row = await db.fetch_one(
        f"""INSERT INTO users (username, password_hash, role)
                 VALUES (:username, :password_hash, :role)
            ON CONFLICT DO NOTHING
              RETURNING {_COLUMNS}""",
        {"username": username, "password_hash": password_hash, "role": role},
    )
    if row is None:
        raise UsernameTaken(username)
    return User.from_row(row)


async def select_user(db: Database, user_id: int) -> User | None:
    row = await db.fetch_one(f"SELECT {_COLUMNS} FROM users WHERE id = :id", {"id": user_id})
    return User.from_row(row) if row else None


async def select_user_by_name(db: Database, username: str) -> User | None:
    row = await db.fetch_one(
        f"SELECT {_COLUMNS} FROM users WHERE lower(username) = lower(:username)",
        {"username": username},
    )
    return User.from_row(row) if row else None


async def select_credentials(db: Database, username: str) -> tuple[User, str] | None:
    """The user and their stored password hash, for login."""
    row = await db.fetch_one(
        f"""SELECT {_COLUMNS}, password_hash
              FROM users
             WHERE lower(username) = lower(:username)""",
        {"username": username},
    )
    return (User.from_row(row), row["password_hash"]) if row else None


async def update_password_hash(db: Database, user_id: int, password_hash: str) -> None:
    await db.execute(
        """UPDATE users
              SET password_hash = :password_hash, updated_at = CURRENT_TIMESTAMP
            WHERE id = :id""",
        {"id": user_id, "password_hash": password_hash},
    )


async def set_disabled(db: Database, user_id: int, disabled: bool) -> None:
    await db.execute(
        "UPDATE users SET disabled = :disabled, updated_at = CURRENT_TIMESTAMP WHERE id = :id",
        {"id": user_id, "disabled": int(disabled)},
    )
