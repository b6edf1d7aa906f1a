"""The job queue through HTTP, with this app's own workers running the jobs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from royal.jobs import JobContext
from tests.conftest import bearer


@pytest.fixture(name="app")
async def _app(make_app: Callable[..., Quart]) -> AsyncIterator[Quart]:
    """The app with fast polling and retries, and a `test.flaky` job kind."""
    app = make_app(JOB_POLL_SECONDS=0.05, JOB_RETRY_BASE_SECONDS=0.05, JOB_LEASE_SECONDS=3)
    calls: list[Any] = []
    app.extensions["test.calls"] = calls

    async def flaky(context: JobContext, payload: Any) -> dict[str, int]:
        calls.append(payload)
        if context.job.attempts < payload.get("succeed_on", 99):
            raise ValueError(f"attempt {context.job.attempts} fails")
        return {"attempts": context.job.attempts}

    app.extensions["royal.jobs"].register("test.flaky", flaky)
    async with app.test_app():
        yield app


async def wait_for_status(
    client: Client, headers: dict[str, str], job_id: int, *states: str
) -> dict[str, Any]:
    for _ in range(200):
        job: dict[str, Any] = await (
            await client.get(f"/jobs/{job_id}", headers=headers)
        ).get_json()
        if job["status"] in states:
            return job
        await asyncio.sleep(0.025)
    raise AssertionError(f"job {job_id} stayed {job['status']}")


async def test_enqueue_runs_and_succeeds(client: Client, tokens: dict[str, str]) -> None:
    headers = bearer(tokens["operator"])
    response = await client.post(
        "/jobs", headers=headers, json={"kind": "system.sleep", "payload": {"seconds": 0}}
    )
    assert response.status_code == 201
    job = await response.get_json()
    assert job["status"] == "queued" and job["kind"] == "system.sleep" and job["attempts"] == 0
    done = await wait_for_status(client, headers, job["id"], "succeeded")
    assert done["result"] == {"slept": 0.0} and done["attempts"] == 1 and done["finished_at"]


async def test_retries_with_backoff_then_succeeds(client: Client, tokens: dict[str, str]) -> None:
    headers = bearer(tokens["operator"])
    job = await (
        await client.post(
            "/jobs", headers=headers, json={"kind": "test.flaky", "payload": {"succeed_on": 3}}
        )
    ).get_json()
    done = await wait_for_status(client, headers, job["id"], "succeeded", "failed")
    assert done["status"] == "succeeded" and done["attempts"] == 3
    assert done["last_error"] == "ValueError('attempt 2 fails')"


async def test_final_failure_keeps_the_error(client: Client, tokens: dict[str, str]) -> None:
    headers = bearer(tokens["operator"])
    job = await (
        await client.post("/jobs", headers=headers, json={"kind": "test.flaky", "max_attempts": 2})
    ).get_json()
    done = await wait_for_status(client, headers, job["id"], "failed")
    assert done["attempts"] == 2 and done["last_error"] == "ValueError('attempt 2 fails')"


async def test_cancel_a_running_job(client: Client, tokens: dict[str, str]) -> None:
    headers = bearer(tokens["operator"])
    job = await (
        await client.post(
            "/jobs", headers=headers, json={"kind": "system.sleep", "payload": {"seconds": 30}}
        )
    ).get_json()
    await wait_for_status(client, headers, job["id"], "running")
    asked = await client.post(f"/jobs/{job['id']}/cancel", headers=headers)
    assert asked.status_code == 200 and (await asked.get_json())["cancel_requested"] is True
    done = await wait_for_status(
        client, headers, job["id"], "cancelled"
    )  # at the next renewal (1 s)
    assert done["finished_at"]
    again = await client.post(f"/jobs/{job['id']}/cancel", headers=headers)
    assert again.status_code == 409 and (await again.get_json())["code"] == "JOB_FINISHED"


async def test_cancel_a_queued_job(client: Client, tokens: dict[str, str]) -> None:
    headers = bearer(tokens["operator"])
    job = await (
        await client.post(
            "/jobs",
            headers=headers,
            json={"kind": "system.sleep", "run_at": "2999-01-01T00:00:00Z"},
        )
    ).get_json()
    cancelled = await (await client.post(f"/jobs/{job['id']}/cancel", headers=headers)).get_json()
    assert cancelled["status"] == "cancelled"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "kind"),
        ({"kind": "system.sleep", "max_attempts": 0}, "max_attempts"),
        ({"kind": "system.sleep", "payload": [1]}, "payload"),
        ({"kind": "system.sleep", "run_at": "tomorrow"}, "run_at"),
        ({"kind": "system.sleep", "run_at": "2030-01-01T00:00:00"}, "run_at"),  # no time zone
    ],
)
async def test_bad_input_is_400_naming_the_field(
    client: Client, tokens: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = await client.post("/jobs", headers=bearer(tokens["operator"]), json=body)
    assert response.status_code == 400
    assert field in [item["field"] for item in (await response.get_json())["detail"]]


async def test_unknown_kind_is_refused(client: Client, tokens: dict[str, str]) -> None:
    response = await client.post("/jobs", headers=bearer(tokens["operator"]), json={"kind": "nope"})
    assert response.status_code == 400
    body = await response.get_json()
    assert body["code"] == "UNKNOWN_JOB_KIND" and "system.sleep" in body["error"]
    listing = await (
        await client.get("/jobs?kind=nope", headers=bearer(tokens["viewer"]))
    ).get_json()
    assert listing["items"] == []  # nothing was stored


async def test_roles(client: Client, tokens: dict[str, str]) -> None:
    body = {"kind": "system.sleep"}
    assert (await client.post("/jobs", json=body)).status_code == 401
    assert (
        await client.post("/jobs", headers=bearer(tokens["viewer"]), json=body)
    ).status_code == 403
    assert (await client.get("/jobs", headers=bearer(tokens["viewer"]))).status_code == 200
    assert (await client.get("/jobs/999", headers=bearer(tokens["viewer"]))).status_code == 404
    assert (
        await client.post("/jobs/999/cancel", headers=bearer(tokens["operator"]))
    ).status_code == 404


async def test_list_filters_and_pages_stably_while_rows_are_added(
    client: Client, tokens: dict[str, str]
) -> None:
    headers = bearer(tokens["operator"])
    future = "2999-01-01T00:00:00Z"  # never due: the workers leave them alone
    for n in range(7):
        await client.post(
            "/jobs",
            headers=headers,
            json={"kind": "system.sleep", "payload": {"n": n}, "run_at": future},
        )
    seen: list[int] = []
    cursor = None
    while True:
        query = "?limit=3&status=queued&kind=system.sleep" + (f"&cursor={cursor}" if cursor else "")
        page = await (await client.get(f"/jobs{query}", headers=headers)).get_json()
        seen.extend(job["id"] for job in page["items"])
        # Rows inserted between pages are newer: they must not shift what comes next.
        await client.post("/jobs", headers=headers, json={"kind": "system.sleep", "run_at": future})
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7 and seen == sorted(seen, reverse=True)
    bad = await client.get("/jobs?cursor=not-a-cursor", headers=headers)
    assert bad.status_code == 400 and (await bad.get_json())["code"] == "BAD_CURSOR"
    assert (await client.get("/jobs?status=bogus", headers=headers)).status_code == 400
    assert (await client.get("/jobs?limit=0", headers=headers)).status_code == 400
