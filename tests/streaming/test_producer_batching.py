"""Every engine's Kafka producer batches alike (up to 5 ms and 256 KiB): the Java client's defaults send each
record's batch at once and cost the broker about twice the CPU per record (docs/benchmarks.md, stop 26)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streaming import pipeline_file
from streaming.engine import PRODUCER_BATCH_BYTES, PRODUCER_LINGER_MS
from streaming.engines import flink, spark
from streaming.plan import plan

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"


@pytest.mark.parametrize("example", ["llm-preprocessor", "feature-aggregator"])
def test_every_flink_sink_table_gives_its_producer_the_batching(example: str) -> None:
    statements = flink.pipeline_statements(
        plan(pipeline_file.load(EXAMPLES / f"{example}.yaml")), "b:9092", True
    )

    sinks = [s for s in statements if s.startswith("CREATE TEMPORARY TABLE dst")]
    assert sinks, statements
    for sink in sinks:
        options = dict(re.findall(r"'([^']+)' = '([^']*)'", sink))
        assert options["connector"] == "kafka"
        assert options["properties.linger.ms"] == str(PRODUCER_LINGER_MS)
        assert options["properties.batch.size"] == str(PRODUCER_BATCH_BYTES)
    source = next(s for s in statements if s.startswith("CREATE TEMPORARY TABLE src"))
    assert "linger" not in source


def test_the_spark_kafka_sink_gives_its_producer_the_batching() -> None:
    assert spark.producer_options("b:9092") == {
        "kafka.bootstrap.servers": "b:9092",
        "kafka.linger.ms": str(PRODUCER_LINGER_MS),
        "kafka.batch.size": str(PRODUCER_BATCH_BYTES),
    }
