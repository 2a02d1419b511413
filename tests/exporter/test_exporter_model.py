from __future__ import annotations

import math

import pytest

from exporter import model
from exporter import reading as f
from exporter.model import SimParams
from exporter.reading import Reading
from exporter.spec import ExporterSpec

H100 = "NVIDIA H100 80GB HBM3"
MEMORY = 81559
RESERVED = round(MEMORY * model.RESERVED_FRACTION)
CAP = (MEMORY - RESERVED) * 90 // 100
POD = {"namespace": "ml", "name": "llm-0", "container": "vllm"}


def a_spec(*gpus: dict[str, object], **top: object) -> ExporterSpec:
    return ExporterSpec.model_validate(
        {"driverVersion": "550.127.05", **top, "nodes": [{"name": "node-1", "gpus": list(gpus)}]}
    )


def an_h100(**overrides: object) -> dict[str, object]:
    return {"model": H100, "memoryMiB": MEMORY, **overrides}


def read_at(spec: ExporterSpec, load: float, params: SimParams | None = None) -> list[Reading]:
    devices = model.devices_from_spec(spec)
    state = model.with_loads(model.initial_state(devices), [d.key for d in devices], load)
    return model.read(devices, state, params or model.params_from_spec(spec))


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        pytest.param(
            0.0,
            {f.GPU_UTIL: 0, f.SM_ACTIVE: 0.0, f.GR_ENGINE_ACTIVE: 0.0, f.POWER_USAGE: 70.0, f.SM_CLOCK: 345},
            id="idle",
        ),
        pytest.param(
            0.05,
            {
                f.GPU_UTIL: 5,
                f.SM_ACTIVE: 0.049,
                f.GR_ENGINE_ACTIVE: 0.05,
                f.POWER_USAGE: 101.5,
                f.SM_CLOCK: 1162,
            },
            id="light-load-half-boost",
        ),
        pytest.param(
            0.5,
            {
                f.GPU_UTIL: 50,
                f.SM_ACTIVE: 0.49,
                f.GR_ENGINE_ACTIVE: 0.5,
                f.POWER_USAGE: 385.0,
                f.SM_CLOCK: 1980,
            },
            id="half-load",
        ),
        pytest.param(
            1.0,
            {
                f.GPU_UTIL: 100,
                f.MEM_COPY_UTIL: 90,
                f.SM_ACTIVE: 0.98,
                f.GR_ENGINE_ACTIVE: 1.0,
                f.PIPE_TENSOR_ACTIVE: 0.93,
                f.DRAM_ACTIVE: 0.9,
                f.POWER_USAGE: 700.0,
                f.SM_CLOCK: 1980,
            },
            id="full-load",
        ),
    ],
)
def test_load_drives_utilization_activity_power_and_clocks(
    load: float, expected: dict[f.Field, float]
) -> None:
    [r] = read_at(a_spec(an_h100()), load)

    assert {field: r.values[field] for field in expected} == pytest.approx(expected)
    assert r.values[f.MEM_CLOCK] == 2619


@pytest.mark.parametrize(
    ("gpu", "load", "used"),
    [
        pytest.param(an_h100(pod=POD), 0.0, CAP, id="preallocated-server-holds-its-memory-while-idle"),
        pytest.param(an_h100(pod=POD), 1.0, CAP, id="preallocated-server-never-grows-past-its-cap"),
        pytest.param(an_h100(), 0.0, 0, id="free-gpu-uses-nothing"),
        pytest.param(an_h100(pod=POD, memoryMode="dynamic"), 0.0, 0, id="dynamic-server-idle"),
        pytest.param(
            an_h100(pod=POD, memoryMode="dynamic"), 0.5, round(CAP * 0.5), id="dynamic-grows-with-load"
        ),
        pytest.param(an_h100(pod=POD, memoryMode="dynamic"), 1.0, CAP, id="dynamic-stops-at-the-cap"),
    ],
)
def test_framebuffer_follows_the_memory_mode(gpu: dict[str, object], load: float, used: int) -> None:
    [r] = read_at(a_spec(gpu), load)

    assert r.values[f.FB_USED] == used
    assert r.values[f.FB_USED] + r.values[f.FB_FREE] + r.values[f.FB_RESERVED] == MEMORY


