"""The simulated GPUs' physics: from a load in [0, 1] to the DCGM values a real GPU would report.

- Utilization and profiling ratios follow the load at once, each up to the ceiling a real GPU reaches under a
  saturating load (a large dense GEMM, load 1.0): GPU_UTIL 100, GR_ENGINE_ACTIVE 1.0, SM_ACTIVE 0.98,
  PIPE_TENSOR_ACTIVE 0.93, DRAM_ACTIVE and MEM_COPY_UTIL 0.9 (`CEILINGS`); the value is ceiling·load.
- Framebuffer: `preallocated` servers (vLLM, TGI) hold `memoryCapPercent` of the memory whenever they
  hold the GPU or run load; `dynamic` ones grow with the load up to that cap.
- Power = idle + load·(max - idle); energy integrates it exactly (the load is constant between steps).
- Temperature relaxes toward a load-dependent target with a time constant.
- Power, temperature, energy and clocks belong to the physical GPU: MIG instances report their parent's,
  whose load is the slice-weighted sum of its instances' loads.

Pure: values in, values out; time enters only as `dt`. No I/O, no clock, no randomness beyond a seeded hash.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from exporter import reading as f
from exporter.reading import DeviceLabels, Field, PodRef, Reading
from exporter.spec import MIG_SLICES_PER_GPU, ExporterSpec, MemoryMode, PodSpec

# What each ratio reads at load 1.0: what a real data-center GPU reports under a saturating dense-GEMM load
# (dcgmproftester's targets, cuBLAS on H100/A100). The graphics engine is busy every cycle; a few SMs idle
# at wave tails; the tensor pipe stalls on operand loads; DRAM transfers cannot use every cycle (refresh,
# read/write turnarounds). Below 1.0 every ratio is ceiling·load, so at any load the fields keep their order.
CEILINGS: Mapping[Field, float] = {
    f.GR_ENGINE_ACTIVE: 1.0,
    f.SM_ACTIVE: 0.98,
    f.PIPE_TENSOR_ACTIVE: 0.93,
    f.DRAM_ACTIVE: 0.9,
}
# The driver keeps a slice of the framebuffer to itself (FB_RESERVED); H100 80GB reports ~0.7 %.
RESERVED_FRACTION = 0.007
# SM clocks jump from idle to boost as soon as there is work: full boost from this load on.
SM_CLOCK_FULL_AT_LOAD = 0.1


@dataclass(frozen=True)
class DeviceProfile:
    """Physical constants of a GPU model."""

    idle_power_w: float
    max_power_w: float
    sm_clock_idle_mhz: int
    sm_clock_max_mhz: int
    mem_clock_mhz: int
    idle_temp_c: float = 30.0
    full_load_temp_c: float = 72.0


KNOWN_PROFILES: Mapping[str, DeviceProfile] = {
    "NVIDIA H100 80GB HBM3": DeviceProfile(70, 700, 345, 1980, 2619),
    "NVIDIA H200": DeviceProfile(75, 700, 345, 1980, 3201),
    "NVIDIA A100-SXM4-80GB": DeviceProfile(55, 400, 210, 1410, 1593),
    "NVIDIA A100-SXM4-40GB": DeviceProfile(50, 400, 210, 1410, 1215),
    "NVIDIA L40S": DeviceProfile(35, 350, 210, 2520, 9001),
    "NVIDIA L4": DeviceProfile(16, 72, 210, 2040, 6251),
    "NVIDIA A10G": DeviceProfile(25, 300, 210, 1710, 6251),
    "Tesla T4": DeviceProfile(10, 70, 300, 1590, 5001),
}
GENERIC_PROFILE = DeviceProfile(50, 300, 300, 1800, 5000)


@dataclass(frozen=True)
class SimDevice:
    """One series source: a whole GPU, or one MIG instance of a GPU.

    `key` is what the load signal addresses (the GPU's UUID, or the MIG instance's `MIG-…` UUID);
    `labels.uuid` is the physical GPU's, which owns the thermal and energy state. `deployment` is the
    Deployment of the holding pod when it is known (read from a cluster); None leaves the load
    selector to match the pod's name prefix.
    """

    key: str
    node: str
    labels: DeviceLabels
    memory_mib: int
    memory_mode: MemoryMode
    memory_cap_percent: int
    profile: DeviceProfile
    slice_fraction: float = 1.0
    deployment: str | None = None


@dataclass(frozen=True)
class GpuState:
    """What a physical GPU remembers between steps."""

    temp_c: float
    energy_mj: float


@dataclass(frozen=True)
class FleetState:
    loads: Mapping[str, float]
    gpus: Mapping[str, GpuState]
    step: int = 0


@dataclass(frozen=True)
class SimParams:
    thermal_time_constant_s: float = 30.0
    noise_percent: int = 0
    seed: int = 0


def params_from_spec(spec: ExporterSpec) -> SimParams:
    noise = spec.noise
    return SimParams(
        thermal_time_constant_s=spec.thermal_time_constant_seconds,
        noise_percent=noise.percent if noise else 0,
        seed=noise.seed if noise else 0,
    )


def devices_from_spec(spec: ExporterSpec) -> tuple[SimDevice, ...]:
    """Every series source the spec describes, in node, GPU and MIG-instance order."""
    devices: list[SimDevice] = []
    for node in spec.nodes:
        for index, gpu in enumerate(node.gpus):
            profile = KNOWN_PROFILES.get(gpu.model, GENERIC_PROFILE)
            power = spec.models.get(gpu.model)
            if power is not None:
                profile = replace(
                    profile, idle_power_w=power.idle_power_watts, max_power_w=power.max_power_watts
                )
            labels = DeviceLabels(
                gpu=index,
                uuid=gpu.resolved_uuid(node.name, index),
                pci_bus_id=gpu.resolved_pci_bus_id(index),
                model_name=gpu.model,
                hostname=node.name,
                driver_version=spec.driver_version,
            )
            mode = gpu.memory_mode or spec.memory_mode
            if not gpu.mig:
                devices.append(
                    SimDevice(
                        key=labels.uuid,
                        node=node.name,
                        labels=replace(labels, pod=_pod(gpu.pod)),
                        memory_mib=gpu.memory_mib,
                        memory_mode=mode,
                        memory_cap_percent=spec.memory_cap_percent,
                        profile=profile,
                    )
                )
            for inst in gpu.mig:
                devices.append(
                    SimDevice(
                        key=inst.resolved_uuid(node.name, index),
                        node=node.name,
                        labels=replace(
                            labels,
                            mig_profile=inst.profile,
                            gpu_instance_id=inst.gpu_instance_id,
                            pod=_pod(inst.pod),
                        ),
                        memory_mib=inst.resolved_memory_mib,
                        memory_mode=mode,
                        memory_cap_percent=spec.memory_cap_percent,
                        profile=profile,
                        slice_fraction=inst.slices / MIG_SLICES_PER_GPU,
                    )
                )
    return tuple(devices)


def initial_state(devices: Sequence[SimDevice]) -> FleetState:
    """Everything idle and cool, energy counters at zero (as after a driver load)."""
    return FleetState(
        loads={d.key: 0.0 for d in devices},
        gpus={d.labels.uuid: GpuState(temp_c=d.profile.idle_temp_c, energy_mj=0.0) for d in devices},
    )


def rebase(state: FleetState, devices: Sequence[SimDevice], loads: Mapping[str, float]) -> FleetState:
    """The state for a new device set (the cluster changed): GPUs that remain keep their temperature and
    energy, new ones start idle and cool, removed ones are forgotten; each device takes its load from
    `loads` (0 when absent). The step count goes on, so the noise sequence does not repeat."""
    gpus = {
        d.labels.uuid: state.gpus.get(d.labels.uuid) or GpuState(temp_c=d.profile.idle_temp_c, energy_mj=0.0)
        for d in devices
    }
    return FleetState(loads={d.key: loads.get(d.key, 0.0) for d in devices}, gpus=gpus, step=state.step)


def gpu_loads(devices: Sequence[SimDevice], loads: Mapping[str, float]) -> dict[str, float]:
    """The load of each physical GPU: its own, or the slice-weighted sum of its MIG instances'."""
    out: dict[str, float] = {}
    for d in devices:
        out[d.labels.uuid] = out.get(d.labels.uuid, 0.0) + d.slice_fraction * loads.get(d.key, 0.0)
    return {uuid: min(1.0, load) for uuid, load in out.items()}


