"""Announce expired alerts: every process checks, the database lets exactly one announce each.

Alerts leave the active list by themselves (a query on ``expires_at``); this loop only turns
the passing of an expiry into an ``alert.expired`` event for live dashboards.
"""

from __future__ import annotations

import asyncio
import logging

from quart import Quart

from royal.background import run_while_serving
from royal.db import Database
from royal.db.availability import warn_retrying
from royal.services import alerts
from royal.streams.broker import Broker

logger = logging.getLogger("royal.alerts")
EXTENSION = "royal.alerts_expiry"


def init_app(app: Quart) -> None:
    if EXTENSION in app.extensions:  # wired once, however often init_app is called
        return
    interval = float(app.config.get("ALERT_EXPIRY_CHECK_SECONDS", 2.0))
    app.extensions[EXTENSION] = interval

    run_while_serving(
        app,
        "royal-alerts-expiry",
        lambda: announce_forever(
            app.extensions["royal.db"], app.extensions["royal.broker"], interval
        ),
    )


async def announce_forever(db: Database, broker: Broker, interval: float) -> None:
    """Call ``announce_expired`` every ``interval`` seconds until cancelled; a failure (say, the
    database restarting) is logged and the next round tries again."""
    while True:
        try:
            if await alerts.announce_expired(db):
                broker.wake()
        except Exception:
            warn_retrying(logger, "announcing expired alerts failed; retrying")
        await asyncio.sleep(interval)
