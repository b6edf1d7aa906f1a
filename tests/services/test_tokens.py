"""Token checks against real SQLite and PostgreSQL."""

from __future__ import annotations

from royal.db import Database
from royal.services import tokens, users


async def test_dead_tokens_are_found_across_batches(database: Database, password_hash: str) -> None:
    user = await users.insert_user(database, "viewer", password_hash, "viewer")
    issued = [await tokens.issue_token(database, user.id, "access", 600) for _ in range(3)]
    await tokens.revoke_token(database, issued[1].token_id)
    # Watched ids beyond one batch, most of them unknown (a deleted user's tokens are dead too).
    watched = [t.token_id for t in issued] + list(range(10_000, 10_000 + 2 * tokens.CHECK_BATCH))
    dead = await tokens.select_dead_tokens(database, watched)
    assert issued[0].token_id not in dead and issued[2].token_id not in dead
    assert issued[1].token_id in dead and len(dead) == 1 + 2 * tokens.CHECK_BATCH
    assert await tokens.select_dead_tokens(database, []) == set()
