from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sec_helpers import BASE, REDIRECT, directory  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from fkj.security import tables  # noqa: E402,F401 - registers the tables on metadata
from fkj.security.clients import register_client  # noqa: E402
from fkj.security.oauth import AuthSettings, auth_routes  # noqa: E402
from fkj.store.schema import metadata  # noqa: E402


@pytest.fixture
def engine(tmp_path):
    eng = create_engine(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def settings(engine):
    return AuthSettings(engine=engine, base_url=BASE, demo=True, directory=directory)


@pytest.fixture
def ts(settings):
    return settings.token_service


@pytest.fixture
def client(settings):
    app = Starlette(routes=auth_routes(settings))
    with TestClient(app, base_url=BASE, follow_redirects=False) as c:
        yield c


@pytest.fixture
def app_client(engine):
    """A public SMART app client."""
    return register_client(
        engine, "app", client_type="public", name="Testapp", redirect_uris=[REDIRECT],
        scopes="openid fhirUser launch launch/patient offline_access online_access "
               "patient/*.cruds user/*.cruds")
