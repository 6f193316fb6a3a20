"""One demo cluster per test module (building it costs about ten seconds).

The lab is torn down when the module ends, also when a test or the set-up
failed (``Lab.__exit__``), and the teardown then checks that no namespace of
the lab and no process it started is left. Each test gets the console
through ``console``, which puts the cluster back as it found it afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cluster.lab.lab import process_start_time
from cluster.lab.lan import list_namespaces
from tests.e2e.console import Console, running_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    seen: dict[int, int] = {}
    prefix = ""
    try:
        with running_cluster(tmp_path_factory.mktemp("e2e")) as console:
            prefix = console.lab.prefix
            try:
                yield console
            finally:
                seen = console.lab.pids()
    finally:
        left = [n for n in list_namespaces() if prefix and n.startswith(prefix)]
        alive = [pid for pid, started in seen.items() if process_start_time(pid) == started]
        assert not left, f"the lab left namespaces behind: {left}"
        assert not alive, f"the lab left processes behind: {alive}"


@pytest.fixture
def console(cluster: Console) -> Iterator[Console]:
    yield cluster
    cluster.clean_up()
