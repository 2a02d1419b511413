"""PyFlink adapter: runs a pipeline `Plan` in a local mini-cluster
with the Kafka SQL connector.

Shell: starts a JVM through PyFlink. The connector jar comes from the cache `make setup` filled.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from kernel import artefacts
from kernel.clock import SYSTEM_CLOCK
from kernel.errors import PermanentError
from streaming.engine import PRODUCER_BATCH_BYTES, PRODUCER_LINGER_MS, Rendered, RunOptions, RunReport
from streaming.plan import Plan
from streaming.render import EXECUTION_MODE, flink_settings

FLINK_VERSION = "2.2.0"
CONNECTOR = "flink-sql-connector-kafka-5.0.0-2.2.jar"
# PyFlink's switch between "loopback" (workers as threads of the client, its default on a local
# mini-cluster) and "process" (one worker process per subtask); `TableEnvironment._open` reads it.
PYTHON_WORKER_MODE_VARIABLE = "_python_worker_execution_mode"
# Extra options of the JVM PyFlink starts for a local mini-cluster (its gateway, which runs the JobManager and
# the TaskManager); `pyflink_gateway_server` puts `JVM_ARGS` before Flink's own `env.java.opts.all`. Both
# compilers, but C2 only for code hot enough to be a record's path: every job of a process brings new
# classes (the planner's generated code, its operators), so at the JVM's default thresholds C2 recompiled
# through every job, 0.4-1.3 CPU-s per 200,000 records on a machine of 2 cores the Python workers need; C1
# alone (this engine's choice before) compiles little but runs the record's path about twice as slowly (the
# task threads 0.8-1.2 CPU-s against 0.3-0.5). With C2's thresholds raised (invocations 10×, back edges
# 10×), once the path is compiled (after one run of the benchmark's size) the JVM took 1.13-1.27 CPU-s per
# run against 1.41-2.10 with C1 alone, measured alternating, per process (docs/benchmarks.md, stop 28).
# A cluster's long-running TaskManager keeps the JVM's default (the rendered FlinkDeployment sets nothing).
LOCAL_JVM_ARGS_VARIABLE = "JVM_ARGS"
LOCAL_JVM_ARGS = (
    "-XX:Tier4InvocationThreshold=50000 -XX:Tier4MinInvocationThreshold=20000 "
    "-XX:Tier4CompileThreshold=60000 -XX:Tier4BackEdgeThreshold=400000"
)
# The lib/ directory PyFlink's gateway JVM takes its classpath from (`pyflink_gateway_server`). Locally it is
# PyFlink's own lib/ with the Kafka connector beside it, as a cluster's image has it: a connector passed in
# `pipeline.jars` instead is loaded again by every job's own class loader, so each job (every benchmark
# run, every restart from a checkpoint) interprets and compiles the whole Kafka client anew — about 1.3 of
# the JVM's 5.6-7.2 CPU-seconds per 200,000 records, measured alternating (issue #16).
LOCAL_LIB_VARIABLE = "FLINK_LIB_DIR"
LOCAL_HOME_VARIABLE = "FLINK_HOME"
KAFKA_SOURCE_CLASS = "org.apache.flink.connector.kafka.source.KafkaSource"


def _data_type(kind: str) -> Any:
    from pyflink.table import DataTypes

    return {
        "string": DataTypes.STRING(),
        "long": DataTypes.BIGINT(),
        "int": DataTypes.INT(),
        "double": DataTypes.DOUBLE(),
        "boolean": DataTypes.BOOLEAN(),
    }[kind]


def embedded_pythonpath() -> str:
    """What the JVM-embedded interpreter (thread mode) needs on its path: this interpreter's
    site-packages (pemja itself, the job's dependencies) and the directory holding `streaming`.
    It starts without the venv's `site` setup, so neither `python.executable` nor the editable install's
    .pth file reaches it (reference §7: `No module named 'pemja'` otherwise)."""
    import sysconfig

    import streaming

    entries = [sysconfig.get_paths()["purelib"], str(Path(streaming.__file__).resolve().parent.parent)]
    inherited = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join([*entries, *(p for p in inherited.split(os.pathsep) if p and p not in entries)])


def _pyflink_home() -> Path:
    """The installed PyFlink package: a Flink home (bin/, lib/, opt/, plugins/)."""
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def local_lib_directory() -> Path | None:
    """PyFlink's lib/ jars and the Kafka connector, linked into one folder of the cache; None without the
    connector (then `pipeline.jars` carries whatever the cache has).

    The folder is named by what it links to (so another checkout's PyFlink, or another connector, gets its
    own) and, once made, never changes: it is built aside and renamed into place, so processes starting
    together (parallel test lanes) neither see it half made nor trip over each other."""
    try:
        connector = [p for p in artefacts.jars("flink") if p.name == CONNECTOR]
    except PermanentError:  # never fetched: `table_environment` says so when it needs the jars
        return None
    if not connector:
        return None
    jars = [*sorted((_pyflink_home() / "lib").glob("*.jar")), connector[0].resolve()]
    key = hashlib.sha256("\n".join(str(j) for j in jars).encode()).hexdigest()[:12]
    folder = artefacts.cache_dir() / "flink-lib" / f"pyflink-{FLINK_VERSION}-{key}"
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    for jar in jars:
        (staging / jar.name).symlink_to(jar)
    try:
        staging.rename(folder)
    except OSError:  # another process made it first
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _connector_on_classpath() -> bool:
    """Whether the running gateway JVM's own class path has the Kafka connector (it started with
    `local_lib_directory`): then no job needs it in `pipeline.jars`."""
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    try:
        jvm.java.lang.Class.forName(
            KAFKA_SOURCE_CLASS, False, jvm.java.lang.ClassLoader.getSystemClassLoader()
        )
    except Exception:  # py4j wraps the JVM's ClassNotFoundException in its own error
        return False
    return True


def table_environment(parallelism: int = 1) -> Any:
    """A streaming TableEnvironment on a local mini-cluster, sized for a 2-core machine."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    # Read by the JVM PyFlink starts (once per process): thread mode's embedded interpreter needs it.
    os.environ["PYTHONPATH"] = embedded_pythonpath()
    # On a local mini-cluster PyFlink otherwise runs every subtask's Python worker as threads of *this*
    # process ("loopback"): all of them behind one GIL, beside this process's own threads, so
    # parallelism 2 gets one core of Python. Separate worker processes (what a cluster runs) use both
    # cores (docs/benchmarks.md, stop 23). Read once, when the environment is created.
    os.environ.setdefault(PYTHON_WORKER_MODE_VARIABLE, "process")
    if not os.environ.get("KUBERNETES_SERVICE_HOST"):
        # Read when the gateway JVM starts (the first environment of a process); in a pod the JVM is there.
        os.environ.setdefault(LOCAL_JVM_ARGS_VARIABLE, LOCAL_JVM_ARGS)
        if LOCAL_LIB_VARIABLE not in os.environ and LOCAL_HOME_VARIABLE not in os.environ:
            lib = local_lib_directory()
            if lib is not None:
                # Without FLINK_HOME, PyFlink points FLINK_LIB_DIR at its own lib/ whatever it was.
                os.environ[LOCAL_HOME_VARIABLE] = str(_pyflink_home())
                os.environ[LOCAL_LIB_VARIABLE] = str(lib)
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = env.get_config()
    config.set("parallelism.default", str(parallelism))
    config.set("python.executable", sys.executable)
    config.set("python.client.executable", sys.executable)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return env  # in a FlinkDeployment pod: the image has the connector in lib/, the cluster its config
    if not _connector_on_classpath():
        jars = [p for p in artefacts.jars("flink") if p.name == CONNECTOR] or artefacts.jars("flink")
        config.set("pipeline.jars", ";".join(p.as_uri() for p in jars))
    config.set("taskmanager.memory.managed.size", "64m")
    config.set("taskmanager.numberOfTaskSlots", str(max(1, parallelism)))
    config.set("rest.bind-address", "127.0.0.1")
    config.set("rest.address", "127.0.0.1")
    return env


