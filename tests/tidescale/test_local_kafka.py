"""The harness's Kafka broker: a real KRaft node from the Maven Central jars."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from confluent_kafka import Producer
from kafka import KafkaConsumer, KafkaProducer

from kernel.clock import Deadline
from tidescale.local import environment, kafka

pytestmark = pytest.mark.integration
KafkaIO = tuple[Callable[..., list[bytes]], Callable[..., None]]


def test_a_message_round_trips_through_the_broker_with_librdkafka(
    local_env: environment.Environment, topic: Callable[[str], str], kafka_io: KafkaIO
) -> None:
    read_topic, _ = kafka_io
    name = topic("roundtrip")
    producer = Producer({"bootstrap.servers": local_env.kafka_bootstrap})
    sent = [json.dumps({"n": i}).encode() for i in range(20)]
    for value in sent:
        producer.produce(name, value, key=b"k")
    assert producer.flush(15) == 0

    assert read_topic(local_env.kafka_bootstrap, name, len(sent)) == sent


def test_a_message_round_trips_through_the_broker_with_kafka_python(
    local_env: environment.Environment, topic: Callable[[str], str]
) -> None:
    name = topic("roundtrip-py")
    producer = KafkaProducer(bootstrap_servers=local_env.kafka_bootstrap)
    producer.send(name, b"hello").get(timeout=15)
    producer.close()
    consumer = KafkaConsumer(name, bootstrap_servers=local_env.kafka_bootstrap, auto_offset_reset="earliest")
    values: list[bytes] = []
    try:
        deadline = Deadline(15)
        while not values and not deadline.expired():  # the one record, then no 15 s wait for a second one
            for batch in consumer.poll(timeout_ms=500).values():
                values.extend(message.value for message in batch)
        # and nothing after it: the end offset is the one record's
        partition = next(iter(consumer.assignment()))
        assert consumer.end_offsets([partition])[partition] == 1
    finally:
        consumer.close()
    assert values == [b"hello"]


def test_the_brokers_own_perf_tools_measure_a_produce_and_consume_ceiling(
    local_env: environment.Environment, topic: Callable[[str], str]
) -> None:
    name = topic("perf")
    produced = kafka.producer_perf(local_env.kafka_bootstrap, name, records=20_000, record_size=100)
    consumed = kafka.consumer_perf(local_env.kafka_bootstrap, name, records=20_000)
    assert produced.records == 20_000
    assert produced.records_per_second > 0
    assert consumed.records == 20_000
    assert consumed.records_per_second > 0
