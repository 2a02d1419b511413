"""`tidescale bench streaming`: every run reported with its rate and longest pause, the minimum beside the
median, and the broker ceiling and the confluent-kafka loop measured in each run; `--fault` counts what a
fault mid-run lost and duplicated and how long the pipeline took to commit every record after it."""

from __future__ import annotations

import json

import pytest

from kernel.errors import PermanentError
from tidescale.bench.streaming import OutputTiming, fault_names, summary
from tidescale.cli import main
from tidescale.local import environment


@pytest.mark.parametrize(
    ("stamps", "records", "span", "pause"),
    [
        pytest.param([], 0, 1e-3, 0.0, id="no-output"),
        pytest.param([5000], 1, 1e-3, 0.0, id="one-record"),
        pytest.param([1000, 1100, 1200, 11200, 11300], 5, 10.3, 10.0, id="a-ten-second-stall"),
        pytest.param([3000, 1000, 2000], 3, 2.0, 1.0, id="out-of-order-topics-merged"),
    ],
)
def test_the_longest_pause_is_the_largest_gap_between_consecutive_records(
    stamps: list[int], records: int, span: float, pause: float
) -> None:
    timing = OutputTiming.of(stamps)
    assert (timing.records, round(timing.span_s, 6), timing.longest_pause_s) == (records, span, pause)


def test_the_steady_rate_counts_blocks_of_output_by_their_time_and_leaves_out_the_first() -> None:
    # Four blocks of 25 records a second apart: one block's work a second. The first block's work came
    # before the first record, so the span's rate (100 over 3 s) is a third too high.
    blocks = [1000] * 25 + [2000] * 25 + [3000] * 25 + [4000] * 25
    timing = OutputTiming.of(blocks)
    assert round(timing.records / timing.span_s, 1) == 33.3
    assert timing.steady_per_second == 25.0

    even = OutputTiming.of(list(range(0, 1000, 10)))  # a record every 10 ms: 100 records over 0.99 s
    assert even.steady_per_second == 100.0
    assert round(even.records / even.span_s) == 101
    assert OutputTiming.of([5, 5, 5]).steady_per_second == 3 / 1e-3  # no time between the marks: the span's


def a_run(rate: float, pause: float, loop: float, ceiling: float) -> dict[str, float]:
    return {
        "records_out": 100,
        "records_per_second": rate,
        "steady_records_per_second": rate / 2,
        "longest_pause_s": pause,
        "engine_wall_seconds": 10.0,
        "confluent_kafka_records_per_second": loop,
        "confluent_kafka_steady_records_per_second": loop,
        "confluent_kafka_longest_pause_s": 0.1,
        "broker_ceiling_records_per_second": ceiling,
        "broker_produce_records_per_second": 2 * ceiling,
        "broker_consume_records_per_second": 2 * ceiling,
    }


def test_the_summary_shows_the_worst_run_beside_the_median() -> None:
    runs = [a_run(300, 0.5, 200, 1000), a_run(100, 9.0, 200, 1000), a_run(250, 0.2, 250, 1000)]
    got = summary(runs)
    assert got["records_per_second"] == 250
    assert got["records_per_second_min"] == 100
    assert got["longest_pause_s"] == 9.0
    assert got["vs_confluent_kafka"] == 1.0  # median of 1.5, 0.5 and 1.0
    assert got["vs_confluent_kafka_min"] == 0.5
    assert got["fraction_of_ceiling_min"] == 0.1
    assert got["steady_records_per_second"] == 125
    assert got["steady_vs_confluent_kafka"] == 0.5  # median of 0.75, 0.25 and 0.5
    assert got["steady_vs_confluent_kafka_min"] == 0.25


@pytest.mark.integration
def test_the_benchmark_reports_every_run_with_the_loop_the_ceiling_and_the_load_and_its_warm_up_apart(
    local_env: environment.Environment, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "streaming", "--engine", "python", "--records", "300", "--runs", "2", "--warmup", "2"]
    assert main([*argv, "--json", "--bootstrap", local_env.kafka_bootstrap]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(result["runs"]) == 2
    for run in result["runs"]:
        assert run["records_out"] == 300  # the example filters nothing out: every record, once
        assert run["records_per_second"] > 0 and run["confluent_kafka_records_per_second"] > 0
        assert run["steady_records_per_second"] > 0 and run["confluent_kafka_steady_records_per_second"] > 0
        assert run["broker_ceiling_records_per_second"] > 0
        assert run["longest_pause_s"] >= 0
        assert run["load_average"] >= 0 and run["confluent_kafka_load_average"] >= 0
    assert len(result["warmup"]) == 2  # unmeasured: not in the medians, but reported
    for warm in result["warmup"]:
        assert warm["records_out"] == 300  # the same records as a measured run
        assert warm["records_per_second"] > 0 and warm["load_average"] >= 0
    assert result["records_per_second_min"] == min(r["records_per_second"] for r in result["runs"])
    assert result["longest_pause_s"] == max(r["longest_pause_s"] for r in result["runs"])
    assert result["peak_rss_mib"] > 0


@pytest.mark.parametrize(
    ("fault", "engine", "names"),
    [
        pytest.param("all", "flink", ["broker", "worker", "restart", "poison", "oversize"], id="all-flink"),
        pytest.param(
            "all", "spark", ["broker", "worker", "restart", "poison", "oversize", "executor"], id="all-spark"
        ),
        pytest.param("broker", "spark", ["broker"], id="one"),
    ],
)
def test_all_faults_of_an_engine_include_the_executor_only_for_spark(
    fault: str, engine: str, names: list[str]
) -> None:
    assert fault_names(fault, engine) == names


@pytest.mark.parametrize(
    ("fault", "engine"), [("worker", "python"), ("executor", "flink")], ids=["python-loop", "flink-executor"]
)
def test_a_fault_an_engine_cannot_have_is_refused_by_name(fault: str, engine: str) -> None:
    with pytest.raises(PermanentError, match=engine):
        fault_names(fault, engine)


@pytest.mark.integration
def test_the_fault_benchmark_counts_every_record_of_a_poisoned_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["bench", "streaming", "--fault", "poison", "--engine", "spark", "--records", "400", "--json"]
    assert main(argv) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (row["engine"], row["fault"], row["guarantee"]) == ("spark", "poison", "at-least-once")
    assert row["records"] == 410  # 400 requests and 10 poison records between the halves
    assert row["lost"] == 0 and row["unexpected"] == 0 and row["error"] is None
    assert 0 <= row["recovery_s"] <= 30
