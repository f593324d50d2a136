"""Property-based fuzzing of the whole REST API from its OpenAPI document (schemathesis):
no input may produce a 5xx, and every error is an OperationOutcome. Runs on both backends
against a tenant that has data in it."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.helpers import FHIR, create, patient
from tests.conftest import auth_headers

EXAMPLES = 800


def test_no_input_gives_a_server_error(asgi_app, fkj_app, client):
    p = create(client, patient("Fuzz"))
    client.put(f"{client.base}/Patient/fuzz-1", json={**p, "id": "fuzz-1"}, headers=FHIR)
    tenant = client.tenant
    headers = auth_headers(fkj_app, tenant)
    schema = schemathesis.openapi.from_asgi("/openapi.json", asgi_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    strategy = st.one_of([op.as_strategy() for op in operations])

    @given(case=strategy, real_tenant=st.booleans())
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case, real_tenant):
        if real_tenant and case.path_parameters and "tenant" in case.path_parameters:
            case.path_parameters["tenant"] = tenant
        response = case.call(headers=headers)
        assert response.status_code < 500, (case.method, case.formatted_path,
                                            response.text[:500])
        if response.status_code >= 400 and response.content:
            assert response.json()["resourceType"] == "OperationOutcome", response.text[:300]

    check()
