"""The controller tests' `cluster`: the real local control plane (KWOK nodes), shared per session. `kube`,
`namespace` (one per test) and `local_env` (Kafka, the exporter, Prometheus) are the root conftest's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tidescale.local import environment


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[environment.Environment]:
    """The control plane alone (no node pools: tests create the nodes they need)."""
    state_dir = tmp_path_factory.mktemp("controller-kubernetes")
    env = environment.up(["kubernetes"], state_dir)
    try:
        yield env
    finally:
        environment.down(state_dir)