def power_w(profile: DeviceProfile, load: float) -> float:
    return profile.idle_power_w + load * (profile.max_power_w - profile.idle_power_w)


def target_temp_c(profile: DeviceProfile, load: float) -> float:
    return profile.idle_temp_c + load * (profile.full_load_temp_c - profile.idle_temp_c)


def advance_gpu(state: GpuState, profile: DeviceProfile, load: float, dt: float, tau: float) -> GpuState:
    """`dt` seconds at a constant `load`: temperature relaxes exponentially, energy grows by power·dt."""
    if dt <= 0:
        return state
    target = target_temp_c(profile, load)
    temp = target + (state.temp_c - target) * math.exp(-dt / tau)
    return GpuState(temp_c=temp, energy_mj=state.energy_mj + power_w(profile, load) * dt * 1000.0)


def advance(devices: Sequence[SimDevice], state: FleetState, dt: float, params: SimParams) -> FleetState:
    """The fleet `dt` seconds later, loads unchanged; counts one step (the noise sequence moves on)."""
    profiles = {d.labels.uuid: d.profile for d in devices}
    loads = gpu_loads(devices, state.loads)
    gpus = {
        uuid: advance_gpu(gpu, profiles[uuid], loads.get(uuid, 0.0), dt, params.thermal_time_constant_s)
        for uuid, gpu in state.gpus.items()
    }
    return FleetState(loads=state.loads, gpus=gpus, step=state.step + 1)


