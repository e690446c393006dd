"""Fixtures shared by every test module: real redis-server and S3 servers on free ports.

The servers themselves live in tests/servers.py (plain context managers); these are thin pytest
wrappers. Tests that stop or restart a server must start their own with those context managers,
not use the session-wide `s3_server`, whose in-memory state other tests depend on.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

# `tests/` has no __init__.py, so pytest puts `tests/` (not the repository root) on sys.path, and
# the folder tests/common would then shadow the real `common` package as an empty namespace
# package. Putting the root first makes `import common` and `import tests.servers` resolve to the
# real files. (Unneeded once pyproject.toml sets `pythonpath = ["."]` for pytest.)
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pytest  # noqa: E402

from tests import servers as srv  # noqa: E402


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[srv.RedisServer]:
    """A fresh redis-server (AOF on, appendfsync everysec) with its data in this test's tmp_path."""
    with srv.redis_server(tmp_path / "redis") as server:
        yield server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[srv.S3Server]:
    """One moto S3 server for the whole session; use `s3_bucket` for an isolated bucket."""
    with srv.s3_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: srv.S3Server) -> Iterator[tuple[str, str]]:
    """(endpoint_url, bucket_name): a new, empty bucket on the session's S3 server.

    Credentials are `tests.servers.FAKE_ACCESS_KEY_ID` / `FAKE_SECRET_ACCESS_KEY`; pass them
    explicitly. The bucket and its objects are deleted afterwards (moto keeps them in memory).
    """
    s3_server.start()  # no-op while running; brings it back if a test stopped it by mistake
    name = f"test-{uuid.uuid4().hex[:20]}"
    srv.create_bucket(s3_server.endpoint_url, name)
    yield s3_server.endpoint_url, name
    srv.delete_bucket(s3_server.endpoint_url, name)


pytest_plugins = ["tests.model_fixtures", "tests.quality_fixtures"]
