"""The `royal` command, run as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def royal(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "royal", *args],
        env={**os.environ, "ROYAL_ENV": "testing", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(name="db_env")
def _db_env(sqlite_url: str) -> dict[str, str]:
    return {"ROYAL_DATABASE_URL": sqlite_url}


def test_db_status_upgrade_status(db_env: dict[str, str]) -> None:
    before = royal("db", "status", env=db_env)
    assert before.returncode == 0, before.stderr
    assert "applied:  none" in before.stdout
    assert "0001_settings.sql" in before.stdout

    upgrade = royal("db", "upgrade", env=db_env)
    assert upgrade.returncode == 0, upgrade.stderr
    assert "Applying 0001_settings.sql" in upgrade.stdout

    again = royal("db", "upgrade", env=db_env)
    assert "0 migration(s) applied now" in again.stdout

    after = royal("db", "status", env=db_env)
    assert "applied:  0001" in after.stdout and "pending:  none" in after.stdout


def test_routes_lists_the_api(db_env: dict[str, str]) -> None:
    result = royal("routes", env=db_env)
    assert result.returncode == 0, result.stderr
    for endpoint in ("health.healthz", "health.readyz", "openapi"):
        assert endpoint in result.stdout


def test_production_refuses_the_default_secret(tmp_path: Path, db_env: dict[str, str]) -> None:
    result = royal("db", "status", env={**db_env, "ROYAL_ENV": "production"})
    assert result.returncode != 0
    assert "ROYAL_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_production_starts_with_a_real_secret(db_env: dict[str, str]) -> None:
    env = {**db_env, "ROYAL_ENV": "production", "ROYAL_SECRET_KEY": "s" * 40}
    assert royal("db", "status", env=env).returncode == 0


def test_help_lists_the_commands() -> None:
    result = royal("--help")
    assert result.returncode == 0
    for command in ("serve", "db", "routes"):
        assert command in result.stdout


def test_user_create_set_password_disable(db_env: dict[str, str]) -> None:
    assert royal("db", "upgrade", env=db_env).returncode == 0
    created = subprocess.run(
        [sys.executable, "-m", "royal", "user", "create", "ops", "--role", "operator",
         "--password-stdin"],
        input="a sufficiently long password\n",
        env={**os.environ, "ROYAL_ENV": "testing", **db_env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "Created operator 'ops'" in created.stdout

    duplicate = subprocess.run(
        [sys.executable, "-m", "royal", "user", "create", "OPS", "--password-stdin"],
        input="a sufficiently long password\n",
        env={**os.environ, "ROYAL_ENV": "testing", **db_env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert duplicate.returncode != 0 and "taken" in duplicate.stderr

    weak = subprocess.run(
        [sys.executable, "-m", "royal", "user", "set-password", "ops", "--password-stdin"],
        input="short\n",
        env={**os.environ, "ROYAL_ENV": "testing", **db_env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert weak.returncode != 0 and "12 to 1024 characters" in weak.stderr

    disabled = royal("user", "disable", "ops", env=db_env)
    assert disabled.returncode == 0 and "Disabled 'ops'" in disabled.stdout
    missing = royal("user", "disable", "nobody", env=db_env)
    assert missing.returncode != 0 and "No user named 'nobody'" in missing.stderr
