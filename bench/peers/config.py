"""The peers' settings, read once from ``PEER_*`` environment variables when an app is made."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PeerConfig:
    """Rows come from PostgreSQL when ``postgres_url`` is set, else from ``sqlite_path``."""

    postgres_url: str | None
    sqlite_path: str
    upstream_url: str | None
    pool_size: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> PeerConfig:
        postgres_url = environ.get("PEER_DATABASE_URL") or None
        if postgres_url and not postgres_url.startswith(("postgresql://", "postgres://")):
            raise RuntimeError(f"PEER_DATABASE_URL is not a postgresql:// URL: {postgres_url}")
        sqlite_path = environ.get("PEER_SQLITE_PATH", "")
        if not (postgres_url or sqlite_path):
            raise RuntimeError("set PEER_SQLITE_PATH (a file) or PEER_DATABASE_URL (PostgreSQL)")
        return cls(
            postgres_url=postgres_url,
            sqlite_path=sqlite_path,
            upstream_url=upstream_url_from_env(environ),
            # Royal's default pool size; give Gunicorn's gthread worker one per thread.
            pool_size=int(environ.get("PEER_DB_POOL_SIZE", "10")),
        )


def upstream_url_from_env(environ: Mapping[str, str] = os.environ) -> str | None:
    """The upstream service's URL for W4, when one runs."""
    return environ.get("PEER_UPSTREAM_URL") or None
