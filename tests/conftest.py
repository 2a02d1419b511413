"""Session fixtures: the real local environment (Kafka, the simulated exporter, Prometheus), started
once by the same harness as `tidescale local up`, and stopped at the end."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from kernel import logs
from kernel.clock import Deadline
from tests.waiting import new_namespace
from tidescale.local import environment


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A command run in-process (`main([...])`) sets up logging for a process (`kernel.logs.configure`);
    the test's end takes it back, so that the next test's stderr holds only its own lines."""
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", *logs.QUIET)}
    yield
    for handler in logs.installed():
        root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture(scope="session")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[environment.Environment]:
    state_dir = tmp_path_factory.mktemp("local-env")
    env = environment.up(["kafka", "exporter", "prometheus"], state_dir)
    try:
        yield env
    finally:
        environment.down(state_dir)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[environment.Environment]:
    """The one control plane of a pytest run (no node pools: tests create the nodes they need, tainted or
    selected so that other tests' pods do not land there, and delete them). `stack` adds Kafka, the exporter
    and Prometheus to the same environment when a test needs them."""
    state_dir = tmp_path_factory.mktemp("kubernetes")
    env = environment.up(["kubernetes"], state_dir)
    try:
        yield env
    finally:
        environment.down(state_dir)  # every component of the environment, `stack`'s too


@pytest.fixture(scope="module")
def stack(cluster: environment.Environment) -> environment.Environment:
    """The `cluster` environment with Kafka, the exporter (following the cluster's GPU nodes and pods) and
    Prometheus scraping it: the same control plane; the other components start with the first module that
    asks, and again for the next module if a test stopped one; all stop with `cluster`."""
    return environment.up(["kubernetes", "kafka", "exporter", "prometheus"], cluster.state_dir)


@pytest.fixture(scope="module")
def volcano_crds(cluster: environment.Environment) -> None:
    """Volcano's PodGroup and Queue CRDs (read from ../shared/crds) on the shared control plane."""
    from tests.cluster_harness import VOLCANO_CRDS
    from tidescale.local import crds

    crds.install(cluster.kubeconfig, VOLCANO_CRDS)


@pytest.fixture
def h(cluster: environment.Environment, kube: Any, namespace: str, volcano_crds: None) -> Iterator[Any]:
    """One test's nodes, scheduler(s) and objects on the shared control plane (tests/cluster_harness.py)."""
    from tests.cluster_harness import Harness

    harness = Harness(cluster.kubeconfig, kube, namespace)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture(scope="module")
def kube(cluster: environment.Environment) -> Any:
    """A Kubernetes API client for the session's control plane."""
    from kubernetes import config

    return config.new_client_from_config(config_file=cluster.kubeconfig)


@pytest.fixture
def namespace(kube: Any) -> Iterator[str]:
    """A fresh namespace per test, with its default ServiceAccount in place (pods need it)."""
    from kubernetes import client

    core = client.CoreV1Api(kube)
    name = new_namespace(core)
    yield name
    core.delete_namespace(name)


@pytest.fixture
def topic() -> Callable[[str], str]:
    """A fresh topic name per test, so tests never read each other's records."""

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    return make


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 30) -> list[bytes]:
    """Read up to `count` values from the start of `topic` (stops early at the deadline)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = Deadline(timeout)
    try:
        while len(values) < count and not deadline.expired():
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                values.append(message.value())
    finally:
        consumer.close()
    return values


def write_topic(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, value)
    remaining = producer.flush(15)
    assert remaining == 0, f"{remaining} records not delivered to {topic}"


@pytest.fixture
def kafka_io() -> tuple[Callable[..., list[bytes]], Callable[[str, str, list[bytes]], None]]:
    """(read_topic, write_topic) against a real broker."""
    return read_topic, write_topic
