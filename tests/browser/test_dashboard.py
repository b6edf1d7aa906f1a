"""The dashboard in headless Chromium against a real Royal (Hypercorn on 127.0.0.1): sign in,
live metrics, the alert feed, the job list and the agent chat, as an operator would use them."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.conftest import PASSWORD, LiveRoyal

StartRoyal = Callable[..., Awaitable[LiveRoyal]]
Screenshot = Callable[[str], Awaitable[Path]]


async def sign_in(page: Page, live: LiveRoyal, username: str = "operator") -> None:
    await page.goto(f"{live.url}/")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#feed-state")).to_have_attribute("data-state", "live")


async def api(live: LiveRoyal, method: str, path: str, role: str = "operator", **kw: Any) -> Any:
    async with httpx.AsyncClient(base_url=live.url, headers=live.headers(role)) as http:
        response = await http.request(method, path, **kw)
    assert response.is_success, response.text
    return response.json()


async def test_sign_in_and_watch_the_metrics_change(
    live_royal: StartRoyal, page: Page, screenshot: Screenshot
) -> None:
    live = await live_royal()
    await api(live, "PUT", "/api/settings/metrics_interval_seconds", "admin", json={"value": 1})

    await page.goto(f"{live.url}/")
    await expect(page).to_have_title("Sign in · Royal")
    await page.fill("#username", "viewer")
    await page.fill("#password", "not the password")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#login-error")).to_have_text("Wrong username or password.")
    await screenshot("sign-in")

    await sign_in(page, live, "viewer")
    await expect(page.locator(".topbar .user")).to_contain_text("viewer")
    await expect(page.locator("#workers")).to_have_text("1 worker")
    alerts_tile = page.locator("#tile-alerts [data-role=value]")
    await expect(alerts_tile).to_have_text("0")
    requests = page.locator("#tile-requests [data-role=detail]")
    before = await requests.text_content()

    await api(
        live,
        "POST",
        "/api/alerts",
        json={"event_code": "RWT", "message": "Weekly test", "severity": "minor"},
    )
    await expect(alerts_tile).to_have_text("1", timeout=5000)
    await expect(requests).not_to_have_text(before or "", timeout=5000)  # the total went up
    # Every snapshot is a point on the charts, kept for a reload of the page.
    points = "() => JSON.parse(sessionStorage.getItem('royal.metrics.history') || '[]').length"
    await page.wait_for_function(f"() => ({points})() >= 4", timeout=10000)
    await page.reload()
    assert await page.evaluate(points) >= 4
    await expect(page.locator("#metrics-age")).to_have_attribute("data-state", "fresh")
    await screenshot("metrics")


async def test_an_alert_appears_within_two_seconds_and_leaves_when_it_expires(
    live_royal: StartRoyal, page: Page, screenshot: Screenshot
) -> None:
    live = await live_royal()
    await sign_in(page, live)
    await expect(page.locator("#alerts-empty")).to_be_visible()

    started = time.monotonic()
    alert = await api(live, "POST", "/api/alerts", json={
        "event_code": "TOR", "severity": "extreme", "areas": ["Lincoln"],
        "message": "Tornado warning for Lincoln County until 7:45 PM",
    })  # fmt: skip
    shown = page.locator(f'#alert-list [data-alert-id="{alert["id"]}"]')
    await shown.wait_for(timeout=2000)
    assert time.monotonic() - started < 2.0
    await expect(shown).to_contain_text("Tornado warning for Lincoln County")
    await expect(page.locator("#alert-count")).to_have_text("1")

    soon = datetime.now(UTC) + timedelta(seconds=3)
    brief = await api(live, "POST", "/api/alerts", json={
        "event_code": "SVR", "severity": "severe", "message": "Severe thunderstorm warning",
        "expires_at": soon.isoformat(),
    })  # fmt: skip
    leaving = page.locator(f'#alert-list [data-alert-id="{brief["id"]}"]')
    await leaving.wait_for(timeout=2000)
    await expect(page.locator("#alert-count")).to_have_text("2")
    await screenshot("two-alerts")
    await leaving.wait_for(state="detached", timeout=10000)  # alert.expired took it away
    await expect(page.locator("#alert-count")).to_have_text("1")
    await expect(shown).to_be_visible()


async def test_the_job_list_follows_a_job_to_its_end(
    live_royal: StartRoyal, page: Page, screenshot: Screenshot
) -> None:
    live = await live_royal()
    await sign_in(page, live)
    job = await api(
        live, "POST", "/jobs", json={"kind": "system.sleep", "payload": {"seconds": 1.5}}
    )
    row = page.locator(f'#job-rows [data-job-id="{job["id"]}"]')
    await expect(row).to_have_attribute("data-status", "running", timeout=5000)
    await expect(row).to_contain_text("system.sleep")
    await screenshot("running")
    await expect(row).to_have_attribute("data-status", "succeeded", timeout=10000)

    await page.select_option("#job-filter", "active")
    await expect(row).to_be_hidden()


async def read_reply(page: Page) -> tuple[list[str], str]:
    """Watch the newest reply bubble until it completes: every text it showed, and the last."""
    bubble = page.locator(".bubble.assistant").last
    await bubble.wait_for()
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text, status = await bubble.evaluate(
            "b => [b.querySelector('.bubble-text').textContent, b.dataset.status]"
        )
        if not seen or seen[-1] != text:
            seen.append(text)
        if status == "complete":
            return seen, text
        await page.wait_for_timeout(20)
    pytest.fail(f"the reply did not complete; it showed {seen[-1]!r}")


async def stored_reply(live: LiveRoyal, page: Page) -> dict[str, Any]:
    session = await page.evaluate("localStorage.getItem('royal.chat.session')")
    messages = await api(live, "GET", f"/agents/sessions/{session}/messages")
    reply: dict[str, Any] = messages["items"][0]
    assert reply["role"] == "assistant" and reply["status"] == "complete"
    return reply


async def test_an_agent_reply_streams_token_by_token(
    live_royal: StartRoyal, page: Page, screenshot: Screenshot
) -> None:
    live = await live_royal(env={"ROYAL_AGENT_LOCAL_TOKEN_SECONDS": "0.05"})
    await api(
        live,
        "POST",
        "/api/alerts",
        json={
            "event_code": "FLW",
            "severity": "moderate",
            "message": "Flood warning on the Cedar River",
        },
    )
    await sign_in(page, live)
    await page.fill("#chat-input", "Are there open alerts, and what is the system status?")
    await page.press("#chat-input", "Enter")

    seen, final = await read_reply(page)
    reply = await stored_reply(live, page)
    assert final == reply["content"]
    assert "Flood warning on the Cedar River" in final
    # Token by token: the text grew in many steps, each one the start of the final text.
    partial = [text for text in seen if text and text != final]
    assert len(partial) >= 5, seen
    assert all(final.startswith(text) for text in partial)
    await expect(page.locator(".bubble.user").last).to_have_text(
        "Are there open alerts, and what is the system status?"
    )
    await screenshot("reply")


async def test_a_reply_completes_after_the_server_is_killed_mid_reply(
    live_royal: StartRoyal, page: Page, screenshot: Screenshot
) -> None:
    # The web tier restarts while the agent's reply goes on in the job tier (one database):
    # the browser's EventSource reconnects with Last-Event-ID and the reply completes.
    await live_royal(env={"ROYAL_AGENT_LOCAL_TOKEN_SECONDS": "0.12"})  # runs the jobs
    web = await live_royal(env={"ROYAL_JOB_WORKERS_ENABLED": "false"})
    await sign_in(page, web)
    question = " ".join(f"word{n}" for n in range(60))
    await page.fill("#chat-input", question)
    await page.click("#chat-send")
    bubble = page.locator(".bubble.assistant").last
    await expect(bubble).to_have_attribute("data-status", "streaming", timeout=10000)
    await page.wait_for_function(
        "() => document.querySelector('.bubble.assistant:last-child .bubble-text')"
        ".textContent.split(' ').length > 8"
    )

    web.server.kill()
    await expect(page.locator("#chat-state")).to_have_attribute("data-state", "reconnecting")
    before = await bubble.locator(".bubble-text").text_content()
    await screenshot("server-down")
    web.server.start()

    seen, final = await read_reply(page)
    reply = await stored_reply(web, page)
    assert final == reply["content"], "the reply must complete, with nothing lost or repeated"
    assert before and final.startswith(before) and len(before) < len(final)
    assert final.startswith(f"You asked: {question}")
    await expect(page.locator("#chat-state")).to_have_attribute("data-state", "live")
    await screenshot("completed")
