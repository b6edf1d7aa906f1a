from __future__ import annotations

from pathlib import Path

import pytest

from royal import create_app
from royal.config import ConfigError, ProductionConfig


def test_environment_variables_override_the_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROYAL_READYZ_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("ROYAL_DATABASE_URL", "sqlite:////tmp/royal-env.db")
    app = create_app("testing")
    assert app.config["READYZ_TIMEOUT_SECONDS"] == 0.5  # parsed as JSON
    assert app.config["DATABASE_URL"] == "sqlite:////tmp/royal-env.db"


def test_overrides_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROYAL_SQLITE_READERS", "2")
    app = create_app({"ENV": "testing", "SQLITE_READERS": 7})
    assert app.config["SQLITE_READERS"] == 7


def test_royal_env_picks_the_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROYAL_ENV", "testing")
    assert create_app().config["TESTING"] is True


def test_default_database_is_sqlite_in_the_instance_folder() -> None:
    app = create_app("testing")
    url = app.config["DATABASE_URL"]
    assert url == f"sqlite:///{Path(app.instance_path) / 'royal.sqlite3'}"
    assert Path(app.instance_path).is_dir()


@pytest.mark.parametrize("secret", [None, "short", "royal-development-secret-do-not-deploy"])
def test_production_refuses_weak_secrets(secret: str | None) -> None:
    with pytest.raises(ConfigError, match="ROYAL_SECRET_KEY") as caught:
        create_app({"ENV": "production", "SECRET_KEY": secret})
    assert "\n" not in str(caught.value)


def test_production_accepts_a_real_secret() -> None:
    app = create_app({"ENV": "production", "SECRET_KEY": "x" * 48})
    assert app.config["ENV"] == "production" and app.config["DEBUG"] is False
    assert ProductionConfig.SECRET_KEY is None


def test_unknown_environment_is_refused() -> None:
    with pytest.raises(ConfigError, match="Unknown ROYAL_ENV"):
        create_app("staging")
