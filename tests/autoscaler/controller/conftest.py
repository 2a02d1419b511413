"""Fixtures for the controller tests: the real local control plane (KWOK nodes), shared per session, and a
fresh namespace per test. Kafka, the exporter and Prometheus come from the root conftest's `local_env`."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, config

from kernel.clock import SYSTEM_CLOCK, Deadline
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
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_for(
        lambda: any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items),
        30,
        f"default ServiceAccount in {name}",
    )
    yield name
    core.delete_namespace(name)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test with `what` at the deadline."""
    deadline = Deadline(timeout)
    while True:
        value = predicate()
        if value:
            return value
        if deadline.expired():
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        SYSTEM_CLOCK.sleep(0.2)
