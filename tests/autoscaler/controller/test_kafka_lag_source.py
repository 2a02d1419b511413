"""The Kafka lag metric source against the real broker: lag from committed and end offsets, groups without
commits (KEDA's `latest` and `earliest`), unknown topics, several clusters, and a broker that is not there."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition

from autoscaler.api.policy import KafkaLagTrigger
from autoscaler.controller.ports import MetricRequest
from autoscaler.controller.sources.kafka_lag import KafkaLagSource
from autoscaler.core.triggers import Context, Observations, default_registry
from kernel.clock import SYSTEM_CLOCK, Deadline
from tidescale.local import environment
from tidescale.local.process import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def admin(local_env: environment.Environment) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=local_env.kafka_bootstrap, request_timeout_ms=10_000)
    yield client
    client.close()


@pytest.fixture
def lag_source(local_env: environment.Environment) -> Iterator[KafkaLagSource]:
    source = KafkaLagSource(local_env.kafka_bootstrap, timeout_s=5)
    yield source
    source.close()


@pytest.fixture
def filled(
    local_env: environment.Environment, admin: KafkaAdminClient, topic: Callable[[str], str]
) -> Callable[[list[int]], str]:
    """A fresh topic with one partition per count, holding that many records each."""

    def make(counts: list[int]) -> str:
        name = topic("lag")
        admin.create_topics(
            {name: {"num_partitions": len(counts), "replication_factor": 1}}, wait_for_metadata=True
        )
        producer = KafkaProducer(bootstrap_servers=local_env.kafka_bootstrap)
        try:
            for partition, n in enumerate(counts):
                for i in range(n):
                    producer.send(name, f"r{i}".encode(), partition=partition)
            producer.flush(15)
        finally:
            producer.close()
        return name

    return make


def commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        tps = {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}
        consumer.assign(list(tps))
        consumer.commit(tps)
    finally:
        consumer.close()


def a_request(policy: str, topic: str, group: str, **more: Any) -> MetricRequest:
    spec = KafkaLagTrigger(type="KafkaLag", topic=topic, group=group, lag_per_replica=5, **more)
    return MetricRequest(policy=policy, trigger="lag", spec=spec, namespace="ml")


def now() -> float:
    return SYSTEM_CLOCK.now().timestamp()


def test_lag_is_the_end_offsets_less_the_groups_committed_offsets(
    local_env: environment.Environment, lag_source: KafkaLagSource, filled: Callable[[list[int]], str]
) -> None:
    name = filled([10, 10, 10])
    commit(local_env.kafka_bootstrap, f"{name}-g", name, {0: 4, 1: 10, 2: 3})
    at = now()
    reading = lag_source.read([a_request("ml/a", name, f"{name}-g")], at)[("ml/a", "lag")]
    assert reading.error is None
    assert reading.value == 30 - 17
    assert dict(reading.series) == {"partitions": 3.0, "partitionsWithLag": 2.0, "uncommittedPartitions": 0.0}
    assert reading.at == at


def test_a_group_without_commits_counts_as_keda_counts_it(
    local_env: environment.Environment, filled: Callable[[list[int]], str]
) -> None:
    name = filled([7, 5])
    request = a_request("ml/new", name, f"{name}-never")
    latest = KafkaLagSource(local_env.kafka_bootstrap, timeout_s=5)
    earliest = KafkaLagSource(local_env.kafka_bootstrap, timeout_s=5, offset_reset="earliest")
    try:
        by_latest = latest.read([request], now())[("ml/new", "lag")]
        by_earliest = earliest.read([request], now())[("ml/new", "lag")]
    finally:
        latest.close()
        earliest.close()
    # latest (KEDA's default): a new consumer starts at the end; 1 a partition keeps one replica to start it
    assert by_latest.value == 2
    assert by_latest.series["uncommittedPartitions"] == 2
    # earliest: it will read everything there is
    assert by_earliest.value == 12


def test_one_read_serves_many_policies_groups_and_topics_and_follows_new_records(
    local_env: environment.Environment, lag_source: KafkaLagSource, filled: Callable[[list[int]], str]
) -> None:
    a, b = filled([5, 5]), filled([20])
    commit(local_env.kafka_bootstrap, f"{a}-g1", a, {0: 5, 1: 5})
    commit(local_env.kafka_bootstrap, f"{a}-g2", a, {0: 1, 1: 0})
    commit(local_env.kafka_bootstrap, f"{b}-g1", b, {0: 15})
    requests = [a_request(f"ml/a1-{i}", a, f"{a}-g1") for i in range(100)]
    requests += [a_request(f"ml/a2-{i}", a, f"{a}-g2") for i in range(100)]
    requests += [a_request(f"ml/b-{i}", b, f"{b}-g1") for i in range(100)]
    got = lag_source.read(requests, now())
    assert lag_source.rounds == 1
    assert {got[(f"ml/a1-{i}", "lag")].value for i in range(100)} == {0.0}
    assert {got[(f"ml/a2-{i}", "lag")].value for i in range(100)} == {9.0}
    assert {got[(f"ml/b-{i}", "lag")].value for i in range(100)} == {5.0}
    producer = KafkaProducer(bootstrap_servers=local_env.kafka_bootstrap)
    try:
        for _ in range(4):
            producer.send(a, b"more", partition=1)
        producer.flush(15)
    finally:
        producer.close()
    again = lag_source.read(requests[:1], now())
    assert again[("ml/a1-0", "lag")].value == 4.0


def test_an_unknown_topic_fails_only_its_own_requests(
    local_env: environment.Environment, lag_source: KafkaLagSource, filled: Callable[[list[int]], str]
) -> None:
    name = filled([3])
    missing = f"{name}-missing"
    got = lag_source.read([a_request("ml/ok", name, "g"), a_request("ml/missing", missing, "g")], now())
    assert got[("ml/ok", "lag")].value == 1.0  # no commits, latest: 1 for its one partition
    error = got[("ml/missing", "lag")].error
    assert error == f"Kafka at {local_env.kafka_bootstrap}: topic {missing!r} does not exist"
    assert got[("ml/missing", "lag")].value is None


def test_a_broker_with_nothing_listening_reads_as_an_error_and_is_not_retried_at_once(
    local_env: environment.Environment, filled: Callable[[list[int]], str]
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    name = filled([2])
    source = KafkaLagSource(local_env.kafka_bootstrap, timeout_s=1, retry_after_s=60)
    try:
        requests = [a_request("ml/dead", name, "g", bootstrap_servers=dead), a_request("ml/live", name, "g")]
        got = source.read(requests, now())
        error = got[("ml/dead", "lag")].error
        assert error is not None and dead in error
        assert got[("ml/live", "lag")].value == 1.0  # the default cluster is read all the same
        # within retry_after_s the dead cluster is not dialled again: the reading says when it will be
        later = source.read(requests[:1], now() + 1)[("ml/dead", "lag")].error
        assert later is not None and dead in later and "next attempt in" in later
    finally:
        source.close()


def test_the_reading_is_what_the_kafka_lag_evaluator_caps_at_the_partition_count(
    local_env: environment.Environment, lag_source: KafkaLagSource, filled: Callable[[list[int]], str]
) -> None:
    name = filled([40, 40])
    reading = lag_source.read([a_request("ml/a", name, f"{name}-g")], now())[("ml/a", "lag")]
    assert reading.value == 2.0  # no commits yet, latest
    commit(local_env.kafka_bootstrap, f"{name}-g", name, {0: 0, 1: 0})
    reading = lag_source.read([a_request("ml/a", name, f"{name}-g")], now())[("ml/a", "lag")]
    spec = a_request("ml/a", name, "g").spec
    at = SYSTEM_CLOCK.now()
    proposal = (
        default_registry()
        .get("KafkaLag")
        .evaluate(spec, "lag", reading, Observations(replicas=1, ready=1), Context(), at, at.timestamp())
    )
    # lag 80 at 5 a replica would be 16 replicas; two partitions allow two consumers
    assert reading.value == 80.0
    assert proposal.replicas == 2
    assert "capped at 2 partitions" in proposal.reason


def test_a_topic_deleted_after_a_read_fails_its_requests_while_the_others_keep_reading(
    local_env: environment.Environment,
    admin: KafkaAdminClient,
    lag_source: KafkaLagSource,
    filled: Callable[[list[int]], str],
) -> None:
    kept, doomed = filled([4, 4]), filled([6])
    requests = [a_request("ml/kept", kept, "g"), a_request("ml/doomed", doomed, "g")]
    first = lag_source.read(requests, now())
    assert first[("ml/doomed", "lag")].value == 1.0
    admin.delete_topics([doomed])
    deadline = Deadline(30)
    while True:
        got = lag_source.read(requests, now())  # the partition list is cached: the end offsets find it gone
        if got[("ml/doomed", "lag")].error or deadline.expired():
            break
        SYSTEM_CLOCK.sleep(0.2)
    error = got[("ml/doomed", "lag")].error
    assert error is not None and doomed in error
    assert got[("ml/kept", "lag")].value == 2.0
