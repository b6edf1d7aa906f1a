"""Login, tokens, tickets, cookies, password changes and login abuse limits."""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator, Callable

import argon2
import pytest
from argon2 import PasswordHasher
from quart import Quart
from quart.typing import TestClientProtocol as Client

from royal.auth import current_user, login_required, roles_required
from royal.db import Database
from royal.passwords import OWASP_MIN_MEMORY_KIB, OWASP_MIN_TIME_COST
from royal.services import accounts, tokens, users
from tests.conftest import PASSWORD, bearer


async def login(client: Client, username: str, password: str = PASSWORD, **extra: object) -> dict:
    response = await client.post(
        "/auth/login", json={"username": username, "password": password, **extra}
    )
    return {"status": response.status_code, "body": await response.get_json(), "r": response}


async def test_login_returns_a_bearer_token(client: Client, tokens: dict[str, str]) -> None:
    result = await login(client, "operator")
    assert result["status"] == 200
    body = result["body"]
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 12 * 3600
    assert len(body["access_token"]) >= 43  # 256 bits, url-safe base64
    assert result["r"].headers["Cache-Control"] == "no-store"
    me = await client.get("/auth/me", headers=bearer(body["access_token"]))
    assert (await me.get_json())["username"] == "operator"


async def test_username_is_case_insensitive(client: Client, tokens: dict[str, str]) -> None:
    assert (await login(client, "OPERATOR"))["status"] == 200


async def test_unknown_user_and_wrong_password_look_the_same(
    client: Client, tokens: dict[str, str]
) -> None:
    unknown = await login(client, "nobody")
    wrong = await login(client, "viewer", "not the password")
    assert unknown["status"] == wrong["status"] == 401
    assert (
        unknown["body"]
        == wrong["body"]
        == {
            "error": "Invalid username or password",
            "status_code": 401,
            "code": "INVALID_CREDENTIALS",
        }
    )


async def test_unknown_user_costs_about_as_much_as_a_wrong_password(
    make_app: Callable[..., Quart], password_hash: str
) -> None:
    app = make_app(LOGIN_RATE_LIMIT_ACCOUNT=[100, 60], LOGIN_RATE_LIMIT_CLIENT=[100, 60])
    async with app.test_app():
        await users.insert_user(app.extensions["royal.db"], "viewer", password_hash, "viewer")
        client = app.test_client()

        async def timed(username: str) -> float:
            started = time.perf_counter()
            await login(client, username, "wrong password")
            return time.perf_counter() - started

        unknown = statistics.median([await timed(f"ghost{i}") for i in range(7)])
        wrong = statistics.median([await timed("viewer") for _ in range(7)])
    # Both pay one argon2id verification; skipping it would make "unknown" ~100x faster.
    assert 0.33 < unknown / wrong < 3


async def test_disabled_user_cannot_log_in_and_loses_tokens(
    client: Client, db: Database, tokens: dict[str, str]
) -> None:
    user = await users.select_user_by_name(db, "viewer")
    assert user is not None
    await accounts.disable_account(db, user.id)
    assert (await client.get("/auth/me", headers=bearer(tokens["viewer"]))).status_code == 401
    assert (await login(client, "viewer"))["status"] == 401


async def test_anonymous_gets_json_401_with_www_authenticate(client: Client) -> None:
    response = await client.get("/auth/me")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await response.get_json())["code"] == "AUTHENTICATION_REQUIRED"


async def test_garbage_token_is_401(client: Client) -> None:
    assert (await client.get("/auth/me", headers=bearer("garbage"))).status_code == 401


async def test_logout_revokes_the_token(client: Client, tokens: dict[str, str]) -> None:
    response = await client.post("/auth/logout", headers=bearer(tokens["admin"]))
    assert response.status_code == 200
    assert await response.get_json() == {"status": "logged_out"}
    assert (await client.get("/auth/me", headers=bearer(tokens["admin"]))).status_code == 401
    # Other sessions of other users are untouched.
    assert (await client.get("/auth/me", headers=bearer(tokens["viewer"]))).status_code == 200


