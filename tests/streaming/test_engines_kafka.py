"""PyFlink and Spark Structured Streaming each read JSON from one Kafka topic and write transformed
records to another, against the real broker; every record must arrive exactly as expected."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streaming.engines import flink, spark
from streaming.functions import builtin, word_count
from streaming.transform import KafkaJsonTransform
from tidescale.local import environment

pytestmark = pytest.mark.integration
KafkaIO = tuple[Callable[..., list[bytes]], Callable[..., None]]


def input_records(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "text": f"Request {i} for model-{i % 3}", "amount": i * 0.25} for i in range(n)]


def expected(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": record["id"],
        "text_upper": record["text"].upper(),
        "doubled": record["amount"] * 2,
        "words": word_count(record["text"]),
    }


def a_transform(bootstrap: str, source: str, sink: str) -> KafkaJsonTransform:
    return KafkaJsonTransform(
        bootstrap=bootstrap,
        source_topic=source,
        sink_topic=sink,
        schema={"id": "long", "text": "string", "amount": "double"},
        select={
            "id": "id",
            "text_upper": "UPPER(text)",
            "doubled": "amount * 2",
            "words": "word_count(text)",
        },
        group_id=f"group-{sink}",
        functions=(builtin("word_count"),),
    )


@pytest.mark.parametrize("engine", ["flink", "spark"])
def test_an_engine_transforms_every_record_from_one_topic_into_another_exactly(
    engine: str,
    local_env: environment.Environment,
    topic: Callable[[str], str],
    kafka_io: KafkaIO,
    tmp_path: Path,
) -> None:
    read_topic, write_topic = kafka_io
    source, sink = topic(f"{engine}-in"), topic(f"{engine}-out")
    records = input_records(40)
    write_topic(local_env.kafka_bootstrap, source, [json.dumps(r).encode() for r in records])
    job = a_transform(local_env.kafka_bootstrap, source, sink)

    if engine == "flink":
        flink.run(job, timeout_s=240)
    else:
        spark.run(job, checkpoint_dir=tmp_path / "checkpoint", timeout_s=240)

    # One more than sent: a duplicate or a stray record would show up here.
    received = [
        json.loads(v) for v in read_topic(local_env.kafka_bootstrap, sink, len(records) + 1, timeout=20)
    ]
    assert sorted(received, key=lambda r: r["id"]) == [expected(r) for r in records]
