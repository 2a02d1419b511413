"""The example pipelines on the real broker, on every engine: the same input gives the same records on
PyFlink, Spark and the in-process loop; with 1 % malformed input every valid record reaches its
per-model topic and every malformed one the dead-letter topic with its reason, none lost."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from streaming.engine import EngineRegistry, RunOptions
from streaming.engines import register_builtins
from streaming.plan import Plan
from streaming.stateless import Processor
from tests.streaming.kafka_records import example_plan, feature_events, llm_requests, read_to_end, unique
from tidescale.local import environment

pytestmark = pytest.mark.integration
Triple = tuple[str, str | None, str]


def expected_stateless(plan: Plan, values: list[bytes]) -> tuple[list[Triple], list[Triple]]:
    """(outputs, dead letters) as the reference executor computes them."""
    processor = Processor(plan)
    results = [processor.process(v) for v in values]
    out = [(r.topic, r.key, r.value) for r in results if r.kind == "out"]
    dead = [(r.topic, r.key, r.value) for r in results if r.kind == "dead"]
    return out, dead  # type: ignore[return-value]


def write(bootstrap: str, topic: str, values: list[bytes], kafka_io: Any) -> None:
    kafka_io[1](bootstrap, topic, values)


def run_engine(name: str, plan: Plan, bootstrap: str, tmp_path: Path) -> None:
    register_builtins(EngineRegistry()).get(name).run(
        plan, RunOptions(bootstrap, bounded=True, checkpoint_dir=tmp_path / name, timeout_s=300)
    )


MAX_RECORD_BYTES = 20_000
# Valid JSON that no engine may stall on: a long past 64 bits, a model whose topic name Kafka would refuse,
# and a prompt whose result is over the record size limit (it would be refused by Kafka at its own limit).
POISON = [
    json.dumps({"id": "p0", "user": "u", "model": "m", "prompt": "hi", "ts": 2**63}).encode(),
    json.dumps({"id": "p1", "user": "u", "model": "m" * 300, "prompt": "hi", "ts": 1}).encode(),
    json.dumps({"id": "p2", "user": "u", "model": "mistral-7b", "prompt": "word " * 5000, "ts": 1}).encode(),
]


def test_the_llm_preprocessor_gives_the_same_records_on_flink_and_spark_and_loses_no_malformed_one(
    local_env: environment.Environment, kafka_io: Any, tmp_path: Path
) -> None:
    bootstrap = local_env.kafka_bootstrap
    values, broken = llm_requests(1000)
    values += POISON
    suffix = unique()
    limited = {"delivery": {"maxRecordBytes": MAX_RECORD_BYTES}}
    plans = {
        engine: example_plan("llm-preprocessor", f"{suffix}-{engine}", **limited)
        for engine in ("flink", "spark")
    }
    # Both engines read the one input topic.
    source = plans["flink"].source.topic
    plans["spark"] = example_plan(
        "llm-preprocessor",
        f"{suffix}-spark",
        source={**plans["spark"].source.model_dump(by_alias=True), "topic": source},
        **limited,
    )
    write(bootstrap, source, values, kafka_io)

    got: dict[str, Counter[Triple]] = {}
    for engine, plan in plans.items():
        out, dead = expected_stateless(plan, values)
        run_engine(engine, plan, bootstrap, tmp_path)
        topics = [*sorted({t for t, _, _ in out}), plan.dead_letter.topic]
        received = read_to_end(bootstrap, topics)
        got[engine] = Counter(received)
        # Exactly the expected records, each once: valid ones on their model's topic, malformed ones
        # in the dead-letter topic.
        assert got[engine] == Counter(out) + Counter(dead), engine
        assert len(dead) == len(broken) + len(POISON) == 13
        letters = [json.loads(v) for _, _, v in dead]
        assert all(letter["reason"] for letter in letters), letters
        assert sorted(letter["step"] for letter in letters if letter["step"] != "parse") == ["route", "size"]
        assert len(out) + len(dead) == len(values)  # none lost (the example filters no record out)

    def renamed(triples: Counter[Triple], engine: str) -> Counter[tuple[str, str | None, Any]]:
        sink, dlq = plans[engine].sink.topic, plans[engine].dead_letter.topic
        return Counter(
            (
                t.replace(sink, "SINK").replace(dlq, "DLQ"),
                k,
                v.replace(sink, "SINK").replace(plans[engine].name, "P"),
            )
            for t, k, v in triples
        )

    assert renamed(got["flink"], "flink") == renamed(got["spark"], "spark")


def reference_windows(plan: Plan, values: list[bytes]) -> Counter[tuple[str, str]]:
    """The sliding windows of the feature aggregator, computed directly in Python."""
    window = plan.window
    assert window is not None and window.slide is not None
    records = [json.loads(v) for v in values]
    records = [r for r in records if r["promptTokens"] > 0]
    windows: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in records:
        last_start = r["ts"] - r["ts"] % window.slide
        for start in range(last_start, r["ts"] - window.size, -window.slide):
            windows.setdefault((r["user"], start), []).append(r)
    out: Counter[tuple[str, str]] = Counter()
    for (user, start), rows in windows.items():
        value = {
            "user": user,
            "windowStart": start,
            "windowEnd": start + window.size,
            "requests": len(rows),
            "tokens": sum(r["promptTokens"] for r in rows),
            "maxTokens": max(r["promptTokens"] for r in rows),
            "meanLatencyMs": round(sum(r["latencyMs"] for r in rows) / len(rows), 6),
        }
        out[(user, json.dumps(value, sort_keys=True))] += 1
    return out


def normalised(triples: list[Triple]) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for _, key, value in triples:
        record = json.loads(value)
        record["meanLatencyMs"] = round(record["meanLatencyMs"], 6)
        out[(key or "", json.dumps(record, sort_keys=True))] += 1
    return out


@pytest.mark.parametrize("engine", ["flink", "spark"])
def test_the_feature_aggregator_emits_every_sliding_window_per_user_as_computed_by_hand(
    engine: str, local_env: environment.Environment, kafka_io: Any, tmp_path: Path
) -> None:
    bootstrap = local_env.kafka_bootstrap
    plan = example_plan("feature-aggregator", f"{unique()}-{engine}")
    values = [*feature_events(400), b"{broken", b'{"user": "u1"}']
    write(bootstrap, plan.source.topic, values, kafka_io)
    expected = reference_windows(plan, values[:-2])

    run_engine(engine, plan, bootstrap, tmp_path)

    received = read_to_end(bootstrap, [plan.sink.topic])
    assert normalised(received) == expected
    dead = read_to_end(bootstrap, [plan.dead_letter.topic])
    assert sorted(json.loads(v)["record"] for _, _, v in dead) == ['{"user": "u1"}', "{broken"]


@pytest.mark.parametrize("client", ["confluent-kafka", "kafka-python"])
def test_the_in_process_loops_give_the_reference_records(
    client: str, local_env: environment.Environment, kafka_io: Any
) -> None:
    from streaming.engines.python import PythonEngine

    bootstrap = local_env.kafka_bootstrap
    plan = example_plan("llm-preprocessor", f"{unique()}-{client}")
    values, _ = llm_requests(300)
    write(bootstrap, plan.source.topic, values, kafka_io)
    out, dead = expected_stateless(plan, values)

    report = PythonEngine(client).run(plan, RunOptions(bootstrap, bounded=True, timeout_s=60))

    assert (report.records_in, report.records_out, report.dead_letters) == (300, len(out), len(dead))
    topics = [*sorted({t for t, _, _ in out}), plan.dead_letter.topic]
    assert Counter(read_to_end(bootstrap, topics)) == Counter(out) + Counter(dead)


def test_flink_in_thread_mode_runs_the_row_at_a_time_function_and_gives_the_reference_records(
    local_env: environment.Environment, kafka_io: Any, tmp_path: Path
) -> None:
    from streaming.engines.flink import FlinkEngine

    bootstrap = local_env.kafka_bootstrap
    plan = example_plan("llm-preprocessor", f"{unique()}-flink-thread")
    values, _ = llm_requests(300)
    write(bootstrap, plan.source.topic, values, kafka_io)
    out, dead = expected_stateless(plan, values)

    engine = FlinkEngine("thread")
    engine.run(plan, RunOptions(bootstrap, bounded=True, checkpoint_dir=tmp_path / "thread", timeout_s=300))

    assert engine.function_type == "general"  # a pandas UDF would silently run in process mode
    topics = [*sorted({t for t, _, _ in out}), plan.dead_letter.topic]
    assert Counter(read_to_end(bootstrap, topics)) == Counter(out) + Counter(dead)


def test_a_local_flink_environment_runs_the_python_workers_as_processes_not_threads_of_the_caller() -> None:
    from streaming.engines.flink import table_environment

    env = table_environment(2)

    # PyFlink sets this address when it serves the workers as threads of this process ("loopback"): all
    # subtasks would then share one GIL (docs/benchmarks.md, stop 23).
    assert env.get_config().get("python.loopback-server.address", "") == ""


def test_the_local_flink_jvm_keeps_c2_for_the_hottest_code_only() -> None:
    from pyflink.java_gateway import get_gateway

    from streaming.engines.flink import LOCAL_JVM_ARGS, table_environment

    table_environment(1)

    # At the default thresholds C2 recompiled through every job of a process; C1 alone ran the record's
    # path twice as slowly (issue #16, `LOCAL_JVM_ARGS`).
    jvm = get_gateway().jvm
    options = jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
        jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean")
    )
    wanted = dict(flag.removeprefix("-XX:").split("=") for flag in LOCAL_JVM_ARGS.split())
    assert set(wanted) >= {"Tier4InvocationThreshold", "Tier4BackEdgeThreshold"}
    assert {name: options.getVMOption(name).getValue() for name in wanted} == wanted
    assert options.getVMOption("TieredStopAtLevel").getValue() == "4"


def test_the_local_flink_jvm_has_the_kafka_connector_on_its_own_class_path_not_per_job() -> None:
    from pyflink.java_gateway import get_gateway

    from streaming.engines.flink import CONNECTOR, KAFKA_SOURCE_CLASS, table_environment

    env = table_environment(1)

    # A connector in `pipeline.jars` is loaded, interpreted and compiled again by every job (issue #16):
    # locally it sits in the gateway's lib/, as in a cluster's image, and jobs carry none.
    jvm = get_gateway().jvm
    loaded = jvm.java.lang.Class.forName(
        KAFKA_SOURCE_CLASS, False, jvm.java.lang.ClassLoader.getSystemClassLoader()
    )
    assert CONNECTOR in str(loaded.getProtectionDomain().getCodeSource().getLocation())
    assert env.get_config().get("pipeline.jars", "") == ""
