"""The NVML source against a typed fake of `pynvml` (the real one needs a GPU and its driver)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from exporter import reading as f
from exporter.nvml import NvmlSource, NvmlUnavailable

NOT_SUPPORTED = 3
LIBRARY_NOT_FOUND = 12
GPU_IS_LOST = 15


class FakeNvmlError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {NOT_SUPPORTED: "Not Supported", LIBRARY_NOT_FOUND: "NVML Shared Library Not Found"}.get(
            self.value, f"NVML error {self.value}"
        )


@dataclass
class FakeMig:
    gpu_instance_id: int
    name: str
    used: int
    total: int


@dataclass
class FakeGpu:
    index: int
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    bus_id: bytes = b"00000000:18:00.0"
    power_mw: int = 350_500
    energy_mj: int = 123_456_789
    temp_c: int = 61
    sm_mhz: int = 1980
    mem_mhz: int = 2619
    util: tuple[int, int] = (87, 40)
    fb: tuple[int, int, int] = (70_000 << 20, 10_000 << 20, 559 << 20)  # used, free, reserved bytes
    gpm: dict[int, float] = field(default_factory=dict)  # GPM metric id → percent; empty: no GPM
    migs: list[FakeMig] = field(default_factory=list)
    unsupported: set[str] = field(default_factory=set)  # fake function names that answer NOT_SUPPORTED


class FakeNvml:
    """The part of `pynvml` the source uses; records calls; can be told to fail."""

    NVMLError = FakeNvmlError
    NVML_SUCCESS = 0
    NVML_ERROR_NOT_SUPPORTED = NOT_SUPPORTED
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0
    NVML_DEVICE_MIG_ENABLE = 1
    NVML_GPM_METRICS_GET_VERSION = 1
    nvmlMemory_v2 = 0x02000028

    def __init__(self, gpus: list[FakeGpu], init_error: int | None = None) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.calls: list[str] = []
        self.live_samples = 0

    def _gpu(self, handle: Any, call: str) -> FakeGpu:
        self.calls.append(call)
        gpu: FakeGpu = handle if isinstance(handle, FakeGpu) else handle.parent
        if call in gpu.unsupported:
            raise FakeNvmlError(NOT_SUPPORTED)
        return gpu

    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")
        if self.init_error is not None:
            raise FakeNvmlError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.calls.append("nvmlShutdown")

    def nvmlSystemGetDriverVersion(self) -> str:
        return "560.35.03"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:
        return self.gpus[i]

    def nvmlDeviceGetIndex(self, h: FakeGpu) -> int:
        return h.index

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:
        return h.uuid

    def nvmlDeviceGetPciInfo(self, h: FakeGpu) -> Any:
        return SimpleNamespace(busId=h.bus_id)

    def nvmlDeviceGetName(self, h: Any) -> str:
        return str(h.name)

    def nvmlDeviceGetMigMode(self, h: FakeGpu) -> list[int]:
        self._gpu(h, "nvmlDeviceGetMigMode")
        return [1 if h.migs else 0, 0]

    def nvmlDeviceGetMaxMigDeviceCount(self, h: FakeGpu) -> int:
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: FakeGpu, i: int) -> Any:
        if i >= len(h.migs):
            raise FakeNvmlError(6)  # NOT_FOUND: an empty slot
        m = h.migs[i]
        return SimpleNamespace(parent=h, mig=m, name=f"{h.name} MIG {m.name}")

    def nvmlDeviceGetGpuInstanceId(self, m: Any) -> int:
        return int(m.mig.gpu_instance_id)

    def nvmlDeviceGetClockInfo(self, h: Any, kind: int) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetClockInfo")
        return gpu.sm_mhz if kind == self.NVML_CLOCK_SM else gpu.mem_mhz

    def nvmlDeviceGetTemperature(self, h: Any, sensor: int) -> int:
        return self._gpu(h, "nvmlDeviceGetTemperature").temp_c

    def nvmlDeviceGetPowerUsage(self, h: Any) -> int:
        return self._gpu(h, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h: Any) -> int:
        return self._gpu(h, "nvmlDeviceGetTotalEnergyConsumption").energy_mj

    def nvmlDeviceGetUtilizationRates(self, h: Any) -> Any:
        gpu = self._gpu(h, "nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=gpu.util[0], memory=gpu.util[1])

    def nvmlDeviceGetMemoryInfo(self, h: Any, version: int | None = None) -> Any:
        gpu = self._gpu(h, "nvmlDeviceGetMemoryInfo")
        if not isinstance(h, FakeGpu):  # a MIG instance: its own slice of memory
            used, total = h.mig.used, h.mig.total
            return SimpleNamespace(used=used, free=total - used, reserved=0)
        used, free, reserved = gpu.fb
        if version is None:
            return SimpleNamespace(used=used, free=free)
        return SimpleNamespace(used=used, free=free, reserved=reserved)

    def nvmlGpmQueryDeviceSupport(self, h: FakeGpu) -> Any:
        gpu = self._gpu(h, "nvmlGpmQueryDeviceSupport")
        return SimpleNamespace(isSupportedDevice=1 if gpu.gpm else 0)

    def nvmlGpmSampleAlloc(self) -> Any:
        self.live_samples += 1
        return SimpleNamespace(gpu=None)

    def nvmlGpmSampleFree(self, sample: Any) -> None:
        self.live_samples -= 1

    def nvmlGpmSampleGet(self, h: FakeGpu, sample: Any) -> Any:
        sample.gpu = self._gpu(h, "nvmlGpmSampleGet")
        return sample

    def nvmlGpmMigSampleGet(self, h: FakeGpu, gi: int, sample: Any) -> Any:
        sample.gpu = self._gpu(h, "nvmlGpmMigSampleGet")
        return sample

    def c_nvmlGpmMetricsGet_t(self) -> Any:
        metrics = [SimpleNamespace(metricId=0, value=0.0, nvmlReturn=0) for _ in range(16)]
        return SimpleNamespace(version=0, numMetrics=0, sample1=None, sample2=None, metrics=metrics)

    def nvmlGpmMetricsGet(self, request: Any) -> Any:
        gpu: FakeGpu = request.sample2.gpu
        for metric in request.metrics[: request.numMetrics]:
            if metric.metricId in gpu.gpm:
                metric.value = gpu.gpm[metric.metricId]
            else:
                metric.nvmlReturn = NOT_SUPPORTED
        return request


def a_source(*gpus: FakeGpu) -> tuple[NvmlSource, FakeNvml]:
    nvml = FakeNvml(list(gpus))
    return NvmlSource(nvml, hostname="node-1"), nvml


def test_values_are_converted_to_dcgm_units_and_labelled_like_dcgm() -> None:
    source, _ = a_source(FakeGpu(index=0, uuid="GPU-a"))

    [r] = source.collect()

    assert (r.labels.gpu, r.labels.uuid, r.labels.pci_bus_id, r.labels.model_name) == (
        0,
        "GPU-a",
        "00000000:18:00.0",
        "NVIDIA H100 80GB HBM3",
    )
    assert (r.labels.hostname, r.labels.driver_version, r.labels.pod) == ("node-1", "560.35.03", None)
    assert r.values == {
        f.SM_CLOCK: 1980,
        f.MEM_CLOCK: 2619,
        f.GPU_TEMP: 61,
        f.POWER_USAGE: 350.5,
        f.TOTAL_ENERGY_CONSUMPTION: 123_456_789,
        f.GPU_UTIL: 87,
        f.MEM_COPY_UTIL: 40,
        f.FB_USED: 70_000,
        f.FB_FREE: 10_000,
        f.FB_RESERVED: 559,
    }


@pytest.mark.parametrize(
    ("unsupported", "missing"),
    [
        pytest.param({"nvmlDeviceGetPowerUsage"}, {f.POWER_USAGE}, id="power"),
        pytest.param({"nvmlDeviceGetTotalEnergyConsumption"}, {f.TOTAL_ENERGY_CONSUMPTION}, id="energy"),
        pytest.param({"nvmlDeviceGetUtilizationRates"}, {f.GPU_UTIL, f.MEM_COPY_UTIL}, id="utilization"),
        pytest.param({"nvmlDeviceGetClockInfo"}, {f.SM_CLOCK, f.MEM_CLOCK}, id="clocks"),
        pytest.param({"nvmlDeviceGetMemoryInfo"}, {f.FB_USED, f.FB_FREE, f.FB_RESERVED}, id="memory"),
    ],
)
def test_a_field_the_gpu_does_not_support_is_skipped_and_the_rest_still_read(
    unsupported: set[str], missing: set[f.Field]
) -> None:
    source, _ = a_source(FakeGpu(index=0, uuid="GPU-a", unsupported=unsupported))

    [r] = source.collect()

    assert missing.isdisjoint(r.values)
    assert f.GPU_TEMP in r.values


def test_gpm_ratios_come_from_two_samples_in_dcgm_units_and_samples_are_freed() -> None:
    gpm = {1: 90.0, 2: 81.0, 7: 55.5, 10: 42.0}
    source, nvml = a_source(FakeGpu(index=0, uuid="GPU-a", gpm=gpm))

    [first] = source.collect()
    [second] = source.collect()
    source.close()

    assert first.values[f.GR_ENGINE_ACTIVE] == pytest.approx(0.9)
    assert second.values[f.SM_ACTIVE] == pytest.approx(0.81)
    assert second.values[f.PIPE_TENSOR_ACTIVE] == pytest.approx(0.555)
    assert second.values[f.DRAM_ACTIVE] == pytest.approx(0.42)
    assert nvml.live_samples == 0
    assert nvml.calls[-1] == "nvmlShutdown"


def test_without_hmma_the_any_tensor_utilization_stands_in() -> None:
    source, _ = a_source(FakeGpu(index=0, uuid="GPU-a", gpm={1: 10.0, 5: 33.0}))

    [r] = source.collect()

    assert r.values[f.PIPE_TENSOR_ACTIVE] == pytest.approx(0.33)
    assert f.SM_ACTIVE not in r.values


def test_a_gpu_without_gpm_has_no_profiling_series() -> None:
    source, _ = a_source(FakeGpu(index=0, uuid="GPU-a"))

    [r] = source.collect()

    assert not {f.GR_ENGINE_ACTIVE, f.SM_ACTIVE, f.PIPE_TENSOR_ACTIVE, f.DRAM_ACTIVE} & set(r.values)


def test_mig_instances_are_series_of_their_own_without_utilization_rates() -> None:
    gpu = FakeGpu(
        index=1,
        uuid="GPU-m",
        gpm={1: 50.0},
        migs=[
            FakeMig(3, "3g.40gb", used=10 << 30, total=40 << 30),
            FakeMig(5, "1g.10gb", used=0, total=10 << 30),
        ],
    )
    source, _ = a_source(gpu)

    readings = source.collect()

    assert [(r.labels.uuid, r.labels.mig_profile, r.labels.gpu_instance_id) for r in readings] == [
        ("GPU-m", "3g.40gb", 3),
        ("GPU-m", "1g.10gb", 5),
    ]
    first = readings[0].values
    assert f.GPU_UTIL not in first and f.MEM_COPY_UTIL not in first
    assert (first[f.FB_USED], first[f.FB_FREE]) == (10 * 1024, 30 * 1024)
    assert first[f.POWER_USAGE] == 350.5  # the physical GPU's
    assert first[f.GR_ENGINE_ACTIVE] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("nvml", "message"),
    [
        pytest.param(
            FakeNvml([], init_error=LIBRARY_NOT_FOUND),
            "NVML not available: NVML Shared Library Not Found",
            id="no-driver-library",
        ),
        pytest.param(FakeNvml([]), "NVML not available: the driver reports no GPU", id="no-gpu"),
    ],
)
def test_nvml_that_cannot_be_used_is_unavailable_with_the_reason(nvml: FakeNvml, message: str) -> None:
    with pytest.raises(NvmlUnavailable, match=message):
        NvmlSource(nvml, hostname="node-1")


def test_without_pynvml_installed_nvml_is_unavailable_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError

    with pytest.raises(NvmlUnavailable, match=r"NVML not available: .*pynvml.*tidescale\[nvml\]"):
        NvmlSource.open()


def test_a_failing_field_other_than_not_supported_is_skipped_too() -> None:
    gpu = FakeGpu(index=0, uuid="GPU-a")
    source, nvml = a_source(gpu)

    def lost(h: Any) -> int:
        raise FakeNvmlError(GPU_IS_LOST)

    nvml.nvmlDeviceGetPowerUsage = lost  # type: ignore[method-assign]
    [r] = source.collect()

    assert f.POWER_USAGE not in r.values
    assert r.values[f.GPU_UTIL] == 87
