"""Connects the layers (security, policy, audit, events, views) to the core app.

Each layer registers hooks and routes here, so the core never imports them and the whole
composition is visible in one place.
"""

from __future__ import annotations

from fkj.app import FkjApp
from fkj.types import Principal


def wire(fkj: FkjApp) -> FkjApp:
    from fkj.search.registry import default_registry

    from fkj.search.tenant_registry import check_search_parameters, invalidate_on_commit

    fkj.services.extras.setdefault("registry", default_registry())
    fkj.services.hooks.after_commit.append(invalidate_on_commit)
    fkj.services.hooks.before_commit.append(check_search_parameters)
    if fkj.settings.demo:
        fkj.directory = _demo_directory(fkj)
    if fkj.settings.auth_enabled:
        _wire_security(fkj)
        _wire_policy_and_audit(fkj)
    from fkj.bulk.routes import export_routes
    fkj.extra_routes.extend(export_routes(fkj))
    from fkj.views.wiring import register_views
    register_views(fkj)
    from fkj.events.wiring import register_events
    register_events(fkj)
    return fkj


def _wire_security(fkj: FkjApp) -> None:
    from fkj.security.authenticate import principal_from_request
    from fkj.security.dev import mint_dev_token
    from fkj.security.enforce import check_result, compartment_filter, scope_check
    from fkj.security.oauth import AuthSettings, auth_routes

    settings, engine = fkj.settings, fkj.services.engine
    auth = AuthSettings.from_settings(settings, engine, directory=fkj.directory)
    fkj.services.extras["auth"] = auth
    fkj.extra_routes.extend(auth_routes(auth))

    def authenticate(headers: dict, tenant: str) -> Principal:
        return principal_from_request(headers, tenant, auth.token_service)

    def mint_token(tenant: str, scope: str, **claims) -> str:
        return mint_dev_token(engine, tenant, scope, demo=settings.demo,
                              base_url=settings.base_url, **claims)

    fkj.authenticate = authenticate
    fkj.mint_token = mint_token  # type: ignore[attr-defined]
    hooks = fkj.services.hooks
    hooks.authorize.append(scope_check)
    hooks.check_result.append(check_result)
    hooks.search_filters.append(compartment_filter)
    fkj.capability_hooks.append(_smart_capability(settings.base_url))


def _wire_policy_and_audit(fkj: FkjApp) -> None:
    """The need-to-know policy (``FKJ_POLICY=0`` switches it off, benchmarks only) and the
    audit log (``FKJ_AUDIT=0``, benchmarks only). The policy hooks run after the scope check;
    the audit guard runs first."""
    import os

    from fkj.security.audit.wiring import register_audit
    from fkj.security.policy import register_policy

    if os.environ.get("FKJ_POLICY", "1") != "0":
        register_policy(fkj)
    register_audit(fkj)


def _smart_capability(base_url: str):
    def hook(rest: dict, tenant: str) -> None:
        rest["security"] = {
            "cors": True,
            "service": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR"}]}],
            "extension": [{
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [
                    {"url": "authorize", "valueUri": f"{base_url}/auth/authorize"},
                    {"url": "token", "valueUri": f"{base_url}/auth/token"},
                    {"url": "introspect", "valueUri": f"{base_url}/auth/introspect"},
                    {"url": "revoke", "valueUri": f"{base_url}/auth/revoke"}]}],
            "description": "SMART App Launch v2 and Backend Services; see "
                           f"{base_url}/fhir/{tenant}/.well-known/smart-configuration"}
    return hook


def _demo_directory(fkj: FkjApp):
    """People offered on the demo login page: those the seed recorded for the tenant."""
    from fkj.errors import NotFound
    from fkj.store.tenants import tenant_settings

    def directory(tenant: str) -> list[dict]:
        try:
            return tenant_settings(fkj.services.engine, tenant).get("demo_people", [])
        except NotFound:
            return []
    return directory