# ---- Pipelines (`streaming.plan.Plan`) -------------------------------------------------------------

SQL_TYPES = {"string": "STRING", "long": "BIGINT", "int": "INT", "double": "DOUBLE", "boolean": "BOOLEAN"}
UDF_NAME = "tidescale_process"


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _with(options: dict[str, str]) -> str:
    return ", ".join(f"'{k}' = '{v.replace(chr(39), chr(39) * 2)}'" for k, v in options.items())


def _interval_seconds(ms: int) -> str:
    return f"INTERVAL '{ms / 1000:.3f}' SECOND"


def source_options(plan: Plan, bootstrap: str, bounded: bool) -> dict[str, str]:
    options = {
        "connector": "kafka",
        "topic": plan.source.topic,
        "properties.bootstrap.servers": bootstrap,
        "properties.group.id": plan.source.group,
        # Resume where the group committed (on each checkpoint); a new group starts at startFrom.
        "scan.startup.mode": "group-offsets",
        "properties.auto.offset.reset": plan.source.start_from,
        "properties.isolation.level": "read_committed",
        "value.format": "raw",
    }
    if bounded:
        options["scan.bounded.mode"] = "latest-offset"
    return options


def sink_options(plan: Plan, bootstrap: str, value_format: str, role: str) -> dict[str, str]:
    sink, dead = (re.escape(t) for t in (plan.sink.topic, plan.dead_letter.topic))
    options = {
        "connector": "kafka",
        # A pattern, so the `topic` metadata column may name the sink, its per-route topics or the DLQ.
        "topic-pattern": f"{sink}|{sink}\\..+|{dead}",
        "properties.bootstrap.servers": bootstrap,
        "key.format": "raw",
        "key.fields": "_k",
        "value.format": value_format,
        "value.fields-include": "EXCEPT_KEY",
        "sink.delivery-guarantee": plan.delivery.guarantee,
        "properties.linger.ms": str(PRODUCER_LINGER_MS),
        "properties.batch.size": str(PRODUCER_BATCH_BYTES),
    }
    if plan.delivery.guarantee == "exactly-once":
        # Stable per pipeline and sink, so a restart from a checkpoint aborts the old transactions.
        options["sink.transactional-id-prefix"] = f"tidescale-{plan.name}-{plan.sink.topic}-{role}"
        options["properties.transaction.timeout.ms"] = "900000"
    return options


