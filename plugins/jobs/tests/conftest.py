"""The aspen-jobs tests' cluster fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aspen.testing import LocalCluster, local_cluster

#: The plugins the test nodes load.
PLUGINS = ["jobs", "schedule", "hooks"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One 3-node cluster per test module (tests restart the nodes they kill)."""
    with local_cluster(tmp_path_factory.mktemp("jobs"), 3, plugins=PLUGINS) as running:
        yield running
