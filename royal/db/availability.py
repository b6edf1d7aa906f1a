"""Which errors mean "the database cannot be reached right now" rather than a bug.

Royal answers those with 503 and a Retry-After (errors.py), and its background loops wait and
try again instead of dying. PostgreSQL stopping, restarting or dropping a connection shows up
as a refused or reset socket, a connection-class SQLSTATE (08xxx), an operator-intervention
one (57Pxx: shutting down, starting up) or a connect that times out.
"""

from __future__ import annotations

import logging
import sys

import asyncpg  # type: ignore[import-untyped]

RETRY_AFTER_SECONDS = 5


class DatabaseUnavailable(Exception):
    """The database did not answer in time; the operation can be retried shortly."""


UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,
    ConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)


def is_unavailable(error: BaseException) -> bool:
    """True for an error that says the database is (for now) out of reach, or was caused by
    one."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, UNAVAILABLE_ERRORS):
            return True
        if isinstance(cause, asyncpg.InterfaceError) and "connection is closed" in str(cause):
            return True
        cause = cause.__cause__
    return False


def warn_retrying(logger: logging.Logger, message: str, *args: object) -> None:
    """Log a background loop's failure from its ``except`` block: one line while the database
    is unavailable (an outage would otherwise print a traceback per loop per second), the
    traceback for anything else."""
    error = sys.exc_info()[1]
    if error is not None and is_unavailable(error):
        logger.warning(f"{message} (database unavailable: %r)", *args, error)
    else:
        logger.warning(message, *args, exc_info=True)
