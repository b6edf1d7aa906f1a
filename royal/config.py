"""Configuration: a class per environment, then ROYAL_* environment variables, then overrides.

Nothing else in Royal reads ``os.environ``; config never changes after ``create_app`` returns.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quart import Quart

DEVELOPMENT_SECRET = "royal-development-secret-do-not-deploy"
MIN_SECRET_LENGTH = 32


class ConfigError(RuntimeError):
    """The configuration cannot run; the message says what to set."""


class Config:
    """Defaults shared by every environment."""

    ENV = "default"
    DEBUG = False
    TESTING = False
    SECRET_KEY: str | None = DEVELOPMENT_SECRET

    # None means an SQLite file in the instance folder: <instance>/royal.sqlite3
    DATABASE_URL: str | None = None
    DATABASE_POOL_SIZE = 10  # PostgreSQL connections per process
    DATABASE_CONNECT_TIMEOUT_SECONDS = 3.0  # PostgreSQL: a slower connect is an outage (503)
    DATABASE_FORCE_ROLLBACK = False  # tests: everything runs in one rolled-back transaction
    SQLITE_READERS = 4  # long-lived read connections per process (plus one writer)
    SQLITE_BUSY_TIMEOUT_MS = 5000
    MIGRATE_ON_START = True

    READYZ_TIMEOUT_SECONDS = 2.0
    METRICS_PUBLIC = False  # true: /metrics and /metrics/prometheus answer without a token
    MAX_CONTENT_LENGTH = 1024 * 1024  # bytes; larger bodies get a JSON 413
    ACCESS_LOG_FORMAT = "text"  # royal serve: "text" (hypercorn.toml's format) or "json" lines

    # Auth: opaque tokens, single-use stream tickets, argon2id (RFC 9106 low-memory profile).
    TOKEN_TTL_SECONDS = 12 * 3600
    TICKET_TTL_SECONDS = 30  # capped at 60
    AUTH_RECHECK_SECONDS = 2.0  # how often open streams re-check their token (revocation)
    PASSWORD_TIME_COST = 3
    PASSWORD_MEMORY_COST_KIB = 65536
    PASSWORD_PARALLELISM = 4
    PASSWORD_HASH_CONCURRENCY = 2  # hashes at once per process; each takes memory_cost KiB
    LOGIN_RATE_LIMIT_ACCOUNT = [10, 60]  # attempts per seconds, per username
    LOGIN_RATE_LIMIT_CLIENT = [30, 60]  # attempts per seconds, per client address

    # The realtime layer (royal.streams).
    STREAM_TOPICS = ["alerts", "events", "jobs", "metrics", "system"]
    STREAM_EPHEMERAL_TOPICS = ["metrics"]  # never stored: a slow reader gets the newest value
    STREAM_SUBSCRIBER_BUFFER = (
        1000  # events buffered per subscriber before it catches up from the log
    )
    STREAM_REPLAY_PAGE = 500  # events read from the log per query when replaying
    STREAM_HEARTBEAT_SECONDS = 15.0  # SSE comment sent on an idle stream
    STREAM_RETRY_MS = 3000  # the SSE retry: hint (client reconnection delay)
    STREAM_POLL_SECONDS = 0.25  # SQLite: how often to look for events from other processes
    STREAM_FALLBACK_POLL_SECONDS = 5.0  # PostgreSQL: the poll behind LISTEN/NOTIFY
    STREAM_RETENTION_SECONDS = 7 * 24 * 3600  # events older than this are deleted
    WS_MAX_SUBSCRIPTIONS = 32  # subscribe messages held open per WebSocket
    WS_MAX_MESSAGES_PER_SECOND = 50  # a client sending faster is closed with 1008

    # The job queue (royal.jobs).
    JOB_WORKERS_ENABLED = True  # false: this process only enqueues (another runs the jobs)
    JOB_CONCURRENCY = 4  # jobs run at once per process
    JOB_LEASE_SECONDS = 30.0  # a dead worker's job runs again after this
    JOB_POLL_SECONDS = 1.0  # look for delayed jobs and expired leases this often
    JOB_RETRY_BASE_SECONDS = 2.0  # first retry after ~2 s, then 4, 8, ... (max 300)
    MAINTENANCE_INTERVAL_SECONDS = 300.0  # how often maintenance.retention is queued

    # Agents (royal.agents): replies run as agent.reply jobs in their own lane.
    AGENT_BACKEND = "local"  # "local" (embedded, no network) or "openai" (AI_SERVICE_URL)
    AGENT_CONCURRENCY = 256  # replies generated at once per process (I/O bound: waits on tokens)
    AGENT_BATCH_SECONDS = 0.05  # tokens are gathered into one `message` event this long at most
    AGENT_CONTEXT_MESSAGES = 50  # the newest messages of a session sent to the backend
    AGENT_PRESENCE_SECONDS = 2.0  # how often open streams record that a session is watched
    AGENT_LOCAL_TOKEN_SECONDS = 0.02  # the local backend's pause between words (50 tokens/s)
    AI_SERVICE_URL: str | None = None  # an OpenAI-compatible base URL, e.g. http://host/v1
    AI_API_KEY: str | None = None
    AI_MODEL = "gpt-4o-mini"
    AI_CONNECT_TIMEOUT_SECONDS = 5.0
    AI_READ_TIMEOUT_SECONDS = 60.0  # the longest silence between two chunks (or before the 1st)
    AI_RETRIES = 2  # extra attempts, only before the first token arrives
    AI_RETRY_BACKOFF_SECONDS = 0.5  # doubled after each failed attempt
    AI_BREAKER_FAILURES = 5  # consecutive failures that open the circuit
    AI_BREAKER_RESET_SECONDS = 30.0  # how long it stays open before one probe is let through

    # Alerts (royal.alerts_expiry).
    ALERT_EXPIRY_CHECK_SECONDS = 2.0  # how often each process looks for newly expired alerts

    # Browsers and proxies (royal.security).
    CORS_ORIGINS: list[str] = []  # exact origins allowed to call the API from a browser
    CORS_ALLOW_CREDENTIALS = True
    CORS_ALLOW_HEADERS = ["Authorization", "Content-Type", "Last-Event-ID", "X-Request-ID"]
    CORS_ALLOW_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    CORS_EXPOSE_HEADERS = ["X-Request-ID", "Retry-After", "X-Royal-Session-Id"]
    CORS_MAX_AGE = 600  # seconds a browser may cache a preflight answer
    WS_ALLOWED_ORIGINS: list[str] | None = None  # None: the CORS origins (plus Royal's own)
    TRUSTED_PROXIES: list[str] = []  # IPs or CIDRs whose X-Forwarded-For is believed
    REFERRER_POLICY = "no-referrer"
    HSTS_SECONDS = 365 * 24 * 3600  # sent on https requests only; 0 turns it off
    WS_MAX_MESSAGE_BYTES = 64 * 1024  # larger WebSocket messages close the socket with 1009


class DevelopmentConfig(Config):
    ENV = "development"
    DEBUG = False  # Quart's debug page is never wanted: errors are JSON everywhere


class ProductionConfig(Config):
    ENV = "production"
    SECRET_KEY = None  # must come from ROYAL_SECRET_KEY


class TestingConfig(Config):
    ENV = "testing"
    TESTING = True
    SECRET_KEY = "royal-testing-secret-0123456789abcdef"
    # OWASP's argon2id minimum: still a real hash, but fast enough for hundreds of test logins.
    PASSWORD_TIME_COST = 2
    PASSWORD_MEMORY_COST_KIB = 19456
    PASSWORD_PARALLELISM = 1


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "production": ProductionConfig,
    "testing": TestingConfig,
}

ConfigSource = str | type[Config] | Mapping[str, Any] | None


def load_config(app: Quart, config: ConfigSource = None) -> None:
    """Fill ``app.config``: the environment's class, then ROYAL_* variables, then overrides.

    ``config`` may name an environment ("production"), be a config class, or be a mapping of
    overrides applied last (tests use that). ROYAL_ENV picks the class when none is named.
    """
    overrides: Mapping[str, Any] = {}
    if isinstance(config, Mapping):
        overrides = config
        config = overrides.get("ENV")
    if config is None:
        config = os.environ.get("ROYAL_ENV", "development")
    if isinstance(config, str):
        try:
            config = CONFIGS[config]
        except KeyError:
            names = ", ".join(CONFIGS)
            raise ConfigError(f"Unknown ROYAL_ENV {config!r}: use one of {names}.") from None

    app.config.from_object(config)
    app.config.from_prefixed_env("ROYAL")
    app.config.update(overrides)
    if not app.config.get("DATABASE_URL"):
        app.config["DATABASE_URL"] = default_database_url(app.instance_path)
    check_config(app.config)


def default_database_url(instance_path: str) -> str:
    """The embedded default: an SQLite file in the instance folder (created if missing)."""
    folder = Path(instance_path)
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'royal.sqlite3'}"


def check_config(config: Mapping[str, Any]) -> None:
    """Refuse configurations that would run insecurely or not at all."""
    secret = config.get("SECRET_KEY")
    if config.get("ENV") == "production" and (
        not isinstance(secret, str)
        or secret == DEVELOPMENT_SECRET
        or len(secret) < MIN_SECRET_LENGTH
    ):
        raise ConfigError(
            "Production needs a real secret: set ROYAL_SECRET_KEY to a random string of at "
            f"least {MIN_SECRET_LENGTH} characters "
            '(python -c "import secrets; print(secrets.token_urlsafe(48))").'
        )
