"""Spark Structured Streaming adapter: runs a pipeline `Plan` in
local mode with spark-sql-kafka.

Shell: starts a JVM through PySpark. The Kafka jars come from the cache `make setup` filled.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from kernel import artefacts
from kernel.clock import SYSTEM_CLOCK
from streaming.engine import PRODUCER_BATCH_BYTES, PRODUCER_LINGER_MS, Rendered, RunOptions, RunReport
from streaming.plan import Plan

SPARK_VERSION = "4.1.1"
# The executor JVMs of a `local-cluster` master (the fault harness's): C1 only and the serial collector. An
# executor killed mid-run is replaced by a new JVM that loads Spark and the connector and compiles the task's
# code while the records wait; on this 2-core machine C2's compiler threads and the parallel collector took
# about half of that JVM's CPU (14.5 → 8.0 CPU-seconds for the executor and its Python workers from the kill
# to the last record, docs/benchmarks.md, "Faults, counted"). A real cluster's long-lived executors keep
# Spark's defaults.
LOCAL_CLUSTER_EXECUTOR_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def session(parallelism: int = 1, app_name: str = "tidescale") -> Any:
    """A local SparkSession bound to 127.0.0.1, with the Kafka connector on its classpath."""
    from pyspark.sql import SparkSession

    # Executors and the block manager otherwise advertise the machine's external address.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers run this interpreter (the venv with pandas and pyarrow), not the system python3.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    jars = ",".join(str(p) for p in artefacts.jars("spark"))
    # local[N,4]: a failed task (its Python worker killed, say) is tried 4 times in all, as on a cluster;
    # plain local[N] tries it once and fails the query. TIDESCALE_SPARK_MASTER replaces the master
    # (`local-cluster[1,1,1024]`: a standalone Master and Worker in this JVM, the executor a JVM of its own).
    master = os.environ.get("TIDESCALE_SPARK_MASTER") or f"local[{parallelism},4]"
    builder = SparkSession.builder
    if master.startswith("local-cluster"):
        builder = builder.config("spark.executor.extraJavaOptions", LOCAL_CLUSTER_EXECUTOR_JAVA_OPTIONS)
    return (
        builder.master(master)
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


# ---- Pipelines (`streaming.plan.Plan`) -------------------------------------------------------------

SPARK_TYPES = {"string": "string", "long": "bigint", "int": "int", "double": "double", "boolean": "boolean"}


def _udf_schema(plan: Plan) -> str:
    from streaming.engines.frames import result_columns

    return ", ".join(f"`{c}` {SPARK_TYPES[t]}" for c, t in result_columns(plan))


def _window_output(plan: Plan, good: Any) -> Any:
    """The Window of `plan` over `good` (typed fields plus `rt`), as Kafka `topic`, `key`, `value`."""
    from pyspark.sql import functions as F

    window = plan.window
    assert window is not None
    size = f"{window.size // 1000} seconds"
    slide = f"{(window.slide or window.size) // 1000} seconds"
    functions_by_name = {"count": F.count, "sum": F.sum, "avg": F.avg, "min": F.min, "max": F.max}
    aggregates = []
    for aggregate in window.aggregates:
        column = F.lit(1) if aggregate.field is None else F.col(f"`{aggregate.field}`")
        if aggregate.fn == "avg":
            column = column.cast("double")
        aggregates.append(functions_by_name[aggregate.fn](column).alias(aggregate.name))
    grouped = good.groupBy(F.window("rt", size, slide), *[F.col(f"`{g}`") for g in window.group_by])
    out = grouped.agg(*aggregates).select(
        *[F.col(f"`{g}`") for g in window.group_by],
        F.unix_millis(F.col("window.start")).alias("windowStart"),
        F.unix_millis(F.col("window.end")).alias("windowEnd"),
        *[F.col(f"`{a.name}`").cast(SPARK_TYPES[plan.output_type(a.name)]) for a in window.aggregates],
    )
    topic = F.lit(plan.sink.topic)
    if plan.sink.route_by:
        topic = F.concat(topic, F.lit("."), F.col(f"`{plan.sink.route_by}`").cast("string"))
    key = F.col(f"`{plan.sink.key}`").cast("string") if plan.sink.key else F.lit(None).cast("string")
    value = F.to_json(
        F.struct(*[F.col(f"`{n}`") for n, _ in plan.output_fields]), {"ignoreNullFields": "false"}
    )
    return out.select(topic.alias("topic"), key.alias("key"), value.alias("value"))


def producer_options(bootstrap: str) -> dict[str, str]:
    """The Kafka sink's options: the broker and how its producer batches (`streaming.engine`)."""
    return {
        "kafka.bootstrap.servers": bootstrap,
        "kafka.linger.ms": str(PRODUCER_LINGER_MS),
        "kafka.batch.size": str(PRODUCER_BATCH_BYTES),
    }


