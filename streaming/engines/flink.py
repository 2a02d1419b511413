"""PyFlink adapter: runs a `KafkaJsonTransform` in a local mini-cluster with the Kafka SQL connector.

Shell: starts a JVM through PyFlink. The connector jar comes from the cache `make setup` filled.
"""

from __future__ import annotations

import sys
from typing import Any

from kernel import artefacts
from streaming.transform import KafkaJsonTransform

FLINK_VERSION = "2.2.0"
CONNECTOR = "flink-sql-connector-kafka-5.0.0-2.2.jar"


def _data_type(kind: str) -> Any:
    from pyflink.table import DataTypes

    return {
        "string": DataTypes.STRING(),
        "long": DataTypes.BIGINT(),
        "int": DataTypes.INT(),
        "double": DataTypes.DOUBLE(),
        "boolean": DataTypes.BOOLEAN(),
    }[kind]


def table_environment(parallelism: int = 1) -> Any:
    """A streaming TableEnvironment on a local mini-cluster, sized for a 2-core machine."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = env.get_config()
    jars = [p for p in artefacts.jars("flink") if p.name == CONNECTOR] or artefacts.jars("flink")
    config.set("pipeline.jars", ";".join(p.as_uri() for p in jars))
    config.set("parallelism.default", str(parallelism))
    config.set("python.executable", sys.executable)
    config.set("python.client.executable", sys.executable)
    config.set("taskmanager.memory.managed.size", "64m")
    config.set("taskmanager.numberOfTaskSlots", str(max(1, parallelism)))
    config.set("rest.bind-address", "127.0.0.1")
    config.set("rest.address", "127.0.0.1")
    return env


def _kafka_options(job: KafkaJsonTransform, topic: str, *, source: bool) -> str:
    options = {
        "connector": "kafka",
        "topic": topic,
        "properties.bootstrap.servers": job.bootstrap,
        "format": "json",
    }
    if source:
        options |= {
            "properties.group.id": job.group_id,
            "scan.startup.mode": "earliest-offset",
            "json.ignore-parse-errors": "false",
        }
        if job.bounded:
            options["scan.bounded.mode"] = "latest-offset"
    else:
        options["sink.delivery-guarantee"] = "at-least-once"
    return ", ".join(f"'{k}' = '{v}'" for k, v in options.items())


def run(job: KafkaJsonTransform, timeout_s: float | None = None) -> None:
    """Run the transform; with `bounded`, returns when every record present at start was written."""
    from pyflink.table.udf import udf

    env = table_environment(job.parallelism)
    for fn in job.functions:
        env.create_temporary_function(fn.name, udf(fn.function, result_type=_data_type(fn.result_type)))
    source_options = _kafka_options(job, job.source_topic, source=True)
    env.execute_sql(f"CREATE TEMPORARY TABLE src ({job.schema_ddl()}) WITH ({source_options})")
    result = env.sql_query(f"SELECT {job.select_sql()} FROM src")
    schema = result.get_schema()
    columns = ", ".join(
        f"`{n}` {t}" for n, t in zip(schema.get_field_names(), schema.get_field_data_types(), strict=True)
    )
    env.execute_sql(
        f"CREATE TEMPORARY TABLE dst ({columns}) WITH ({_kafka_options(job, job.sink_topic, source=False)})"
    )
    table_result = result.execute_insert("dst")
    if job.bounded:
        table_result.wait(int(timeout_s * 1000) if timeout_s else None)
