"""Opaque bearer tokens and single-use stream tickets, stored only as SHA-256 hashes.

Tokens are 256-bit random strings: a leaked database reveals no usable credential, and the
hash needs no salt or slow KDF because the input is not guessable.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from royal.db import Database

TokenKind = Literal["access", "ticket"]


@dataclass(frozen=True)
class Identity:
    """Who is calling, and through which access token (tickets resolve to their parent)."""

    user_id: int
    username: str
    role: str
    token_id: int


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown to the client once, never stored
    token_id: int
    expires_in: int


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(
    db: Database,
    user_id: int,
    kind: TokenKind,
    ttl_seconds: int,
    *,
    parent_id: int | None = None,
) -> IssuedToken:
    token = secrets.token_urlsafe(32)
    now = time.time()
    token_id = await db.fetch_val(
        """INSERT INTO auth_tokens (user_id, parent_id, kind, token_hash, created_at, expires_at)
                VALUES (:user_id, :parent_id, :kind, :token_hash, :now, :expires_at)
             RETURNING id""",
        {
            "user_id": user_id,
            "parent_id": parent_id,
            "kind": kind,
            "token_hash": hash_token(token),
            "now": now,
            "expires_at": now + ttl_seconds,
        },
    )
    return IssuedToken(token, int(token_id), ttl_seconds)


async def resolve_access_token(db: Database, token: str) -> Identity | None:
    """The identity behind a live access token of an enabled user, else None."""
    row = await db.fetch_one(
        """SELECT t.id AS token_id, u.id AS user_id, u.username, u.role
             FROM auth_tokens AS t
             JOIN users AS u ON u.id = t.user_id
            WHERE t.token_hash = :token_hash
              AND t.kind = 'access'
              AND t.revoked_at IS NULL
              AND t.expires_at > :now
              AND u.disabled = 0""",
        {"token_hash": hash_token(token), "now": time.time()},
    )
    if row is None:
        return None
    return Identity(row["user_id"], row["username"], row["role"], row["token_id"])


async def redeem_ticket(db: Database, ticket: str) -> Identity | None:
    """Use a stream ticket once; returns the identity of its (still live) parent token."""
    now = time.time()
    async with db.transaction():
        parent_id = await db.fetch_val(
            """UPDATE auth_tokens
                  SET used_at = :now
                WHERE token_hash = :token_hash
                  AND kind = 'ticket'
                  AND used_at IS NULL
                  AND revoked_at IS NULL
                  AND expires_at > :now
            RETURNING parent_id""",
            {"token_hash": hash_token(ticket), "now": now},
        )
        if parent_id is None:
            return None
        row = await db.fetch_one(
            """SELECT t.id AS token_id, u.id AS user_id, u.username, u.role
                 FROM auth_tokens AS t
                 JOIN users AS u ON u.id = t.user_id
                WHERE t.id = :parent_id
                  AND t.revoked_at IS NULL
                  AND t.expires_at > :now
                  AND u.disabled = 0""",
            {"parent_id": parent_id, "now": now},
        )
    if row is None:
        return None
    return Identity(row["user_id"], row["username"], row["role"], row["token_id"])


async def revoke_token(db: Database, token_id: int) -> None:
    """Revoke one access token and the tickets it issued."""
    await db.execute(
        """UPDATE auth_tokens
              SET revoked_at = :now
            WHERE (id = :id OR parent_id = :id) AND revoked_at IS NULL""",
        {"id": token_id, "now": time.time()},
    )


async def revoke_user_tokens(db: Database, user_id: int) -> None:
    """Revoke every token of a user (password change, disable)."""
    await db.execute(
        "UPDATE auth_tokens SET revoked_at = :now WHERE user_id = :user_id AND revoked_at IS NULL",
        {"user_id": user_id, "now": time.time()},
    )


CHECK_BATCH = 1000  # ids per query: asyncpg caps bind parameters at 32,767


async def select_dead_tokens(db: Database, token_ids: Collection[int]) -> set[int]:
    """Which of these access tokens can no longer be used (revoked, expired, user disabled
    or deleted). One query per thousand open streams of the process, however many there are.
    """
    ids = list(token_ids)
    alive: set[int] = set()
    for start in range(0, len(ids), CHECK_BATCH):
        names = {f"t{i}": token_id for i, token_id in enumerate(ids[start : start + CHECK_BATCH])}
        placeholders = ", ".join(f":{name}" for name in names)
        rows = await db.fetch_all(
            f"""SELECT t.id
                  FROM auth_tokens AS t
                  JOIN users AS u ON u.id = t.user_id
                 WHERE t.id IN ({placeholders})
                   AND t.revoked_at IS NULL
                   AND t.expires_at > :now
                   AND u.disabled = 0""",
            {**names, "now": time.time()},
        )
        alive.update(row["id"] for row in rows)
    return set(ids) - alive


async def delete_expired_tokens(db: Database, older_than_seconds: float = 86400) -> int:
    """Housekeeping: forget tokens that expired more than a day ago."""
    rows = await db.fetch_all(
        "DELETE FROM auth_tokens WHERE expires_at < :cutoff RETURNING id",
        {"cutoff": time.time() - older_than_seconds},
    )
    return len(rows)
