import json
from pathlib import Path

import pytest

from jobs.bench import CycleBenchConfig, published, run_cycle_bench, synthetic_cluster, variant_of
from jobs.openb import read_nodes
from tests.jobs.jobs_builders import write_openb
from tidescale.cli import main

NODE_ROWS = [(96_000, 393_216, 8, "G2"), (32_000, 131_072, 2, "T4"), (64_000, 262_144, 4, "V100M16")] * 4
POD_ROWS = [
    (12_000, 16_384, 1, 1000),
    (6_000, 12_288, 1, 460),
    (4_000, 8_192, 1, 810),
    (8_000, 16_384, 0, 0),
    (16_000, 32_768, 2, 1000),
    (2_000, 4_096, 1, 160),
] * 10


@pytest.fixture
def trace(tmp_path: Path) -> tuple[Path, Path]:
    return write_openb(tmp_path, NODE_ROWS, POD_ROWS)


def test_the_scheduler_benchmark_runs_end_to_end_and_prints_one_json_object_last(
    trace: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    nodes, pods = trace
    code = main(
        ["bench", "scheduler", "--nodes", str(nodes), "--pods", str(pods), "--policy", "fgd", "--seeds", "2",
         "--report-arrivals", "0.9,1.3", "--json"]
    )  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"policy", "nodes", "pods", "arrival", "seeds", "unallocated_gpu_pct", "fragmentation_pct",
            "decisions_per_second", "peak_rss_mib"} <= out.keys()  # fmt: skip
    assert (out["policy"], out["nodes"], out["pods"], out["arrival"], out["seeds"]) == ("fgd", 12, 60, 1.0, 2)
    u = out["unallocated_gpu_pct"]
    assert 0 <= u["min"] <= u["median"] <= u["max"] <= 100
    assert out["decisions_per_second"]["median"] > 0 and out["peak_rss_mib"] > 0
    assert set(out["by_arrival"]) == {"0.9", "1", "1.3"}
    assert [s["seed"] for s in out["per_seed"]] == [42, 43]


def test_without_json_the_benchmark_prints_a_table(
    trace: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    nodes, pods = trace
    assert main(["bench", "scheduler", "--nodes", str(nodes), "--pods", str(pods), "--seeds", "1"]) == 0
    text = capsys.readouterr().out
    assert "policy tidescale" in text and "decisions/s" in text and "100%" in text


def test_a_missing_trace_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "scheduler", "--traces", str(tmp_path), "--seeds", "1"]) == 2
    assert "openb_node_list_gpu_node.csv:0: file not found" in capsys.readouterr().err


def test_a_synthetic_cluster_repeats_the_gpu_node_shapes(trace: tuple[Path, Path]) -> None:
    big = synthetic_cluster(read_nodes(trace[0]), 30)
    assert len(big) == 30 and big.gpus[:3].tolist() == [8, 2, 4] and big.gpus[3:6].tolist() == [8, 2, 4]


def test_published_anchors_are_looked_up_by_variant_level_and_policy() -> None:
    assert variant_of(Path("x/openb_pod_list_gpushare40.csv")) == "gpushare40"
    assert published("default", 100, "fgd") == 4.77
    assert published("gpushare40", 100, "bestfit") == 8.53
    assert published("gpushare20", 100, "fgd") is None
    assert published("default", 100, "tidescale") is None


def test_levels_no_event_reached_are_null_in_the_json() -> None:
    from jobs.cli import _finite

    nan = float("nan")
    assert _finite({"a": [nan, 1.0], "b": {"c": nan}}) == {"a": [None, 1.0], "b": {"c": None}}


@pytest.mark.parametrize("policy", ["fgd", "tidescale"])
def test_the_cycle_benchmark_times_the_live_scheduler_beside_the_simulator(
    trace: tuple[Path, Path], policy: str
) -> None:
    nodes, pods = trace
    out = run_cycle_bench(CycleBenchConfig(nodes, pods, policy, pods=0))
    assert (out["policy"], out["nodes"], out["gpus"]) == (policy, 12, 56)
    assert out["pending_pods"] > 60 and out["decisions_per_second"] > 0
    sim = out["simulator"]
    assert sim["same_node_pct"] == 100.0
    assert (out["placed"], out["unallocated_gpu_pct_at_100"]) == (
        sim["placed"],
        sim["unallocated_gpu_pct_at_100"],
    )
    json.dumps(out, allow_nan=False)
