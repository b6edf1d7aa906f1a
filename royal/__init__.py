"""Royal: an async, Flask-compatible backend on Quart and Hypercorn, SSE-first."""

from __future__ import annotations

from quart import Quart
from quart_schema import QuartSchema

from royal import (
    agents,
    alerts_expiry,
    auth,
    dashboard,
    db,
    errors,
    jobs,
    login_limits,
    metrics,
    request_id,
    response_values,
    security,
)
from royal.app import RoyalQuart
from royal.blueprints import agents as agents_bp
from royal.blueprints import alerts as alerts_bp
from royal.blueprints import auth as auth_bp
from royal.blueprints import events as events_bp
from royal.blueprints import health, live, openai_api
from royal.blueprints import jobs as jobs_bp
from royal.blueprints import metrics as metrics_bp
from royal.blueprints import settings as settings_bp
from royal.blueprints import system as system_bp
from royal.config import ConfigSource, load_config
from royal.json_provider import OrjsonProvider
from royal.openapi import RoyalOpenAPIProvider
from royal.streams import extension as streams

__version__ = "0.1.0"


def create_app(config: ConfigSource = None) -> Quart:
    """Build a Royal app: config, extensions, blueprints and error handlers. Nothing else."""
    app = RoyalQuart(__name__, instance_relative_config=True)
    load_config(app, config)

    db.init_app(app)
    request_id.init_app(app)
    metrics.init_app(app)
    security.init_app(app)
    login_limits.init_app(app)
    auth.init_app(app)
    streams.init_app(app)
    jobs.init_app(app)
    agents.init_app(app)
    alerts_expiry.init_app(app)
    system_bp.init_app(app)
    QuartSchema(
        app,
        info={"title": "Royal", "version": __version__},
        conversion_preference="pydantic",
        openapi_provider_class=RoyalOpenAPIProvider,
    )
    app.json = OrjsonProvider(app)  # after QuartSchema, which installs a stdlib-json provider
    response_values.install(app)  # after QuartSchema too: replaces its make_response wrapper
    errors.register_error_handlers(app)

    app.register_blueprint(health.bp)
    app.register_blueprint(auth_bp.bp, url_prefix="/auth")
    app.register_blueprint(live.bp)
    app.register_blueprint(jobs_bp.bp, url_prefix="/jobs")
    app.register_blueprint(events_bp.bp, url_prefix="/events")
    app.register_blueprint(alerts_bp.bp, url_prefix="/api/alerts")
    app.register_blueprint(settings_bp.bp, url_prefix="/api/settings")
    app.register_blueprint(system_bp.bp, url_prefix="/api/system")
    app.register_blueprint(agents_bp.bp, url_prefix="/agents")
    app.register_blueprint(openai_api.bp, url_prefix="/v1")
    app.register_blueprint(metrics_bp.bp)
    app.register_blueprint(dashboard.bp)
    return app
