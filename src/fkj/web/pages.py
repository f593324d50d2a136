"""Server-rendered pages (Norwegian bokmål)."""

from __future__ import annotations

from starlette.responses import HTMLResponse


async def landing(request, fkj) -> HTMLResponse:
    from fkj.store.tenants import list_tenants
    from starlette.concurrency import run_in_threadpool

    tenants = await run_in_threadpool(list_tenants, fkj.services.engine)
    rows = "".join(f"<li><b>{t.id}</b> {t.name} — <a href='/fhir/{t.id}/metadata'>"
                   f"/fhir/{t.id}</a></li>" for t in tenants)
    return HTMLResponse(f"""<!doctype html><html lang="nb"><head><meta charset="utf-8">
<title>FKJ-plattformen</title></head><body><h1>FKJ-plattformen</h1>
<p>Felles kommunal journal: én logisk informasjonskilde per kommune.</p>
<h2>Kommuner</h2><ul>{rows or '<li>Ingen kommuner er opprettet ennå.</li>'}</ul>
<p><a href="/openapi.json">API-beskrivelse (OpenAPI)</a></p></body></html>""")
