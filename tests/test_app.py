"""The app object's life cycle: what it starts on its database, ``close()`` stops."""

from __future__ import annotations

import pytest


def test_close_stops_the_background_threads_of_a_second_app(db):
    """A second app on the same database (a test server, a CLI command) must not keep
    delivering notifications or taking audit records after it is closed."""
    from fkj.app import build_fkj
    from fkj.config import Settings
    from fkj.security.audit.writer import AuditUnavailable
    from fkj.wiring import wire

    fkj = build_fkj(Settings(database_url=db.url, base_url="http://testserver", demo=True),
                    engine=db.engine)
    wire(fkj)
    events, audit = fkj.services.extras["events"], fkj.services.extras["audit_writer"]
    assert events.running
    fkj.close()
    assert not events.running
    with pytest.raises(AuditUnavailable):
        audit.submit(db.new_tenant(), [{"resourceType": "AuditEvent"}])