def pipeline_statements(plan: Plan, bootstrap: str, bounded: bool) -> list[str]:
    """The DDL and the INSERTs (one statement set) that run `plan`; the UDF is `UDF_NAME`."""
    from streaming.engines.frames import result_columns

    columns = ["`value` BYTES"]
    if plan.window is not None:
        assert plan.source.event_time is not None
        event = plan.source.event_time
        # Event time read straight from the raw JSON (the planner checked the field reaches the Window
        # unchanged); a record without it gets 0, is routed to the dead letters and never reaches a window.
        columns.append(
            "rt AS TO_TIMESTAMP_LTZ(COALESCE(TRY_CAST(JSON_VALUE(CAST(`value` AS STRING), "
            f"'$.{event.field}') AS BIGINT), 0), 3)"
        )
        columns.append(f"WATERMARK FOR rt AS rt - {_interval_seconds(event.watermark_delay)}")
    if plan.dedupe is not None:
        columns.append("pt AS PROCTIME()")
    statements = [
        f"CREATE TEMPORARY TABLE src ({', '.join(columns)}) "
        f"WITH ({_with(source_options(plan, bootstrap, bounded))})",
        "CREATE TEMPORARY TABLE dst (`_k` STRING, `v` STRING, `_topic` STRING METADATA FROM 'topic') "
        f"WITH ({_with(sink_options(plan, bootstrap, 'raw', 'records'))})",
    ]
    extra = [c for c in ("rt", "pt") if (c == "rt" and plan.window) or (c == "pt" and plan.dedupe)]
    carried = "".join(f"{c}, " for c in extra)
    fields = ", ".join(f"r.{_quote(c)} AS {_quote(c)}" for c, _ in result_columns(plan))
    statements.append(
        f"CREATE TEMPORARY VIEW processed AS SELECT {carried}{fields} "
        f"FROM (SELECT {carried}{UDF_NAME}(`value`) AS r FROM src)"
    )
    if not plan.stateful:
        statements.append(
            "INSERT INTO dst SELECT `key`, `value`, `topic` FROM processed WHERE kind IS NOT NULL"
        )
        return statements
    statements.append("INSERT INTO dst SELECT `key`, `value`, `topic` FROM processed WHERE kind = 'dead'")
    if plan.dedupe is not None:
        keys = ", ".join(_quote("f_" + k) for k in plan.dedupe.key)
        statements.append(
            "INSERT INTO dst SELECT `key`, `value`, `topic` FROM (SELECT *, ROW_NUMBER() OVER "
            f"(PARTITION BY {keys} ORDER BY pt ASC) AS rn FROM processed WHERE kind = 'out') WHERE rn = 1"
        )
        return statements
    window = plan.window
    assert window is not None
    out_columns = ", ".join(f"{_quote(n)} {SQL_TYPES[t]}" for n, t in plan.output_fields)
    statements.append(
        f"CREATE TEMPORARY TABLE dst_window (`_k` STRING, {out_columns}, "
        "`_topic` STRING METADATA FROM 'topic') "
        f"WITH ({_with(sink_options(plan, bootstrap, 'json', 'windows'))})"
    )
    if window.kind == "tumbling":
        tvf = f"TUMBLE(TABLE good, DESCRIPTOR(rt), {_interval_seconds(window.size)})"
    else:
        assert window.slide is not None
        slide, size = _interval_seconds(window.slide), _interval_seconds(window.size)
        tvf = f"HOP(TABLE good, DESCRIPTOR(rt), {slide}, {size})"
    good_fields = ", ".join(f"{_quote('f_' + n)} AS {_quote(n)}" for n, _ in plan.fields)
    statements.append(
        f"CREATE TEMPORARY VIEW good AS SELECT rt, {good_fields} FROM processed WHERE kind = 'out'"
    )
    epoch = "TIMESTAMP '1970-01-01 00:00:00'"
    select = [_quote(g) for g in window.group_by]
    select += [
        f"CAST(TIMESTAMPDIFF(SECOND, {epoch}, window_start) AS BIGINT) * 1000 AS windowStart",
        f"CAST(TIMESTAMPDIFF(SECOND, {epoch}, window_end) AS BIGINT) * 1000 AS windowEnd",
    ]
    for aggregate in window.aggregates:
        target = _quote(aggregate.field) if aggregate.field else "*"
        if aggregate.fn == "avg":
            target = f"CAST({target} AS DOUBLE)"
        select.append(f"{aggregate.fn.upper()}({target}) AS {_quote(aggregate.name)}")
    group = ", ".join(["window_start", "window_end", *(_quote(g) for g in window.group_by)])
    aggregated = f"SELECT {', '.join(select)} FROM TABLE({tvf}) GROUP BY {group}"
    key = f"CAST({_quote(plan.sink.key)} AS STRING)" if plan.sink.key else "CAST(NULL AS STRING)"
    topic = f"'{plan.sink.topic}'"
    if plan.sink.route_by:
        topic = f"CONCAT({topic}, '.', CAST({_quote(plan.sink.route_by)} AS STRING))"
    names = ", ".join(_quote(n) for n, _ in plan.output_fields)
    statements.append(f"INSERT INTO dst_window SELECT {key}, {names}, {topic} FROM ({aggregated})")
    return statements