@pytest.mark.parametrize(
    ("seconds", "expected_temp"),
    [
        pytest.param(0.0, 30.0, id="no-time-no-change"),
        pytest.param(30.0, 72.0 + (30.0 - 72.0) * math.exp(-1), id="one-time-constant"),
        pytest.param(600.0, 72.0, id="settled-at-the-full-load-target"),
    ],
)
def test_temperature_relaxes_toward_the_load_target_with_the_time_constant(
    seconds: float, expected_temp: float
) -> None:
    gpu = model.GpuState(temp_c=30.0, energy_mj=0.0)

    after = model.advance_gpu(gpu, model.KNOWN_PROFILES[H100], load=1.0, dt=seconds, tau=30.0)

    assert after.temp_c == pytest.approx(expected_temp)


def test_energy_integrates_power_over_time_across_load_changes() -> None:
    spec = a_spec(an_h100())
    devices = model.devices_from_spec(spec)
    params = model.params_from_spec(spec)
    state = model.initial_state(devices)

    state = model.advance(devices, state, 10.0, params)  # 10 s idle at 70 W
    state = model.with_loads(state, [devices[0].key], 1.0)
    state = model.advance(devices, state, 5.0, params)  # 5 s at 700 W
    [r] = model.read(devices, state, params)

    assert r.values[f.TOTAL_ENERGY_CONSUMPTION] == (70 * 10 + 700 * 5) * 1000


def test_power_overrides_from_the_spec_replace_the_models_defaults() -> None:
    spec = a_spec(an_h100(), models={H100: {"idlePowerWatts": 100, "maxPowerWatts": 500}})

    [r] = read_at(spec, 0.5)

    assert r.values[f.POWER_USAGE] == pytest.approx(300.0)


def test_mig_instances_share_their_gpus_power_and_have_no_gpu_util() -> None:
    spec = a_spec(
        an_h100(
            mig=[
                {"profile": "3g.40gb", "gpuInstanceId": 1, "pod": POD},
                {"profile": "4g.40gb", "gpuInstanceId": 2},
            ]
        )
    )
    devices = model.devices_from_spec(spec)
    state = model.with_loads(model.initial_state(devices), [devices[0].key], 1.0)

    first, second = model.read(devices, state, model.params_from_spec(spec))

    assert f.GPU_UTIL not in first.values and f.MEM_COPY_UTIL not in first.values
    assert first.values[f.GR_ENGINE_ACTIVE] == pytest.approx(1.0)
    assert second.values[f.GR_ENGINE_ACTIVE] == 0.0
    # 3 of 7 slices fully loaded: the physical GPU draws idle + 3/7 of the range, reported on both.
    assert (
        first.values[f.POWER_USAGE]
        == second.values[f.POWER_USAGE]
        == pytest.approx(70 + 630 * 3 / 7, abs=1e-3)
    )
    assert (first.labels.uuid, first.labels.mig_profile, first.labels.gpu_instance_id) == (
        devices[0].labels.uuid,
        "3g.40gb",
        1,
    )
    assert first.values[f.FB_USED] + first.values[f.FB_FREE] + first.values[f.FB_RESERVED] == 40 * 1024


@pytest.mark.parametrize(
    ("load", "step"),
    [pytest.param(0.5, s, id=f"step-{s}") for s in range(5)],
)
def test_noise_stays_within_its_amplitude_and_repeats_for_the_same_seed(load: float, step: int) -> None:
    spec = a_spec(an_h100(), noise={"seed": 3, "percent": 2})
    devices = model.devices_from_spec(spec)
    params = model.params_from_spec(spec)
    state = model.with_loads(model.initial_state(devices), [devices[0].key], load)
    for _ in range(step):
        state = model.advance(devices, state, 1.0, params)

    [a] = model.read(devices, state, params)
    [b] = model.read(devices, state, params)

    assert a == b
    assert abs(a.values[f.GPU_UTIL] - 50) <= 2
    assert abs(a.values[f.SM_ACTIVE] - 0.49) <= 0.02 + 1e-9


def test_an_idle_gpu_reads_zero_even_with_noise() -> None:
    [r] = read_at(a_spec(an_h100(), noise={"seed": 3, "percent": 5}), 0.0)

    assert r.values[f.GPU_UTIL] == 0
    assert r.values[f.SM_ACTIVE] == 0.0


@pytest.mark.parametrize("load", [pytest.param(-0.1, id="negative"), pytest.param(1.01, id="above-one")])
def test_a_load_outside_zero_to_one_is_refused(load: float) -> None:
    devices = model.devices_from_spec(a_spec(an_h100()))

    with pytest.raises(ValueError, match="within"):
        model.with_loads(model.initial_state(devices), [devices[0].key], load)
