"""The operator dashboard at ``/``: Jinja pages plus plain ES modules and CSS, served by Royal.

No build step and nothing from a CDN: the page's Content-Security-Policy allows this origin
only, so an operator's browser never fetches code from elsewhere. The page holds no data of its
own. Its scripts read the same APIs and streams as any client, with the HttpOnly session cookie
that ``POST /auth/login {"cookie": true}`` sets, so every rule of docs/security.md applies.
"""

from __future__ import annotations

from quart import Blueprint, Response, g, render_template
from quart_schema import hide

from royal.auth import public
from royal.db import get_db
from royal.services import settings

bp = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/dashboard/static",
)
# Pages and assets for browsers, not the API: out of the OpenAPI document, as quart-schema
# does for the app's own static files.
hide(Blueprint.send_static_file)

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


@bp.get("/")
@public
@hide
async def index() -> Response:
    """The dashboard for a signed-in user, else its sign-in page (same URL: nothing to bookmark
    twice, and no redirect loop when a session expires)."""
    site_name = await settings.get_setting(get_db(), "site_name")
    identity = g.get("identity")
    template = "dashboard/index.html" if identity is not None else "dashboard/login.html"
    page = await render_template(template, identity=identity, site_name=site_name)
    response = Response(page, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-store"  # the page names the signed-in user
    return response
