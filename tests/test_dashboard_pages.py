"""The dashboard's pages as served: the sign-in page or the dashboard at `/`, a strict
Content-Security-Policy, and every asset from Royal itself (no CDN, no build step)."""

from __future__ import annotations

import re
from pathlib import Path

from quart.typing import TestClientProtocol as Client

from royal.dashboard import CONTENT_SECURITY_POLICY
from tests.conftest import PASSWORD, bearer

STATIC = Path(__file__).parent.parent / "royal" / "dashboard" / "static"


async def test_an_anonymous_visitor_gets_the_sign_in_page(client: Client) -> None:
    response = await client.get("/")
    page = await response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'id="login-form"' in page and "alert-list" not in page
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["Cache-Control"] == "no-store"


async def test_a_signed_in_user_gets_the_dashboard_with_the_cookie(
    client: Client, tokens: dict[str, str]
) -> None:
    login = await client.post(
        "/auth/login", json={"username": "operator", "password": PASSWORD, "cookie": True}
    )
    assert login.status_code == 200
    page = await (await client.get("/")).get_data(as_text=True)  # the cookie, no header
    assert 'data-username="operator"' in page and 'data-role="operator"' in page
    assert 'id="alert-list"' in page and 'id="chat-form"' in page
    assert "login-form" not in page


async def test_the_site_name_setting_titles_the_page_escaped(
    client: Client, tokens: dict[str, str]
) -> None:
    changed = await client.put(
        "/api/settings/site_name", json={"value": "Ops <b>"}, headers=bearer(tokens["admin"])
    )
    assert changed.status_code == 200
    page = await (await client.get("/", headers=bearer(tokens["viewer"]))).get_data(as_text=True)
    assert "<title>Ops &lt;b&gt;</title>" in page


async def test_every_asset_comes_from_royal(client: Client, tokens: dict[str, str]) -> None:
    pages = [
        await (await client.get("/")).get_data(as_text=True),
        await (await client.get("/", headers=bearer(tokens["viewer"]))).get_data(as_text=True),
    ]
    referenced = {url for page in pages for url in re.findall(r'(?:src|href)="([^"]+)"', page)}
    assert referenced, "the pages load their scripts and styles"
    for url in referenced:
        assert url.startswith("/dashboard/static/"), f"{url} is not served by Royal"
        response = await client.get(url)
        assert response.status_code == 200, url
    # ES modules import each other by relative path only: nothing from elsewhere.
    for script in (STATIC / "js").glob("*.js"):
        for imported in re.findall(r'from "([^"]+)"', script.read_text()):
            assert imported.startswith("./"), f"{script.name} imports {imported}"
    script = await client.get("/dashboard/static/js/main.js")
    assert script.mimetype in ("text/javascript", "application/javascript")
