"""Real GPUs read through NVML (PyPI `nvidia-ml-py`, module `pynvml`) as a metric source (reference §7).

Values are converted to DCGM's units (MiB, W, mJ, ratio 0-1) and labelled as dcgm-exporter labels
them. A field a device does not support (`NVML_ERROR_NOT_SUPPORTED`) is skipped for that device, never
failing the collection. Profiling ratios come from GPM (Hopper and newer) between two samples, one per
collection; older GPUs have none, as DCGM without DCP. No pod mapping: NVML does not know pods.

`pynvml` is imported lazily by `NvmlSource.open`, so everything else works without it. Not thread-safe:
the server serialises collections.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from exporter import reading as f
from exporter.reading import DeviceLabels, Field, Reading
from kernel.errors import PermanentError

log = logging.getLogger(__name__)

# GPM metric ids (pynvml NVML_GPM_METRIC_*), 0-100 %.
_GPM_GRAPHICS_UTIL = 1
_GPM_SM_UTIL = 2
_GPM_ANY_TENSOR_UTIL = 5
_GPM_HMMA_TENSOR_UTIL = 7
_GPM_DRAM_BW_UTIL = 10
_GPM_FIELDS: tuple[tuple[int, Field], ...] = (
    (_GPM_GRAPHICS_UTIL, f.GR_ENGINE_ACTIVE),
    (_GPM_SM_UTIL, f.SM_ACTIVE),
    (_GPM_HMMA_TENSOR_UTIL, f.PIPE_TENSOR_ACTIVE),
    (_GPM_DRAM_BW_UTIL, f.DRAM_ACTIVE),
)
_MIB = 1 << 20


class NvmlUnavailable(PermanentError):
    """NVML cannot be used here: no `pynvml`, no driver, or no GPU."""


@dataclass
class _Device:
    handle: Any
    labels: DeviceLabels
    parent: Any = None  # the physical GPU's handle, for a MIG instance
    gpm_sample: Any = None  # the previous GPM sample, when GPM works on this device


class NvmlSource:
    """Opens NVML once, enumerates GPUs and MIG instances, and reads them on each `collect()`."""

    def __init__(self, nvml: Any, hostname: str) -> None:
        self._nvml = nvml
        self._hostname = hostname
        self._skipped: set[tuple[str, int | None, str]] = set()
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as e:
            raise NvmlUnavailable(f"NVML not available: {_text(e)}") from e
        try:
            self._devices = self._enumerate()
        except nvml.NVMLError as e:
            self.close()
            raise NvmlUnavailable(f"NVML not available: {_text(e)}") from e
        if not self._devices:
            self.close()
            raise NvmlUnavailable("NVML not available: the driver reports no GPU")

    @classmethod
    def open(cls, hostname: str | None = None) -> NvmlSource:
        """Import `pynvml` and initialise it; `NvmlUnavailable` where either fails."""
        try:
            import pynvml
        except ImportError as e:
            raise NvmlUnavailable(
                f"NVML not available: {e} (install the 'nvml' extra: pip install 'tidescale[nvml]')"
            ) from e
        # dcgm-exporter's rule: the node name from NODE_NAME (set from the downward API), else the host's.
        return cls(pynvml, hostname or os.environ.get("NODE_NAME") or socket.gethostname())

    @property
    def device_count(self) -> int:
        return len(self._devices)

    def close(self) -> None:
        nvml = self._nvml
        for device in getattr(self, "_devices", []):
            sample, device.gpm_sample = device.gpm_sample, None
            if sample is not None:
                self._free(device, sample)
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError as e:
            log.warning("nvmlShutdown failed: %s", _text(e))

    def collect(self) -> list[Reading]:
        return [Reading(labels=d.labels, values=self._values(d)) for d in self._devices]

    # 1. identity, once
    def _enumerate(self) -> list[_Device]:
        nvml = self._nvml
        driver = _str(nvml.nvmlSystemGetDriverVersion())
        devices: list[_Device] = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            labels = DeviceLabels(
                gpu=int(nvml.nvmlDeviceGetIndex(handle)),
                uuid=_str(nvml.nvmlDeviceGetUUID(handle)),
                pci_bus_id=_str(nvml.nvmlDeviceGetPciInfo(handle).busId),
                model_name=_str(nvml.nvmlDeviceGetName(handle)),
                hostname=self._hostname,
                driver_version=driver,
            )
            instances = self._mig_instances(handle, labels)
            devices.extend(instances or [_Device(handle=handle, labels=labels)])
        for device in devices:
            device.gpm_sample = self._gpm_sample(device, None)
        return devices

    def _mig_instances(self, handle: Any, labels: DeviceLabels) -> list[_Device]:
        nvml = self._nvml
        try:
            current, _pending = nvml.nvmlDeviceGetMigMode(handle)
        except nvml.NVMLError:
            return []  # not MIG-capable
        if current != nvml.NVML_DEVICE_MIG_ENABLE:
            return []
        instances: list[_Device] = []
        for m in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, m)
            except nvml.NVMLError:
                continue  # an empty slot
            name = _str(nvml.nvmlDeviceGetName(mig))
            # The MIG device's name ends with its profile: "NVIDIA A100-SXM4-40GB MIG 1g.5gb".
            profile = name.rsplit("MIG ", 1)[-1] if "MIG " in name else name
            gi = int(nvml.nvmlDeviceGetGpuInstanceId(mig))
            instances.append(
                _Device(
                    handle=mig,
                    parent=handle,
                    labels=replace(labels, mig_profile=profile, gpu_instance_id=gi),
                )
            )
        return instances

    # 2. values, each collection
    def _values(self, d: _Device) -> dict[Field, float]:
        nvml = self._nvml
        gpu = d.parent if d.parent is not None else d.handle  # clocks, power, temperature: the physical GPU's
        values: dict[Field, float] = {}

        def put(field: Field, read: Callable[[], float]) -> None:
            value = self._try(d, field.name, read)
            if value is not None:
                values[field] = value

        put(f.SM_CLOCK, lambda: nvml.nvmlDeviceGetClockInfo(gpu, nvml.NVML_CLOCK_SM))
        put(f.MEM_CLOCK, lambda: nvml.nvmlDeviceGetClockInfo(gpu, nvml.NVML_CLOCK_MEM))
        put(f.GPU_TEMP, lambda: nvml.nvmlDeviceGetTemperature(gpu, nvml.NVML_TEMPERATURE_GPU))
        put(f.POWER_USAGE, lambda: nvml.nvmlDeviceGetPowerUsage(gpu) / 1000.0)  # mW → W
        put(f.TOTAL_ENERGY_CONSUMPTION, lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(gpu))  # mJ
        if d.parent is None:  # no utilization rates on MIG instances (reference §5)
            rates = self._try(d, "utilization", lambda: nvml.nvmlDeviceGetUtilizationRates(gpu))
            if rates is not None:
                values[f.GPU_UTIL] = rates.gpu
                values[f.MEM_COPY_UTIL] = rates.memory
        memory = self._memory(d)
        if memory is not None:
            values[f.FB_FREE] = memory.free // _MIB
            values[f.FB_USED] = memory.used // _MIB
            if hasattr(memory, "reserved"):
                values[f.FB_RESERVED] = memory.reserved // _MIB
        values.update(self._gpm(d))
        return values

    def _memory(self, d: _Device) -> Any:
        nvml = self._nvml
        v2 = getattr(nvml, "nvmlMemory_v2", None)
        if v2 is not None:
            try:
                return nvml.nvmlDeviceGetMemoryInfo(d.handle, version=v2)
            except nvml.NVMLError:
                pass  # older drivers: fall back to v1, which has no `reserved`
        return self._try(d, "memory", lambda: nvml.nvmlDeviceGetMemoryInfo(d.handle))

    def _gpm_sample(self, d: _Device, previous: Any) -> Any:
        """A fresh GPM sample, or None where GPM is not supported on the device."""
        nvml = self._nvml
        gpu = d.parent if d.parent is not None else d.handle
        if previous is None:
            support = self._try(d, "gpm", lambda: nvml.nvmlGpmQueryDeviceSupport(gpu))
            if support is None or not support.isSupportedDevice:
                return None
        sample = self._try(d, "gpm", nvml.nvmlGpmSampleAlloc)
        if sample is None:
            return None
        if d.parent is not None:
            gi = d.labels.gpu_instance_id
            taken = self._try(d, "gpm", lambda: nvml.nvmlGpmMigSampleGet(gpu, gi, sample))
        else:
            taken = self._try(d, "gpm", lambda: nvml.nvmlGpmSampleGet(gpu, sample))
        if taken is None:
            self._free(d, sample)
            return None
        return sample

    def _gpm(self, d: _Device) -> dict[Field, float]:
        """Profiling ratios between the previous sample and a new one (GPM reports 0-100 %, DCGM 0-1)."""
        nvml = self._nvml
        previous = d.gpm_sample
        if previous is None:
            return {}
        current = self._gpm_sample(d, previous)
        if current is None:
            return {}
        ids = [metric_id for metric_id, _ in _GPM_FIELDS] + [_GPM_ANY_TENSOR_UTIL]
        request = nvml.c_nvmlGpmMetricsGet_t()
        request.version = nvml.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(ids)
        request.sample1 = previous
        request.sample2 = current
        for i, metric_id in enumerate(ids):
            request.metrics[i].metricId = metric_id
        result = self._try(d, "gpm", lambda: nvml.nvmlGpmMetricsGet(request))
        self._free(d, previous)
        d.gpm_sample = current
        if result is None:
            return {}
        got = {
            result.metrics[i].metricId: result.metrics[i].value / 100.0
            for i in range(len(ids))
            if result.metrics[i].nvmlReturn == nvml.NVML_SUCCESS
        }
        if _GPM_HMMA_TENSOR_UTIL not in got and _GPM_ANY_TENSOR_UTIL in got:
            got[_GPM_HMMA_TENSOR_UTIL] = got[_GPM_ANY_TENSOR_UTIL]
        return {field: got[metric_id] for metric_id, field in _GPM_FIELDS if metric_id in got}

    def _free(self, d: _Device, sample: Any) -> None:
        self._try(d, "gpm", lambda: self._nvml.nvmlGpmSampleFree(sample))

    def _try(self, d: _Device, what: str, call: Callable[[], Any]) -> Any:
        """`call()`, or None when NVML refuses: silently for NOT_SUPPORTED, logged once otherwise."""
        nvml = self._nvml
        try:
            return call()
        except nvml.NVMLError as e:
            if e.value != nvml.NVML_ERROR_NOT_SUPPORTED:
                key = (d.labels.uuid, d.labels.gpu_instance_id, what)
                if key not in self._skipped:
                    self._skipped.add(key)
                    log.warning("GPU %s: %s skipped: %s", d.labels.uuid, what, _text(e))
            return None


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _text(e: BaseException) -> str:
    try:
        return str(e)
    except Exception:  # pynvml's __str__ calls into the library, which may be the thing that is missing
        return type(e).__name__