def with_loads(state: FleetState, keys: Sequence[str], load: float) -> FleetState:
    """Set `load` on the devices `keys`. Advance to now first, so energy is integrated at the old load."""
    if not 0.0 <= load <= 1.0:
        raise ValueError(f"load must be within [0, 1], got {load}")
    unknown = [k for k in keys if k not in state.loads]
    if unknown:
        raise KeyError(f"unknown devices: {', '.join(unknown)}")
    return replace(state, loads={**state.loads, **dict.fromkeys(keys, load)})


def read(devices: Sequence[SimDevice], state: FleetState, params: SimParams) -> list[Reading]:
    """The readings every device reports in the current state."""
    loads = gpu_loads(devices, state.loads)
    return [_reading(d, state.loads.get(d.key, 0.0), loads[d.labels.uuid], state, params) for d in devices]


def _reading(
    device: SimDevice, load: float, gpu_load: float, state: FleetState, params: SimParams
) -> Reading:
    def jitter(field: Field) -> float:
        """A reproducible offset in [-noise, +noise] (a fraction of the full scale); none when idle."""
        if params.noise_percent == 0 or load == 0.0:
            return 0.0
        return noise(params.seed, device.key, state.step, field.name) * params.noise_percent / 100.0

    def ratio(field: Field) -> float:
        return _clamp(CEILINGS[field] * load + jitter(field), 0.0, 1.0)

    profile = device.profile
    gpu = state.gpus[device.labels.uuid]
    reserved = round(device.memory_mib * RESERVED_FRACTION)
    usable = device.memory_mib - reserved
    cap = usable * device.memory_cap_percent // 100
    if device.memory_mode == "preallocated":
        used = cap if (device.labels.pod is not None or load > 0.0) else 0
    else:
        used = round(cap * load)
    sm_clock = profile.sm_clock_idle_mhz + (profile.sm_clock_max_mhz - profile.sm_clock_idle_mhz) * min(
        1.0, gpu_load / SM_CLOCK_FULL_AT_LOAD
    )
    dram = ratio(f.DRAM_ACTIVE)
    values: dict[Field, float] = {
        f.SM_CLOCK: round(sm_clock),
        f.MEM_CLOCK: profile.mem_clock_mhz,
        f.GPU_TEMP: round(gpu.temp_c),
        f.POWER_USAGE: round(power_w(profile, gpu_load), 3),
        f.TOTAL_ENERGY_CONSUMPTION: math.floor(gpu.energy_mj),
        f.FB_FREE: usable - used,
        f.FB_USED: used,
        f.FB_RESERVED: reserved,
        f.GR_ENGINE_ACTIVE: ratio(f.GR_ENGINE_ACTIVE),
        f.PIPE_TENSOR_ACTIVE: ratio(f.PIPE_TENSOR_ACTIVE),
        f.DRAM_ACTIVE: dram,
        f.SM_ACTIVE: ratio(f.SM_ACTIVE),
    }
    if device.labels.mig_profile is None:  # NVML and DCGM have no utilization rates for MIG instances
        values[f.GPU_UTIL] = round(_clamp(load + jitter(f.GPU_UTIL), 0.0, 1.0) * 100)
        values[f.MEM_COPY_UTIL] = round(dram * 100)
    return Reading(labels=device.labels, values=values)


def noise(seed: int, key: str, step: int, name: str) -> float:
    """A deterministic value in [-1, 1] for (seed, device, step, field)."""
    digest = hashlib.blake2b(f"{seed}|{key}|{step}|{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / float(2**64 - 1) * 2.0 - 1.0


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def _pod(pod: PodSpec | None) -> PodRef | None:
    return PodRef(namespace=pod.namespace, name=pod.name, container=pod.container) if pod else None
