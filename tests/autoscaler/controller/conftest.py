"""Fixtures for the controller tests: the real local control plane (KWOK nodes), shared per session, and a
fresh namespace per test. Kafka, the exporter and Prometheus come from the root conftest's `local_env`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client, config

from tests.waiting import new_namespace
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


@pytest.fixture(scope="session")
def kube(cluster: environment.Environment) -> client.ApiClient:
    return config.new_client_from_config(config_file=cluster.kubeconfig)


@pytest.fixture
def namespace(kube: client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test, with its default ServiceAccount in place (pods need it)."""
    core = client.CoreV1Api(kube)
    name = new_namespace(core)
    yield name
    core.delete_namespace(name)
