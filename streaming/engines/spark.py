"""Spark Structured Streaming adapter: runs a `KafkaJsonTransform` in local mode with spark-sql-kafka.

Shell: starts a JVM through PySpark. The Kafka jars come from the cache `make setup` filled.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from kernel import artefacts
from streaming.transform import KafkaJsonTransform

SPARK_VERSION = "4.1.1"


def session(parallelism: int = 1, app_name: str = "tidescale") -> Any:
    """A local SparkSession bound to 127.0.0.1, with the Kafka connector on its classpath."""
    from pyspark.sql import SparkSession

    # Executors and the block manager otherwise advertise the machine's external address.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    jars = ",".join(str(p) for p in artefacts.jars("spark"))
    return (
        SparkSession.builder.master(f"local[{parallelism}]")
        .appName(app_name)
        .config("spark.jars", jars)
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", str(parallelism))
        .config("spark.driver.memory", "768m")
        .config("spark.sql.streaming.forceDeleteTempCheckpointLocation", "true")
        .getOrCreate()
    )


def run(job: KafkaJsonTransform, checkpoint_dir: Path | None = None, timeout_s: float | None = None) -> None:
    """Run the transform; with `bounded`, processes what is in the topic now (availableNow) and returns."""
    from pyspark.sql import functions as F

    spark = session(job.parallelism)
    for fn in job.functions:
        spark.udf.register(
            fn.name, fn.function, fn.result_type.upper() if fn.result_type != "long" else "bigint"
        )
    checkpoint = checkpoint_dir or Path(tempfile.mkdtemp(prefix="tidescale-spark-"))
    source = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", job.bootstrap)
        .option("subscribe", job.source_topic)
        .option("startingOffsets", "earliest")
        .option("groupIdPrefix", job.group_id)
        .load()
    )
    parsed = source.select(
        F.from_json(F.col("value").cast("string"), job.schema_ddl().replace("`", "")).alias("r")
    )
    parsed.select("r.*").createOrReplaceTempView("src")
    result = spark.sql(f"SELECT {job.select_sql()} FROM src")
    writer = (
        result.select(F.to_json(F.struct(*[F.col(f"`{c}`") for c in result.columns])).alias("value"))
        .writeStream.format("kafka")
        .option("kafka.bootstrap.servers", job.bootstrap)
        .option("topic", job.sink_topic)
        .option("checkpointLocation", str(checkpoint))
    )
    if job.bounded:
        writer = writer.trigger(availableNow=True)
    query = writer.start()
    if job.bounded:
        query.awaitTermination(timeout_s)
        if query.isActive:
            query.stop()
            raise TimeoutError(
                f"spark job {job.source_topic} → {job.sink_topic} still running after {timeout_s} s"
            )
        failure = query.exception()
        spark.stop()  # a bounded run owns its session; this also closes the cached Kafka producers
        if failure is not None:
            raise RuntimeError(f"spark job {job.source_topic} → {job.sink_topic} failed: {failure}")
