"""Login, logout, who am I, stream tickets and password changes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from quart import Blueprint, after_this_request, current_app
from quart_rate_limiter import rate_limit
from quart_schema import validate_request, validate_response

from royal.auth import (
    AnyResponse,
    clear_session_cookie,
    current_identity,
    get_passwords,
    get_revocations,
    login_required,
    public,
    set_session_cookie,
)
from royal.db import get_db
from royal.errors import APIError
from royal.login_limits import LOGIN_LIMITS
from royal.openapi import document_errors
from royal.services import accounts, tokens
from royal.services.accounts import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH

bp = Blueprint("auth", __name__)


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=150)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)
    cookie: bool = Field(False, description="Also set an HttpOnly session cookie (dashboard).")


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class TicketOut(BaseModel):
    ticket: str
    expires_in: int


class Me(BaseModel):
    id: int
    username: str
    role: str


class PasswordIn(BaseModel):
    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)
    new_password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)


class Status(BaseModel):
    status: str


@bp.post("/login")
@public
@rate_limit(limits=LOGIN_LIMITS)
@validate_request(LoginIn)
@validate_response(TokenOut)
@document_errors(401, 429)
async def login(data: LoginIn) -> TokenOut:
    """Exchange a username and password for a bearer token.

    Unknown users, wrong passwords and disabled accounts get the same 401 after the same work.
    Too many attempts per account or per client address get 429 with Retry-After.
    """
    db = get_db()
    user = await accounts.authenticate(db, get_passwords(), data.username, data.password)
    if user is None:
        raise APIError(401, "INVALID_CREDENTIALS", "Invalid username or password")
    ttl = int(current_app.config["TOKEN_TTL_SECONDS"])
    issued = await tokens.issue_token(db, user.id, "access", ttl)
    if data.cookie:

        @after_this_request
        async def _set_cookie(response: AnyResponse) -> AnyResponse:
            set_session_cookie(response, issued.token, ttl)
            return response

    return TokenOut(access_token=issued.token, expires_in=issued.expires_in)


@bp.post("/logout")
@login_required
@validate_response(Status)
async def logout() -> Status:
    """Revoke the token in use; streams it opened close at once."""
    identity = current_identity()
    await tokens.revoke_token(get_db(), identity.token_id)
    get_revocations().revoked({identity.token_id})

    @after_this_request
    async def _clear_cookie(response: AnyResponse) -> AnyResponse:
        clear_session_cookie(response)
        return response

    return Status(status="logged_out")


@bp.get("/me")
@login_required
@validate_response(Me)
async def me() -> Me:
    """The authenticated user."""
    identity = current_identity()
    return Me(id=identity.user_id, username=identity.username, role=identity.role)


@bp.post("/ticket")
@login_required
@validate_response(TicketOut)
async def ticket() -> TicketOut:
    """A single-use ticket for EventSource and WebSocket, which cannot send headers.

    Pass it as `?ticket=` within its lifetime (at most 60 s). The stream it opens lives as long
    as the token that issued it: logging out closes it.
    """
    identity = current_identity()
    ttl = min(int(current_app.config["TICKET_TTL_SECONDS"]), 60)
    issued = await tokens.issue_token(
        get_db(), identity.user_id, "ticket", ttl, parent_id=identity.token_id
    )
    return TicketOut(ticket=issued.token, expires_in=issued.expires_in)


@bp.post("/password")
@login_required
@validate_request(PasswordIn)
@validate_response(Status)
@document_errors(403)
async def change_password(data: PasswordIn) -> Status:
    """Change your own password; every token of yours is revoked, so log in again."""
    identity = current_identity()
    db = get_db()
    passwords = get_passwords()
    user = await accounts.authenticate(db, passwords, identity.username, data.current_password)
    if user is None or user.id != identity.user_id:
        raise APIError(403, "INVALID_CREDENTIALS", "The current password is wrong")
    try:
        await accounts.change_password(db, passwords, user.id, data.new_password)
    except accounts.WeakPassword as error:
        raise APIError(400, "WEAK_PASSWORD", str(error)) from None
    return Status(status="password_changed")
