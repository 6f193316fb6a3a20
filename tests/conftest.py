"""Suite-wide pytest configuration.

Tests marked ``netns`` (and ``interop``, which implies it) build their own
network namespaces and so need root and iproute2. On a developer's machine
without root they are skipped; CI sets ``REQUIRE_NETNS=1``, and then a
namespace test that was skipped (for any reason) fails the run, so these
tests can never silently stop running there.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from cluster.lab.redisd import RedisServer
    from cluster.models import Node
    from tests.livestate import FakeEngines

_skipped_netns: list[str] = []


def _netns_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2 (the ip command)"
    return None


def _netns_required() -> bool:
    return os.environ.get("REQUIRE_NETNS") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _netns_unavailable_reason()
    for item in items:
        if "interop" in item.keywords and "netns" not in item.keywords:
            item.add_marker(pytest.mark.netns)
        if "netns" in item.keywords and reason is not None:
            if _netns_required():
                raise pytest.UsageError(f"REQUIRE_NETNS=1 but namespace tests cannot run: {reason}")
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "netns" in report.keywords:
        _skipped_netns.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _netns_required() and _skipped_netns:
        print(f"\nREQUIRE_NETNS=1 and {len(_skipped_netns)} namespace test(s) were skipped:")
        for nodeid in _skipped_netns:
            print(f"  {nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# The named actors every Django test uses (healthchecks' hc/test.py style): alice is
# an administrator, sam has the support role, charlie is logged in with no role.
# Imports stay inside the fixtures so the engine's tests run without Django.


@pytest.fixture(autouse=True)
def _no_status_hub_left() -> Iterator[None]:
    """A test that opened an event stream started the process's status hub in its
    own event loop, which ends with it: forget the hub, and close its thread's
    database connection, before the next test."""
    yield
    hub = sys.modules.get("cluster.hub")
    if hub is not None:
        hub.reset_shared()


@pytest.fixture
def alice(db: None) -> User:
    from tests.factories import make_user

    return make_user("alice", "administrator")


@pytest.fixture
def sam(db: None) -> User:
    from tests.factories import make_user

    return make_user("sam", "support")


@pytest.fixture
def charlie(db: None) -> User:
    from tests.factories import make_user

    return make_user("charlie")


@pytest.fixture
def nodes(db: None) -> list[Node]:
    """node1..node3, ordinals 1..3."""
    from tests.factories import make_nodes

    return make_nodes(3)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server on a Unix socket for the whole run (never the host's)."""
    from cluster.lab.redisd import RedisServer

    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The private Redis's URL, emptied before each test that uses it."""
    from cluster import statekeys

    client = statekeys.sync_client(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def engines(settings: Any, redis_url: str) -> Iterator[FakeEngines]:
    """Stand-in engines writing live state into the private Redis, which
    ``settings.REDIS_URL`` then points at (tests/livestate.py)."""
    from tests.livestate import FakeEngines

    settings.REDIS_URL = redis_url
    fake = FakeEngines(redis_url)
    yield fake
    fake.close()
