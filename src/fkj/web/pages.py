"""Server-rendered pages (Norwegian bokmål).

Every page is rendered from a template of ``web/templates`` by :func:`environment`, whose
autoescaping is on for every template: a value from the database or a request (a tenant's
name, a client's name, a message) is shown as text, never as markup. No page builds HTML
from strings by hand.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2
from starlette.responses import HTMLResponse

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: the headers of every page: no caching, no framing, no scripts or outside resources
PAGE_HEADERS = {
    "Cache-Control": "no-store", "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'",
}


@functools.cache
def environment() -> jinja2.Environment:
    """The templates' environment: autoescaping on for every template (not only ``.html``)."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                              autoescape=True)


def render(name: str, status: int = 200, **context) -> HTMLResponse:
    """The page ``name`` rendered with ``context``, with :data:`PAGE_HEADERS`."""
    html = environment().get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


async def landing(request, fkj) -> HTMLResponse:
    from starlette.concurrency import run_in_threadpool

    from fkj.store.tenants import list_tenants

    tenants = await run_in_threadpool(list_tenants, fkj.services.engine)
    return render("landing.html", tenants=tenants)