class SparkEngine:
    """Spark Structured Streaming in local mode; the stateless prefix is one Arrow (pandas) UDF.

    Spark's Kafka sink is at-least-once: an exactly-once spec runs at-least-once (with a note). A bounded
    run of a stateful plan runs as a batch query over the same offsets, because a streaming query never
    fires the last event-time windows without newer records to move its watermark.
    """

    name: str = "spark"
    delivery: tuple[str, ...] = ("at-least-once",)

    def run(self, plan: Plan, options: RunOptions) -> RunReport:
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.functions import pandas_udf

        from streaming.engines.frames import VectorProcess

        started = SYSTEM_CLOCK.monotonic()
        bounded = options.bounded or options.max_records is not None
        spark = session(plan.parallelism, app_name=f"tidescale-{plan.name}")
        import pandas as pd

        vector = VectorProcess(plan)

        def process(values: pd.Series) -> pd.DataFrame:
            return vector(values)

        # Real classes, not the strings `from __future__ import annotations` leaves: Spark reads the
        # hints to pick the Series → DataFrame (struct) flavour of pandas UDF.
        process.__annotations__ = {"values": pd.Series, "return": pd.DataFrame}
        process_udf = pandas_udf(process, _udf_schema(plan))  # type: ignore[call-overload]
        checkpoint = options.checkpoint_dir or (
            Path(plan.delivery.checkpoint_dir)
            if plan.delivery.checkpoint_dir
            else Path(tempfile.mkdtemp(prefix=f"tidescale-spark-{plan.name}-"))
        )
        batch = bounded and plan.stateful
        reader = spark.read if batch else spark.readStream
        source = (
            reader.format("kafka")
            .option("kafka.bootstrap.servers", options.bootstrap)
            .option("subscribe", plan.source.topic)
            .option("startingOffsets", "earliest" if batch else plan.source.start_from)
            .option("kafka.isolation.level", "read_committed")
            .option("groupIdPrefix", plan.source.group)
            .option("failOnDataLoss", "false")
            .load()
        )
        processed = source.select(process_udf(F.col("value")).alias("r"), "partition", "offset").select(
            "r.*", "partition", "offset"
        )
        outputs: list[tuple[str, Any]] = []
        if not plan.stateful:
            outputs.append(
                ("all", processed.where(F.col("kind").isNotNull()).select("topic", "key", "value"))
            )
        else:
            outputs.append(("dead", processed.where(F.col("kind") == "dead").select("topic", "key", "value")))
            good = processed.where(F.col("kind") == "out").select(
                *[F.col(f"f_{n}").alias(n) for n, _ in plan.fields],
                "partition",
                "offset",
                "topic",
                "key",
                "value",
            )
            if plan.window is not None:
                event = plan.source.event_time
                assert event is not None
                good = good.withColumn("rt", F.timestamp_millis(F.col(f"`{event.field}`"))).withWatermark(
                    "rt", f"{event.watermark_delay} milliseconds"
                )
                outputs.append(("window", _window_output(plan, good)))
            else:
                assert plan.dedupe is not None
                keys = [F.col(f"`{k}`") for k in plan.dedupe.key]
                if batch:
                    from pyspark.sql import Window as W

                    first = W.partitionBy(*keys).orderBy("partition", "offset")
                    good = good.withColumn("rn", F.row_number().over(first)).where(F.col("rn") == 1)
                else:
                    good = good.dropDuplicates(list(plan.dedupe.key))
                outputs.append(("dedupe", good.select("topic", "key", "value")))
        producer = producer_options(options.bootstrap)
        try:
            if batch:
                for _, frame in outputs:
                    frame.write.format("kafka").options(**producer).save()
                return RunReport(self.name, SYSTEM_CLOCK.monotonic() - started)
            queries = []
            for label, frame in outputs:
                writer = (
                    frame.writeStream.format("kafka")
                    .options(**producer)
                    .option("checkpointLocation", str(checkpoint / label))
                    .outputMode("append")
                )
                if bounded:
                    writer = writer.trigger(availableNow=True)
                else:
                    writer = writer.trigger(
                        processingTime=f"{max(plan.delivery.checkpoint_interval // 10, 100)} milliseconds"
                    )
                queries.append(writer.start())
            self.last_queries = list(queries)  # a supervisor (or a test) may stop them: the run then ends
            for query in queries:
                query.awaitTermination(options.timeout_s if bounded else None)
                if query.isActive:
                    query.stop()
                    raise TimeoutError(
                        f"spark pipeline {plan.name} still running after {options.timeout_s} s"
                    )
                failure = query.exception()
                if failure is not None:
                    raise RuntimeError(f"spark pipeline {plan.name} failed: {failure}")
            return RunReport(self.name, SYSTEM_CLOCK.monotonic() - started)
        finally:
            spark.stop()  # the run owns its session; this also closes the cached Kafka producers

    def render(self, plan: Plan, target: str = "kubernetes", *, spark_submit: bool = False) -> Rendered:
        from streaming import render

        return render.spark(plan, target, spark_submit=spark_submit)
