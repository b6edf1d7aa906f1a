"""Open streams learn within one check interval that their token died, whoever killed it."""

from __future__ import annotations

from quart import Quart

from royal.db import Database
from royal.revocation import RevocationWatcher
from royal.services import accounts, users
from royal.services import tokens as token_service


async def test_watcher_fires_for_revoked_and_disabled_only(
    app: Quart, db: Database, tokens: dict[str, str]
) -> None:
    watcher = RevocationWatcher(db, interval_seconds=60)
    ids = {name: await db.fetch_val(
        "SELECT t.id FROM auth_tokens t JOIN users u ON u.id = t.user_id WHERE u.username = :n",
        {"n": name},
    ) for name in ("viewer", "operator", "admin")}  # fmt: skip
    fired: list[str] = []
    with (
        watcher.watch(ids["viewer"], lambda: fired.append("viewer")),
        watcher.watch(ids["operator"], lambda: fired.append("operator")),
        watcher.watch(ids["admin"], lambda: fired.append("admin")),
    ):
        await watcher.check()
        assert fired == []
        await token_service.revoke_token(db, ids["viewer"])
        operator = await users.select_user_by_name(db, "operator")
        assert operator is not None
        await accounts.disable_account(db, operator.id)
        await watcher.check()
        assert sorted(fired) == ["operator", "viewer"]
        await watcher.check()
        assert sorted(fired) == ["operator", "viewer"]  # once only
        assert watcher.watched == 1
    assert watcher.watched == 0
