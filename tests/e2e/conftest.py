"""One demo cluster per test module (building it costs about ten seconds).

The lab is torn down when the module ends, also when a test or the set-up
failed (``Lab.__exit__``), and the teardown then checks that no namespace of
the lab and no process it started is left. Each test gets the console
through ``console``, which puts the cluster back as it found it afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.console import Console, checked_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with checked_cluster(tmp_path_factory.mktemp("e2e")) as console:
        yield console


@pytest.fixture
def console(cluster: Console) -> Iterator[Console]:
    yield cluster
    cluster.clean_up()