async def test_expired_token_is_refused(
    client: Client, db: Database, tokens: dict[str, str]
) -> None:
    await db.execute("UPDATE auth_tokens SET expires_at = :past", {"past": time.time() - 1})
    assert (await client.get("/auth/me", headers=bearer(tokens["viewer"]))).status_code == 401


async def test_cookie_session(client: Client, tokens: dict[str, str]) -> None:
    result = await login(client, "viewer", cookie=True)
    cookie = result["r"].headers["Set-Cookie"]
    assert cookie.startswith("royal_session=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert (await client.get("/auth/me")).status_code == 200  # the test client keeps cookies
    logout = await client.post("/auth/logout")
    assert "royal_session=;" in logout.headers["Set-Cookie"]
    assert (await client.get("/auth/me")).status_code == 401


async def test_long_lived_tokens_are_never_accepted_in_a_url(
    client: Client, tokens: dict[str, str]
) -> None:
    for query in ("access_token", "token", "ticket"):
        response = await client.get(f"/auth/me?{query}={tokens['viewer']}")
        assert response.status_code == 401, query


async def test_ticket_is_single_use(client: Client, tokens: dict[str, str]) -> None:
    response = await client.post("/auth/ticket", headers=bearer(tokens["viewer"]))
    body = await response.get_json()
    assert body["expires_in"] <= 60
    first = await client.get(f"/auth/me?ticket={body['ticket']}")
    assert first.status_code == 200 and (await first.get_json())["username"] == "viewer"
    assert (await client.get(f"/auth/me?ticket={body['ticket']}")).status_code == 401


async def test_ticket_expires(client: Client, db: Database, tokens: dict[str, str]) -> None:
    ticket = (
        await (await client.post("/auth/ticket", headers=bearer(tokens["viewer"]))).get_json()
    )["ticket"]
    await db.execute(
        "UPDATE auth_tokens SET expires_at = :past WHERE kind = 'ticket'", {"past": time.time()}
    )
    assert (await client.get(f"/auth/me?ticket={ticket}")).status_code == 401


async def test_ticket_dies_with_its_parent_token(client: Client, tokens: dict[str, str]) -> None:
    ticket = (
        await (await client.post("/auth/ticket", headers=bearer(tokens["viewer"]))).get_json()
    )["ticket"]
    await client.post("/auth/logout", headers=bearer(tokens["viewer"]))
    assert (await client.get(f"/auth/me?ticket={ticket}")).status_code == 401


async def test_ticket_is_not_accepted_on_writes(client: Client, tokens: dict[str, str]) -> None:
    ticket = (
        await (await client.post("/auth/ticket", headers=bearer(tokens["viewer"]))).get_json()
    )["ticket"]
    assert (await client.post(f"/auth/ticket?ticket={ticket}")).status_code == 401


async def test_password_change_revokes_every_token(client: Client, tokens: dict[str, str]) -> None:
    second = (await login(client, "operator"))["body"]["access_token"]
    response = await client.post(
        "/auth/password",
        headers=bearer(tokens["operator"]),
        json={"current_password": PASSWORD, "new_password": "a much better passphrase"},
    )
    assert response.status_code == 200
    for token in (tokens["operator"], second):
        assert (await client.get("/auth/me", headers=bearer(token))).status_code == 401
    assert (await login(client, "operator"))["status"] == 401
    assert (await login(client, "operator", "a much better passphrase"))["status"] == 200


async def test_password_change_needs_the_current_password(
    client: Client, tokens: dict[str, str]
) -> None:
    wrong = await client.post(
        "/auth/password",
        headers=bearer(tokens["viewer"]),
        json={"current_password": "nope", "new_password": "a much better passphrase"},
    )
    assert wrong.status_code == 403
    weak = await client.post(
        "/auth/password",
        headers=bearer(tokens["viewer"]),
        json={"current_password": PASSWORD, "new_password": "short"},
    )
    assert weak.status_code == 400
    assert (await weak.get_json())["detail"][0]["field"] == "new_password"


async def test_stored_hash_parameters_meet_owasp(app: Quart, db: Database) -> None:
    await accounts.create_account(
        db, app.extensions["royal.passwords"], "new", "a long enough password", "viewer"
    )
    stored = await db.fetch_val("SELECT password_hash FROM users WHERE username = 'new'")
    parameters = argon2.extract_parameters(stored)
    assert parameters.type is argon2.Type.ID
    assert parameters.memory_cost >= OWASP_MIN_MEMORY_KIB
    assert parameters.time_cost >= OWASP_MIN_TIME_COST


async def test_production_parameters_are_rfc_9106(make_app: Callable[..., Quart]) -> None:
    app = make_app(ENV="production", SECRET_KEY="p" * 40)
    assert app.config["PASSWORD_MEMORY_COST_KIB"] == 65536
    assert app.config["PASSWORD_TIME_COST"] == 3


async def test_outdated_hash_is_upgraded_at_login(client: Client, db: Database) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    await users.insert_user(db, "legacy", weak, "viewer")
    assert (await login(client, "legacy"))["status"] == 200
    upgraded = await db.fetch_val("SELECT password_hash FROM users WHERE username = 'legacy'")
    assert upgraded != weak
    assert argon2.extract_parameters(upgraded).memory_cost >= OWASP_MIN_MEMORY_KIB
    assert (await login(client, "legacy"))["status"] == 200


@pytest.fixture(name="limited_client")
async def _limited_client(
    make_app: Callable[..., Quart], password_hash: str
) -> AsyncIterator[Client]:
    app = make_app(LOGIN_RATE_LIMIT_ACCOUNT=[3, 60], LOGIN_RATE_LIMIT_CLIENT=[5, 60])
    async with app.test_app():
        await users.insert_user(app.extensions["royal.db"], "viewer", password_hash, "viewer")
        yield app.test_client()


async def test_per_account_limit_answers_429_with_retry_after(limited_client: Client) -> None:
    codes = [(await login(limited_client, "viewer", "wrong"))["status"] for _ in range(3)]
    assert codes == [401, 401, 401]
    blocked = await login(limited_client, "viewer")  # even the right password waits now
    assert blocked["status"] == 429
    assert int(blocked["r"].headers["Retry-After"]) > 0
    assert blocked["body"] == {"error": "Too Many Requests", "status_code": 429}


async def test_spoofed_forwarded_for_does_not_reset_the_client_limit(
    limited_client: Client,
) -> None:
    codes = []
    for i in range(6):
        response = await limited_client.post(
            "/auth/login",
            json={"username": f"spray{i}", "password": "guess"},
            headers={"X-Forwarded-For": f"203.0.113.{i}"},
        )
        codes.append(response.status_code)
    assert codes == [401] * 5 + [429]


async def test_the_decorators_take_a_plain_def_view_ported_from_flask(
    make_app: Callable[..., Quart], password_hash: str
) -> None:
    app = make_app()

    @app.get("/ported")
    @roles_required("operator")
    def ported() -> dict[str, str]:  # no async: Quart runs it in a thread, as it would bare
        return {"user": current_user.username}

    @app.get("/ported-login")
    @login_required
    def ported_login() -> dict[str, int]:
        return {"id": current_user.user_id}

    async with app.test_app():
        db = app.extensions["royal.db"]
        operator = await users.insert_user(db, "op", password_hash, "operator")
        viewer = await users.insert_user(db, "vi", password_hash, "viewer")
        op_token = (await tokens.issue_token(db, operator.id, "access", 60)).token
        vi_token = (await tokens.issue_token(db, viewer.id, "access", 60)).token
        client = app.test_client()
        allowed = await client.get("/ported", headers=bearer(op_token))
        assert (allowed.status_code, await allowed.get_json()) == (200, {"user": "op"})
        assert (await client.get("/ported", headers=bearer(vi_token))).status_code == 403
        assert (await client.get("/ported")).status_code == 401
        logged_in = await client.get("/ported-login", headers=bearer(vi_token))
        assert await logged_in.get_json() == {"id": viewer.id}
