"""The frontier sweep: each controller's knob read from a policy and set on it, and `tidescale policy
frontier` end to end on a small generated GenTD26-format trace (no trace data involved)."""

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autoscaler.api.policy import SLOTrigger, read_policy_file
from autoscaler.core.triggers import TriggerRegistry, register_builtins
from autoscaler.replay import sweep
from autoscaler.replay.backtest import BaselineController, pick
from autoscaler.replay.baselines.hpa import Hpa, PodsMetric
from autoscaler.replay.baselines.keda import ScaledObject
from autoscaler.replay.baselines.kpa import Kpa
from autoscaler.replay.ports import LoopController
from autoscaler.replay.service_model import ServiceModel
from tidescale.cli import main

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "policies"
LLM = EXAMPLES / "llm-inference.yaml"
IMAGES = EXAMPLES / "image-generation.yaml"


def test_the_image_generation_example_validates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "validate", str(IMAGES)]) == 0
    assert "ok (1 ScalingPolicy, 1 NodePool)" in capsys.readouterr().out
    policy, pool = pick(read_policy_file(IMAGES))
    assert policy.spec.gpus_per_replica == 1
    assert "lead" in policy.spec.model_fields_set and policy.spec.lead.model_start_seconds > 0
    assert pool is not None and pool.spec.provisioning_seconds > 0


@pytest.mark.parametrize(
    ("controller", "setting", "default", "grid"),
    [
        ("tidescale", "ttft latency.targetMilliseconds", 2000, (500, 1000, 2000, 4000, 8000, 32000, 128000)),
        ("hpa", "gpu target utilization (%)", 95, (30, 45, 60, 70, 80, 90, 95)),
        ("keda", "queue threshold", 64, (16, 32, 64, 128, 256, 512)),
        ("kpa", "target concurrency per pod", 11.2, (4.8, 8, 11.2, 13.6, 16, 24)),
    ],
)
def test_each_controllers_knob_and_grid_come_from_the_policy(
    controller: str, setting: str, default: float, grid: tuple[float, ...]
) -> None:
    policy, _ = pick(read_policy_file(LLM))
    k = sweep.knob(controller, policy, ServiceModel())
    assert (k.setting, k.default) == (setting, pytest.approx(default))
    assert k.grid == pytest.approx(grid)


def test_a_measured_trace_sizes_knatives_target_for_one_request_at_a_time() -> None:
    policy, _ = pick(read_policy_file(IMAGES))
    k = sweep.knob("kpa", policy, ServiceModel(batch_size=1))
    assert k.default == pytest.approx(0.7) and max(k.grid) == pytest.approx(1.5)


def test_tidescales_knob_changes_only_its_own_field() -> None:
    policy, _ = pick(read_policy_file(LLM))
    changed = sweep.tidescale_policy(policy, 8000)
    before = policy.model_dump(by_alias=True)
    after = changed.model_dump(by_alias=True)
    assert after["spec"]["triggers"][0]["latency"]["targetMilliseconds"] == 8000
    after["spec"]["triggers"][0]["latency"]["targetMilliseconds"] = 2000
    assert after == before
    images, _ = pick(read_policy_file(IMAGES))  # a policy with a forecast
    held = sweep.tidescale_policy(images, 90, "history-percentile")
    assert held.spec.forecast is not None and held.spec.forecast.history_percentile == 90
    k = sweep.knob("tidescale", images, ServiceModel(), "history-percentile")
    assert (k.setting, k.default, k.kind) == ("forecast.historyPercentile", 75, "history-percentile")
    assert 75 in k.grid


