"""Identity and access: tokens, SMART App Launch, clients (see DESIGN.md §5).

Public API::

    from fkj.security.keys import KeyRing
    from fkj.security.tokens import TokenService, TrustedIssuer
    from fkj.security.scopes import permits, scope_contexts, normalize_scopes
    from fkj.security.clients import register_client, get_client, list_clients
    from fkj.security.oauth import AuthSettings, auth_routes, create_launch
    from fkj.security.authenticate import principal_from_request
    from fkj.security.dev import mint_dev_token
"""
