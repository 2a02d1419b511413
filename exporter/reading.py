"""What one collection produced: the DCGM field catalog, device labels, and per-device values.

Plain data shared by the sources (`simulator`, `nvml`) and the renderer; no behaviour, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

MetricType = Literal["gauge", "counter"]


@dataclass(frozen=True)
class Field:
    """One DCGM field as dcgm-exporter serves it: name, Prometheus type, HELP text (from its counters
    CSV), and whether DCGM stores it as an integer (rendered `87`) or a double (rendered `0.873000`)."""

    name: str
    type: MetricType
    help: str
    integral: bool


SM_CLOCK = Field("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", True)
MEM_CLOCK = Field("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).", True)
GPU_TEMP = Field("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", True)
POWER_USAGE = Field("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", False)
TOTAL_ENERGY_CONSUMPTION = Field(
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ).", True
)
GPU_UTIL = Field("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", True)
MEM_COPY_UTIL = Field("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).", True)
FB_FREE = Field("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", True)
FB_USED = Field("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", True)
FB_RESERVED = Field("DCGM_FI_DEV_FB_RESERVED", "gauge", "Framebuffer memory reserved (in MiB).", True)
GR_ENGINE_ACTIVE = Field(
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active.", False
)
PIPE_TENSOR_ACTIVE = Field(
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "Ratio of cycles the tensor (HMMA) pipe is active.", False
)
DRAM_ACTIVE = Field(
    "DCGM_FI_PROF_DRAM_ACTIVE",
    "gauge",
    "Ratio of cycles the device memory interface is active sending or receiving data.",
    False,
)
SM_ACTIVE = Field(
    "DCGM_FI_PROF_SM_ACTIVE", "gauge", "The ratio of cycles an SM has at least 1 warp assigned.", False
)

# Render order: dcgm-exporter's default-counters.csv order, then SM_ACTIVE (off there by default; we
# serve it as a cluster with a custom counters file would).
FIELDS: tuple[Field, ...] = (
    SM_CLOCK,
    MEM_CLOCK,
    GPU_TEMP,
    POWER_USAGE,
    TOTAL_ENERGY_CONSUMPTION,
    GPU_UTIL,
    MEM_COPY_UTIL,
    FB_FREE,
    FB_USED,
    FB_RESERVED,
    GR_ENGINE_ACTIVE,
    PIPE_TENSOR_ACTIVE,
    DRAM_ACTIVE,
    SM_ACTIVE,
)

# Fields NVML and DCGM do not provide for a MIG instance (reference §5): never emitted on MIG series.
NOT_ON_MIG: frozenset[Field] = frozenset({GPU_UTIL, MEM_COPY_UTIL})


@dataclass(frozen=True)
class PodRef:
    """The pod holding a device, as dcgm-exporter's Kubernetes mapping (`-k`) labels it."""

    namespace: str
    name: str
    container: str


@dataclass(frozen=True)
class DeviceLabels:
    """Identity of one series: a whole GPU, or a MIG instance (`mig_profile`/`gpu_instance_id` set;
    `gpu` and `uuid` are then the parent GPU's, as in dcgm-exporter)."""

    gpu: int
    uuid: str
    pci_bus_id: str
    model_name: str
    hostname: str
    driver_version: str
    mig_profile: str | None = None
    gpu_instance_id: int | None = None
    pod: PodRef | None = None


@dataclass(frozen=True)
class Reading:
    """The values one device reported in one collection; a field that is absent is not emitted."""

    labels: DeviceLabels
    values: Mapping[Field, float]
