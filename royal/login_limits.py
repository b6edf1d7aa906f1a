"""Login abuse limits through quart-rate-limiter: per account and per client address.

The limits come from config (``LOGIN_RATE_LIMIT_ACCOUNT`` and ``LOGIN_RATE_LIMIT_CLIENT``,
each ``[count, seconds]``) and are read at request time, so every app keeps its own. The client
address is the one ``royal.security`` trusts: a spoofed X-Forwarded-For from an untrusted peer
does not give an attacker a fresh budget. Over a limit the answer is a JSON 429 with
Retry-After.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from quart import Quart, current_app, request
from quart_rate_limiter import KeyCallable, RateLimit, RateLimiter
from quart_rate_limiter.store import RateLimiterStoreABC

from royal.security import client_ip


class ConfiguredRateLimit(RateLimit):
    """A RateLimit whose count and period are read from the app's config when checked."""

    def __init__(self, config_key: str, key_function: KeyCallable) -> None:
        self.config_key = config_key
        self.key_function = key_function
        self.skip_function = None

    @property
    def count(self) -> int:  # type: ignore[override]
        return int(current_app.config[self.config_key][0])

    @property
    def period(self) -> timedelta:  # type: ignore[override]
        return timedelta(seconds=float(current_app.config[self.config_key][1]))


async def _account_key() -> str:
    body = await request.get_json(silent=True)
    username = body.get("username") if isinstance(body, dict) else None
    return f"account:{str(username).lower()[:256]}"


async def _client_key() -> str:
    return f"client:{client_ip(request)}"


LOGIN_LIMITS: list[RateLimit] = [
    ConfiguredRateLimit("LOGIN_RATE_LIMIT_ACCOUNT", _account_key),
    ConfiguredRateLimit("LOGIN_RATE_LIMIT_CLIENT", _client_key),
]


class BoundedMemoryStore(RateLimiterStoreABC):
    """quart-rate-limiter's memory store, but pruned: keys made from attacker-chosen usernames
    must not grow memory without bound. Entries whose arrival time has passed carry no state."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._tats: dict[str, datetime] = {}
        self._max_keys = max_keys

    async def get(self, key: str, default: datetime) -> datetime:
        return self._tats.get(key, default)

    async def set(self, key: str, tat: datetime) -> None:
        if len(self._tats) >= self._max_keys and key not in self._tats:
            self._prune(datetime.now(UTC))
        self._tats[key] = tat

    def _prune(self, now: datetime) -> None:
        expired = [key for key, tat in self._tats.items() if tat <= now]
        for key in expired or list(self._tats)[: self._max_keys // 10]:
            del self._tats[key]

    async def before_serving(self) -> None:
        """Nothing to open."""

    async def after_serving(self) -> None:
        self._tats.clear()


class BlueprintRateLimiter(RateLimiter):
    """quart-rate-limiter whose hooks run on one blueprint's requests only. Its app-wide hooks
    looked up the view's limits on every request of every route, for the login's sake."""

    def __init__(self, app: Quart, blueprint: str, store: RateLimiterStoreABC) -> None:
        self.blueprint = blueprint
        super().__init__(app, store=store)

    def init_app(self, app: Quart, enabled: bool = True) -> None:
        app.before_request_funcs.setdefault(self.blueprint, []).append(self._before_request)
        app.after_request_funcs.setdefault(self.blueprint, []).append(self._after_request)
        app.before_serving(self._before_serving)
        app.after_serving(self._after_serving)
        app.config.setdefault("QUART_RATE_LIMITER_ENABLED", enabled)


def init_app(app: Quart) -> None:
    """The limits apply to the ``auth`` blueprint (``/auth/login``)."""
    app.extensions["royal.rate_limiter"] = BlueprintRateLimiter(
        app, "auth", store=BoundedMemoryStore()
    )