def test_a_policy_that_spends_its_error_budget_by_worth_sweeps_that_worth() -> None:
    policy, _ = pick(read_policy_file(LLM))
    slo = policy.spec.triggers[0]
    assert isinstance(slo, SLOTrigger)
    latency = slo.latency.model_copy(update={"late_requests_per_replica_hour": 400.0})
    triggers = [slo.model_copy(update={"latency": latency}), *policy.spec.triggers[1:]]
    by_worth = policy.model_copy(update={"spec": policy.spec.model_copy(update={"triggers": triggers})})
    k = sweep.knob("tidescale", by_worth, ServiceModel())
    assert (k.setting, k.default) == ("ttft latency.lateRequestsPerReplicaHour", 400.0)
    assert k.kind == "late-requests"
    assert k.grid == pytest.approx((25, 100, 200, 400, 800, 1600, 6400))
    changed = sweep.tidescale_policy(by_worth, 25.0)
    got = changed.spec.triggers[0]
    assert isinstance(got, SLOTrigger)
    assert (got.latency.late_requests_per_replica_hour, got.latency.target_milliseconds) == (25.0, 2000)
    # the objective stays a knob of its own, and a policy without a worth has no such knob
    assert sweep.knob("tidescale", by_worth, ServiceModel(), "slo-target").default == 2000
    with pytest.raises(sweep.NoKnob, match="lateRequestsPerReplicaHour"):
        sweep.knob("tidescale", policy, ServiceModel(), "late-requests")


def test_each_baseline_is_built_with_its_knob_at_the_value() -> None:
    policy, pool = pick(read_policy_file(LLM))
    assert pool is not None
    model = ServiceModel()
    triggers = register_builtins(TriggerRegistry())

    def built(name: str, value: float) -> object:
        ctl = sweep.controller_at(name, value, policy, pool, model, triggers)
        return ctl.baseline if isinstance(ctl, BaselineController) else ctl

    hpa = built("hpa", 55)
    assert isinstance(hpa, Hpa)
    gpu = next(m for m in hpa.spec.metrics if isinstance(m, PodsMetric))
    assert gpu.target == pytest.approx(0.55)  # a PROF field is a ratio
    keda = built("keda", 200)
    assert isinstance(keda, ScaledObject) and keda.scalers[0].threshold == 200
    kpa = built("kpa", 6)
    assert isinstance(kpa, Kpa) and kpa.target == pytest.approx(6)
    ours = built("tidescale", 4000)
    assert isinstance(ours, LoopController)
    assert ours.policy.spec.triggers[0].latency.target_milliseconds == 4000  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("controller", "values", "message"),
    [
        ("tidescale", [1500.5], "whole numbers ≥ 1"),
        ("keda", [0.0], "numbers > 0"),
        ("hpa", [], "numbers > 0"),
    ],
    ids=["fraction of a millisecond", "zero", "none"],
)
def test_a_grid_a_knob_cannot_take_is_refused(controller: str, values: list[float], message: str) -> None:
    policy, _ = pick(read_policy_file(LLM))
    with pytest.raises(sweep.NoKnob, match=message):
        sweep.with_grid(sweep.knob(controller, policy, ServiceModel()), values)


# --- the command ------------------------------------------------------------------------------------------