class RowProcess:
    """Picklable: the row-at-a-time form of `frames.VectorProcess`, a general UDF, which thread mode
    runs in the TaskManager's embedded interpreter (it would silently run a pandas UDF in process mode).
    Returns the columns of `frames.result_columns` as one Row."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._processor: Any = None
        self._typed = [name for name, _ in plan.fields] if plan.stateful else []

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_processor": None}

    def __call__(self, value: bytes | None) -> Any:
        from pyflink.common import Row

        from streaming.stateless import Processor

        if self._processor is None:
            self._processor = Processor(self.plan)
        result = self._processor.process(value)
        fields = result.record or {}
        return Row(result.kind, result.topic, result.key, result.value, *(fields.get(n) for n in self._typed))


class FlinkEngine:
    """PyFlink Table API on a local mini-cluster; the stateless prefix is one Python UDF: a general
    (row-at-a-time) one run in thread mode, inside the TaskManager's JVM, or a pandas one over Arrow
    batches in process mode (Beam workers). `settings` are extra Flink options (benchmark variants)."""

    name: str = "flink"
    delivery: tuple[str, ...] = ("at-least-once", "exactly-once")

    def __init__(
        self,
        execution_mode: str = EXECUTION_MODE,
        settings: dict[str, str] | None = None,
        function_type: str | None = None,
    ) -> None:
        if execution_mode not in ("thread", "process"):
            raise ValueError(f"python.execution-mode {execution_mode!r} (known: process, thread)")
        # Thread mode runs general UDFs only; it would silently run a pandas UDF in process mode.
        self.function_type = function_type or ("general" if execution_mode == "thread" else "pandas")
        if self.function_type not in ("general", "pandas"):
            raise ValueError(f"function type {function_type!r} (known: general, pandas)")
        self.execution_mode = execution_mode
        self.settings = dict(settings or {})

    def run(self, plan: Plan, options: RunOptions) -> RunReport:
        from pyflink.table import DataTypes
        from pyflink.table.udf import udf

        from streaming.engines.frames import VectorProcess, result_columns

        started = SYSTEM_CLOCK.monotonic()
        bounded = options.bounded or options.max_records is not None
        env = table_environment(plan.parallelism)
        config = env.get_config()
        config.set("table.local-time-zone", "UTC")
        # A failing job surfaces after a few tries instead of restarting forever.
        config.set("restart-strategy.type", "fixed-delay")
        config.set("restart-strategy.fixed-delay.attempts", "3")
        config.set("restart-strategy.fixed-delay.delay", "2 s")
        config.set("execution.checkpointing.interval", f"{plan.delivery.checkpoint_interval} ms")
        checkpoints = options.checkpoint_dir or (
            Path(plan.delivery.checkpoint_dir) if plan.delivery.checkpoint_dir else None
        )
        if checkpoints is not None:
            config.set("execution.checkpointing.dir", checkpoints.absolute().as_uri())
            config.set("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION")
        if options.restore_from is not None:
            config.set("execution.state-recovery.path", options.restore_from.absolute().as_uri())
        for key, value in {**flink_settings(self.execution_mode), **self.settings}.items():
            config.set(key, value)
        row = DataTypes.ROW([DataTypes.FIELD(c, _data_type(t)) for c, t in result_columns(plan)])
        if self.function_type == "general":
            function = udf(RowProcess(plan), result_type=row, name=UDF_NAME)
        else:
            function = udf(VectorProcess(plan), result_type=row, func_type="pandas", name=UDF_NAME)
        env.create_temporary_function(UDF_NAME, function)
        statements = pipeline_statements(plan, options.bootstrap, bounded)
        statement_set = env.create_statement_set()
        for statement in statements:
            if statement.startswith("INSERT"):
                statement_set.add_insert_sql(statement)
            else:
                env.execute_sql(statement)
        result = statement_set.execute()
        self.last_job = result.get_job_client()
        if bounded:
            result.wait(int(options.timeout_s * 1000) if options.timeout_s else None)
        else:
            result.wait()
        return RunReport(self.name, SYSTEM_CLOCK.monotonic() - started)

    def render(self, plan: Plan, target: str = "kubernetes", *, spark_submit: bool = False) -> Rendered:
        from streaming import render

        return render.flink(plan, target)
