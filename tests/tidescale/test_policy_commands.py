"""End to end through `tidescale.cli.main`: validate, backtest on a small generated trace, the benchmark."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tidescale.cli import main

LLM = Path(__file__).resolve().parents[2] / "examples" / "policies" / "llm-inference.yaml"


@pytest.fixture
def small_trace(tmp_path: Path) -> Path:
    """Eight minutes of Azure-format requests: quiet, a burst, quiet again (generated here, no trace data)."""
    rng = np.random.default_rng(5)
    times = np.sort(np.concatenate([rng.uniform(0, 480, 300), rng.uniform(200, 230, 150)]))
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for t in times:
        whole = int(t)
        frac = round((t - whole) * 1e7)
        lines.append(
            f"2023-11-16 18:{whole // 60:02d}:{whole % 60:02d}.{frac:07d},"
            f"{int(rng.integers(100, 7400))},{int(rng.integers(5, 60))}"
        )
    path = tmp_path / "small.csv"
    path.write_text("\r\n".join(lines))
    return path


def test_validate_accepts_the_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "validate", str(LLM)]) == 0
    assert "ok (1 ScalingPolicy, 1 NodePool)" in capsys.readouterr().out


def test_validate_names_file_line_field_and_reason_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: tidescale.io/v1alpha1\nkind: ScalingPolicy\nmetadata: {name: x}\n"
        "spec:\n  targetRef: {name: x}\n  maxReplicas: 2\n  triggers:\n    - type: QueueDepth\n"
        "      query: q\n      targetPerReplica: 0\n"
    )
    assert main(["policy", "validate", str(LLM), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:10: spec.triggers.0.targetPerReplica: Input should be greater than or equal to 1" in err


def test_backtest_json_has_one_row_per_controller_on_the_last_line(
    small_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["policy", "backtest", str(LLM), "--trace", str(small_trace), "--rate-multiplier", "2", "--json"]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["trace"].startswith("small.csv")
    assert out["service_model"]["slo_ttft_s"] == 2.0
    assert [r["policy"] for r in out["rows"]] == ["tidescale", "hpa", "keda", "kpa"]
    for row in out["rows"]:
        assert {
            "gpu_hours",
            "slo_violations",
            "slo_violation_minutes",
            "p50_latency_s",
            "p99_latency_s",
            "scale_events",
        } <= set(row)
        assert row["gpu_hours"] > 0


def test_backtest_prints_a_readable_table_with_the_service_model(
    small_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "backtest", str(LLM), "--trace", str(small_trace)]) == 0
    out = capsys.readouterr().out
    assert "cold start 60 s" in out and "SLO: p99 time to first token ≤ 2 s" in out
    assert all(name in out for name in ("tidescale", "hpa", "keda", "kpa"))


def test_backtest_runs_on_a_generated_synthetic_trace(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "policy",
            "backtest",
            str(LLM),
            "--trace",
            "synthetic:bursty:2",
            "--rate-multiplier",
            "0.2",
            "--json",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["trace"].startswith("synthetic:bursty:2")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trace", "/nonexistent.csv"], "file not found"),
        (["--service", "warp=9"], "--service 'warp=9': want KEY=VALUE"),
        (["--rate-multiplier", "0"], "rate multiplier must be positive"),
    ],
    ids=["missing trace", "unknown service field", "zero multiplier"],
)
def test_backtest_input_errors_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "backtest", str(LLM), *args]) == 2
    assert message in capsys.readouterr().err


def test_the_controller_benchmark_prints_decisions_per_second_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "controller", "--policies", "12", "--rounds", "3", "--runs", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert out["decisions"] == 36 and len(out["runs"]) == 3 and out["peak_rss_mib"] > 0
    rates = sorted(r["decisions_per_second"] for r in out["runs"])
    assert out["decisions_per_second"] == rates[1] and out["decisions_per_second_min"] == rates[0] > 0


def test_the_end_to_end_controller_benchmark_needs_the_environment_the_composition_root_passes_in(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse

    from tidescale.commands import policy as autoscaler_cli

    parser = argparse.ArgumentParser()
    autoscaler_cli.add_benchmarks(parser.add_subparsers(dest="benchmark"))  # no e2e runner given
    args = parser.parse_args(["controller", "--e2e"])
    assert args.func(args) == 2
    assert "--e2e needs the local environment" in capsys.readouterr().err


def test_the_tidescale_command_wires_the_end_to_end_controller_benchmark() -> None:
    from tidescale.bench import controller as bench_controller
    from tidescale.cli import build_parser

    args = build_parser().parse_args(["bench", "controller", "--e2e", "--policies", "10"])
    assert args.e2e_handler is bench_controller.run


def test_hindsight_places_the_policy_and_the_baselines_against_the_frontiers(
    small_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["policy", "hindsight", str(LLM), "--trace", str(small_trace), "--windows", "60", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["policy"] for r in out["references"]] == ["tidescale", "hpa", "keda", "kpa", "hpa ×0.8"]
    assert set(out["frontiers"]) == {"constant", "clairvoyant-60s", "clairvoyant-60s-served", "previous-60s"}
    hpa = out["references"][1]
    for best in hpa["fewest_violations_within"].values():
        assert best is None or best["gpu_hours"] <= hpa["gpu_hours"] + 1e-9


def test_hindsight_refuses_a_window_of_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "hindsight", str(LLM), "--windows", "0"]) == 2
    assert "every window must be > 0 s" in capsys.readouterr().err


def test_backtest_and_hindsight_count_from_the_warmup_on(
    small_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(command: str, *extra: str) -> dict[str, Any]:
        assert main(["policy", command, str(LLM), "--trace", str(small_trace), *extra, "--json"]) == 0
        out: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        return out

    whole, later = run("backtest"), run("backtest", "--warmup", "4m")
    assert (whole["measured_from_s"], later["measured_from_s"]) == (0, 240)
    # the trace's variability, over the counted part: the burst at 200–230 s makes the whole trace burstier
    burst, after = whole["variability"], later["variability"]
    assert set(burst["index_of_dispersion"]) == {"1s", "10s", "60s"}
    assert burst["index_of_dispersion"]["10s"] > after["index_of_dispersion"]["10s"]
    assert 0 < burst["service_variability"] < 2
    for w, lt in zip(whole["rows"], later["rows"], strict=True):
        # the burst at 200–230 s is before the count starts
        assert lt["gpu_hours"] < w["gpu_hours"] and lt["slo_violations"] <= w["slo_violations"]
    seen = run("hindsight", "--windows", "60", "--warmup", "4m")
    assert seen["measured_from_s"] == 240
    rows = {r["policy"]: r for r in seen["references"]}
    assert rows["hpa"]["gpu_hours"] == pytest.approx(later["rows"][1]["gpu_hours"], abs=1e-3)
    # a constant level over the last four minutes costs what four minutes of it cost
    top = seen["frontiers"]["constant"][-1]
    assert top["gpu_hours"] == pytest.approx(top["mean_replicas"] * 240 / 3600, rel=0.05)


def test_a_warmup_that_leaves_nothing_to_count_is_refused(
    small_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "backtest", str(LLM), "--trace", str(small_trace), "--warmup", "1h"]) == 2
    assert "--warmup 1h: the trace lasts" in capsys.readouterr().err


def test_the_frontiers_baselines_can_be_configured_from_another_policy_file(
    small_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the policy before a change: its GPU guard at 80 %, so KEDA's GPU scaler reads 0.8
    before = tmp_path / "before.yaml"
    before.write_text(LLM.read_text().replace("      target: 95\n", "      target: 80\n"))

    def sweep(*extra: str) -> dict[str, Any]:
        args = ["--controllers", "tidescale,keda", "--grid", "tidescale=2000", "--grid", "keda=64"]
        args += ["--trace", str(small_trace), "--jobs", "1", *extra, "--json"]
        assert main(["policy", "frontier", str(LLM), *args]) == 0
        out: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        return out

    own, earlier = sweep(), sweep("--baselines-from", str(before))
    # tidescale replays its own policy either way; KEDA the one named
    assert own["points"]["tidescale"] == earlier["points"]["tidescale"]
    (keda_own,), (keda_before,) = own["points"]["keda"], earlier["points"]["keda"]
    assert "gpu Value 0.95" in keda_own["config"] and "gpu Value 0.8" in keda_before["config"]
    assert earlier["trace_notes"][-1] == f"the baselines configured from {before}"
    assert main(["policy", "frontier", str(LLM), "--baselines-from", str(tmp_path / "none.yaml")]) == 2