@pytest.fixture
def lora_trace(tmp_path: Path) -> Path:
    """Eight minutes of GenTD26-format requests (second resolution, measured execution times, a failed and a
    pending one, one without a time): quiet, a burst, quiet."""
    rng = np.random.default_rng(11)
    times = np.sort(np.concatenate([rng.uniform(0, 480, 30), rng.uniform(200, 230, 20)])).astype(int)
    lines = [
        "gmt_create,predict_type,predict_status,exec_time_seconds,groupId,prompt_length,negative_prompt_length,"
        "num_images_per_prompt,num_inference_steps,checkpoint_model_version_id,num_lora"
    ]
    for i, t in enumerate(times):
        status, exec_s = "SUCCEED", f"{rng.uniform(8, 45):.1f}"
        if i == 10:
            status, exec_s = "FAILED", "4.0"
        elif i == 20:
            status, exec_s = "PENDING", "0.0"
        elif i == 30:
            exec_s = ""
        at = f"2024-11-15 10:{t // 60:02d}:{t % 60:02d}"  # the minutes stay within the hour
        lines.append(f"{at},TXT_2_IMG,{status},{exec_s},G0001,60.0,,1.0,30.0,M0001,0")
    path = tmp_path / "lora.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_frontier_json_has_every_point_each_frontier_and_the_savings_and_plots_them(
    lora_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "frontier.png"
    code = main(
        [
            "policy",
            "frontier",
            str(IMAGES),
            "--trace",
            str(lora_trace),
            "--rate-multiplier",
            "2",
            "--grid",
            "tidescale=5000,20000",
            "--grid",
            "hpa=40,90",
            "--grid",
            "keda=1,8",
            "--grid",
            "kpa=0.5,1",
            "--jobs",
            "2",
            "--json",
            "--plot",
            str(plot),
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out.strip().splitlines()[-1])
    assert out["requests"] == 100
    assert out["service_model"]["batch_size"] == 1 and out["service_model"]["measured_service_s"] > 0
    assert "2 without an execution time" in " ".join(out["trace_notes"])  # the empty one and the pending
    assert {name: [p["value"] for p in pts] for name, pts in out["points"].items()} == {
        "tidescale": [5000, 20000],
        "hpa": [40, 90],
        "keda": [1, 8],
        "kpa": [0.5, 1],
    }
    for name, pts in out["points"].items():
        on = [[p["slo_violations"], p["gpu_hours"]] for p in pts if p["frontier"]]
        assert sorted(on) == sorted(out["frontiers"][name]) and on
    assert set(out["savings"]) == {"hpa", "keda", "kpa", "best"}
    for s in out["savings"].values():
        assert {"median", "min", "max"} <= set(s)
        if s["median"] is not None:
            assert s["min"] <= s["median"] <= s["max"] < 1
    assert captured.err.count("frontier: [") == 8  # one progress line per replay
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_frontier_counted_after_a_warm_up_leaves_the_start_up_out_of_every_point(
    lora_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def points(*extra: str) -> dict[str, Any]:
        args = [
            "--controllers",
            "tidescale,hpa",
            "--grid",
            "tidescale=5000",
            "--grid",
            "hpa=40",
            "--jobs",
            "1",
        ]
        assert (
            main(["policy", "frontier", str(IMAGES), "--trace", str(lora_trace), *args, *extra, "--json"])
            == 0
        )
        out: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        return out

    quieted = logging.getLogger("autoscaler.controller")
    before = quieted.level
    whole, later = points(), points("--warmup", "4m")
    assert quieted.level == before  # the sweep in this process leaves the logger as it found it
    assert (whole["measured_from_s"], later["measured_from_s"]) == (0, 240)
    for name in ("tidescale", "hpa"):
        (w,), (lt,) = whole["points"][name], later["points"][name]
        assert lt["gpu_hours"] < w["gpu_hours"] and lt["slo_violations"] <= w["slo_violations"]


def test_backtest_on_a_gentd26_log_counts_queueing_delay(
    lora_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "backtest", str(IMAGES), "--trace", str(lora_trace), "--window", "2m,6m"]) == 0
    out = capsys.readouterr().out
    assert "SLO: p99 queueing delay ≤ 10 s" in out
    assert "cold start 120 s" in out  # the policy's stated model start
    assert "[2m–6m]" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grid", "argo=1,2"], "--grid 'argo=1,2': want CONTROLLER=V1,V2,…"),
        (["--controllers", "hpa,vpa"], "--controllers 'hpa,vpa': want some of"),
        (["--window", "2h,1h"], "want 0 ≤ START < END"),
        (["--warmup", "soon"], "--warmup 'soon': not a duration"),
        (["--tidescale-knob", "history-percentile"], "needs forecast.historySeconds"),
    ],
    ids=[
        "unknown controller in a grid",
        "unknown controller",
        "reversed window",
        "bad warm-up",
        "no forecast to turn",
    ],
)
def test_frontier_input_errors_exit_2(
    lora_trace: Path, tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "no-forecast.yaml"
    policy.write_text(IMAGES.read_text().replace("  forecast:\n    historySeconds: 1800\n", "  forecast:\n"))
    policy.write_text(policy.read_text().replace("  forecast:\n    historyPercentile: 75\n", ""))
    assert main(["policy", "frontier", str(policy), "--trace", str(lora_trace), *args]) == 2
    assert message in capsys.readouterr().err
