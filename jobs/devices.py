"""Devices on a node and how a pod's device request is carved out of them.

Whole GPUs (exclusive), shared GPUs (a share of one GPU's compute in thousandths and/or of its
memory), vGPU slices at ratios 1:2, 1:4 and 1:8 (a sliced GPU only takes slices of that ratio), NPUs,
FPGAs and RDMA NICs (virtual functions). Intra-node topology: GPUs in one NVLink group, GPUs and NICs
behind one PCIe switch. `DeviceState` is the mutable free/used view of one node; `assign` finds devices
for a request or returns the reason it cannot, phrased with the resource name the pod asked with;
`conflict` says why an assignment made elsewhere (read back from a pod's annotations) cannot be taken.
Each vGPU slice has an identity: slot k of the 1:N slicing of its GPU, so that two pods never hold the
same slice.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

MILLI = 1000
VGPU_RATIOS = (2, 4, 8)


@dataclass(frozen=True)
class Gpu:
    index: int
    model: str = ""
    memory_mib: int = 0  # 0: unknown (requests for GPU memory cannot be checked and do not fit)
    nvlink: int | None = None  # GPUs with the same id are connected by NVLink
    pcie: int | None = None  # PCIe switch id


@dataclass(frozen=True)
class Nic:
    """An RDMA NIC; each RDMA request takes one virtual function."""

    index: int
    pcie: int | None = None
    vfs: int = 1


@dataclass(frozen=True)
class Accelerator:
    """An NPU or an FPGA, allocated whole."""

    index: int
    model: str = ""


@dataclass(frozen=True)
class NodeDevices:
    gpus: tuple[Gpu, ...] = ()
    nics: tuple[Nic, ...] = ()
    npus: tuple[Accelerator, ...] = ()
    fpgas: tuple[Accelerator, ...] = ()

    @property
    def gpu_models(self) -> tuple[str, ...]:
        return tuple(sorted({g.model for g in self.gpus}))


@dataclass(frozen=True)
class GpuRequest:
    """What one pod asks of GPUs. Exactly one of the three forms is used:

    - whole: `count` exclusive GPUs (optionally all in one NVLink group);
    - shared: `shared` distinct GPUs, each giving `milli` of compute and/or memory (`memory_mib`, or
      `memory_pct` percent of the card);
    - vGPU: `vgpus` slices of ratio `vgpu_ratio` (2, 4 or 8), each on a distinct GPU.
    """

    count: int = 0
    shared: int = 0
    milli: int = 0
    memory_mib: int = 0
    memory_pct: int = 0  # a share of the GPU's memory in percent (HAMi, Volcano, Koordinator ratios)
    vgpus: int = 0
    vgpu_ratio: int = 0
    models: tuple[str, ...] = ()
    nvlink: bool = False
    label: str = "nvidia.com/gpu"

    @property
    def gpus_touched(self) -> int:
        return self.count + self.shared + self.vgpus

    @property
    def milli_total(self) -> int:
        """GPU compute requested, in thousandths of a GPU."""
        per_slice = MILLI // self.vgpu_ratio if self.vgpu_ratio else 0
        return self.count * MILLI + self.shared * self.milli + self.vgpus * per_slice


@dataclass(frozen=True)
class DeviceRequest:
    gpu: GpuRequest | None = None
    npus: int = 0
    npu_model: str = ""
    fpgas: int = 0
    rdma: int = 0
    same_pcie: bool = False  # the RDMA NIC(s) must sit behind the PCIe switch of an assigned GPU
    npu_label: str = "huawei.com/npu"
    fpga_label: str = "fpga"
    rdma_label: str = "rdma/hca"

    @property
    def empty(self) -> bool:
        return (self.gpu is None or self.gpu.gpus_touched == 0) and not (self.npus or self.fpgas or self.rdma)


@dataclass(frozen=True)
class DeviceAssignment:
    """Device indices (positions in `NodeDevices`) one pod holds.

    `slices`: for a vGPU request, the slot index on each GPU of `gpus` (same length and order); empty
    otherwise, or when the source only knew the GPUs (`DeviceState.apply` then takes the lowest free
    slots). `vgpu_ratio` is for display only ("gpu 0 slot 2/4") and takes no part in equality.
    """

    gpus: tuple[int, ...] = ()
    nics: tuple[int, ...] = ()
    npus: tuple[int, ...] = ()
    fpgas: tuple[int, ...] = ()
    slices: tuple[int, ...] = ()
    vgpu_ratio: int = field(default=0, compare=False)

    def __str__(self) -> str:
        if self.slices and len(self.slices) == len(self.gpus):
            of = f"/{self.vgpu_ratio}" if self.vgpu_ratio else ""
            gpus = ",".join(f"{i} slot {s}{of}" for i, s in zip(self.gpus, self.slices, strict=True))
        else:
            gpus = ",".join(map(str, self.gpus))
        parts = [
            f"{kind} {ids}"
            for kind, ids in (
                ("gpu", gpus),
                ("nic", ",".join(map(str, self.nics))),
                ("npu", ",".join(map(str, self.npus))),
                ("fpga", ",".join(map(str, self.fpgas))),
            )
            if ids
        ]
        return "; ".join(parts) or "no devices"


def _lowest_clear_bit(mask: int) -> int:
    return (~mask & (mask + 1)).bit_length() - 1


@dataclass
class DeviceState:
    """Free capacity of one node's devices; mutated by `apply`, restored by `release`."""

    devices: NodeDevices
    milli_free: list[int] = field(default_factory=list)
    memory_free: list[int] = field(default_factory=list)
    ratio: list[int] = field(default_factory=list)  # 0: not sliced
    slices_free: list[int] = field(default_factory=list)
    vfs_free: list[int] = field(default_factory=list)
    npu_free: list[bool] = field(default_factory=list)
    fpga_free: list[bool] = field(default_factory=list)
    slot_used: list[int] = field(default_factory=list)  # per GPU, bit k set: vGPU slot k is held

    @staticmethod
    def fresh(devices: NodeDevices) -> DeviceState:
        return DeviceState(
            devices,
            [MILLI] * len(devices.gpus),
            [g.memory_mib for g in devices.gpus],
            [0] * len(devices.gpus),
            [0] * len(devices.gpus),
            [n.vfs for n in devices.nics],
            [True] * len(devices.npus),
            [True] * len(devices.fpgas),
            [0] * len(devices.gpus),
        )

    def copy(self) -> DeviceState:
        return DeviceState(
            self.devices,
            list(self.milli_free),
            list(self.memory_free),
            list(self.ratio),
            list(self.slices_free),
            list(self.vfs_free),
            list(self.npu_free),
            list(self.fpga_free),
            list(self.slot_used),
        )

    def signature(self) -> tuple[tuple[int, ...], ...]:
        """Every mutable field as one hashable value: two nodes with equal devices and equal signatures
        answer every request the same way (the placement's node equivalence classes key on it)."""
        return (
            tuple(self.milli_free),
            tuple(self.memory_free),
            tuple(self.ratio),
            tuple(self.slices_free),
            tuple(self.vfs_free),
            tuple(int(f) for f in self.npu_free),
            tuple(int(f) for f in self.fpga_free),
            tuple(self.slot_used),
        )

    def fully_free(self, i: int) -> bool:
        g = self.devices.gpus[i]
        return self.milli_free[i] == MILLI and self.memory_free[i] == g.memory_mib and self.ratio[i] == 0

    def free_slot(self, i: int) -> int:
        """The lowest vGPU slot of GPU `i` nobody holds (0 on a GPU not sliced yet)."""
        return _lowest_clear_bit(self.slot_used[i])

    @property
    def gpu_milli_free(self) -> int:
        return sum(self.milli_free)

    def memory_need(self, req: GpuRequest, i: int) -> int:
        """GPU memory (MiB) one share of `req` takes on GPU `i`."""
        if req.memory_pct:
            return -(-self.devices.gpus[i].memory_mib * req.memory_pct // 100)
        return req.memory_mib

    def shared_candidates(self, req: GpuRequest) -> list[int]:
        """GPUs (allowed model, not sliced) with room for one share of `req`."""
        out = []
        for i, g in enumerate(self.devices.gpus):
            if req.models and g.model not in req.models:
                continue
            if self.ratio[i] or self.milli_free[i] < req.milli:
                continue
            need = self.memory_need(req, i)
            if need and (g.memory_mib == 0 or self.memory_free[i] < need):
                continue
            out.append(i)
        return out

    # -- finding devices ---------------------------------------------------------------------

    def _whole(self, req: GpuRequest, allowed: list[int]) -> tuple[int, ...] | str:
        free = [i for i in allowed if self.fully_free(i)]
        if len(free) < req.count:
            return f"insufficient {req.label}"
        groups: dict[int | None, list[int]] = {}
        for i in free:
            groups.setdefault(self.devices.gpus[i].nvlink, []).append(i)
        # Prefer the tightest NVLink group that holds them all (keeps big groups whole), else any GPUs.
        fitting = sorted(
            (len(ids), ids[0], ids) for nv, ids in groups.items() if nv is not None and len(ids) >= req.count
        )
        if fitting:
            return tuple(fitting[0][2][: req.count])
        if req.nvlink:
            return f"no NVLink group with {req.count} free GPUs"
        return tuple(free[: req.count])

    def _slices(self, req: GpuRequest, allowed: list[int]) -> tuple[int, ...] | str:
        if req.vgpu_ratio not in VGPU_RATIOS:
            return f"vGPU ratio 1:{req.vgpu_ratio} unsupported (1:2, 1:4, 1:8)"
        sliced = [i for i in allowed if self.ratio[i] == req.vgpu_ratio and self.slices_free[i] > 0]
        sliced.sort(key=lambda i: (self.slices_free[i], i))  # fill partly used slicings first
        fresh = [i for i in allowed if self.fully_free(i)]
        chosen = (sliced + fresh)[: req.vgpus]
        if len(chosen) < req.vgpus:
            return f"insufficient {req.label}"
        return tuple(chosen)

    def gpu_choice(
        self, req: GpuRequest, prefer: Sequence[int] | None = None, within: set[int] | None = None
    ) -> tuple[int, ...] | str:
        """GPU indices for `req` (among `within` when given), or why none. Shared requests take the
        tightest GPUs unless `prefer` (candidate indices in order of preference) says otherwise."""
        allowed = [
            i
            for i, g in enumerate(self.devices.gpus)
            if (not req.models or g.model in req.models) and (within is None or i in within)
        ]
        if not self.devices.gpus:
            return f"insufficient {req.label}"
        if not allowed:
            return f"GPU model not in {'|'.join(req.models)}"
        if req.count:
            return self._whole(req, allowed)
        if req.vgpus:
            return self._slices(req, allowed)
        cands = [i for i in self.shared_candidates(req) if i in allowed]
        if len(cands) < req.shared:
            return f"insufficient {req.label}"
        if prefer is not None:
            ordered = [i for i in prefer if i in cands] + [i for i in cands if i not in prefer]
        else:
            ordered = sorted(cands, key=lambda i: (self.milli_free[i], self.memory_free[i], i))
        return tuple(ordered[: req.shared])

    def assign(self, req: DeviceRequest, prefer: Sequence[int] | None = None) -> DeviceAssignment | str:
        gpus: tuple[int, ...] = ()
        if req.gpu is not None and req.gpu.gpus_touched:
            got = self.gpu_choice(req.gpu, prefer)
            if isinstance(got, str):
                return got
            gpus = got
            if req.same_pcie and req.rdma and not self._nics_near(gpus, req.rdma):
                # try the GPUs behind each switch that has enough free NIC functions
                for sw in sorted({n.pcie for n in self.devices.nics if n.pcie is not None}):
                    near = {i for i, g in enumerate(self.devices.gpus) if g.pcie == sw}
                    alt = self.gpu_choice(req.gpu, prefer, within=near)
                    if not isinstance(alt, str) and self._nics_near(alt, req.rdma):
                        gpus = alt
                        break
        npus = [
            i for i, a in enumerate(self.devices.npus) if self.npu_free[i] and a.model in ("", req.npu_model)
        ]
        if req.npu_model:
            npus = [i for i in npus if self.devices.npus[i].model == req.npu_model]
        if len(npus) < req.npus:
            return f"insufficient {req.npu_label}"
        fpgas = [i for i, free in enumerate(self.fpga_free) if free]
        if len(fpgas) < req.fpgas:
            return f"insufficient {req.fpga_label}"
        nics = [i for i, free in enumerate(self.vfs_free) if free > 0]
        if req.same_pcie and gpus:
            switches = {self.devices.gpus[i].pcie for i in gpus} - {None}
            nics = [i for i in nics if self.devices.nics[i].pcie in switches]
            if len(nics) < req.rdma:
                return "no RDMA NIC on the GPUs' PCIe switch"
        if len(nics) < req.rdma:
            return f"insufficient {req.rdma_label}"
        slices: tuple[int, ...] = ()
        ratio = 0
        if req.gpu is not None and req.gpu.vgpus:
            slices = tuple(self.free_slot(i) for i in gpus)
            ratio = req.gpu.vgpu_ratio
        return DeviceAssignment(
            gpus, tuple(nics[: req.rdma]), tuple(npus[: req.npus]), tuple(fpgas[: req.fpgas]), slices, ratio
        )

    def _nics_near(self, gpus: tuple[int, ...], count: int) -> bool:
        switches = {self.devices.gpus[i].pcie for i in gpus} - {None}
        free = [i for i, n in enumerate(self.devices.nics) if n.pcie in switches and self.vfs_free[i] > 0]
        return len(free) >= count

    # -- bookkeeping -------------------------------------------------------------------------

    def conflict(self, req: DeviceRequest, got: DeviceAssignment) -> str | None:
        """Why `got` (an assignment made elsewhere, e.g. read from a pod's annotations) cannot be
        applied for `req` on this state, or None when `apply` may take it. Refusing here is what keeps a
        GPU, a vGPU slot or an NPU from being booked twice."""
        d = self.devices
        for kind, ids, have in (
            ("GPU", got.gpus, len(d.gpus)),
            ("NIC", got.nics, len(d.nics)),
            ("NPU", got.npus, len(d.npus)),
            ("FPGA", got.fpgas, len(d.fpgas)),
        ):
            bad = [i for i in ids if not 0 <= i < have]
            if bad:
                return f"no {kind} {bad[0]} (the node has {have})"
        g = req.gpu
        for kind, ids, want in (
            ("GPU", got.gpus, g.gpus_touched if g is not None else 0),
            ("NIC", got.nics, req.rdma),
            ("NPU", got.npus, req.npus),
            ("FPGA", got.fpgas, req.fpgas),
        ):
            if len(ids) != want:
                return f"{len(ids)} {kind}s assigned, the request takes {want}"
        for kind, ids in (("GPU", got.gpus), ("NPU", got.npus), ("FPGA", got.fpgas)):
            twice = [i for i, n in Counter(ids).items() if n > 1]
            if twice:
                return f"{kind} {twice[0]} assigned twice"
        if g is not None and got.gpus:
            why = self._gpu_conflict(g, got)
            if why:
                return why
        for i, n in Counter(got.nics).items():
            if self.vfs_free[i] < n:
                return f"NIC {i} has {max(self.vfs_free[i], 0)} free virtual functions, {n} needed"
        for kind, ids, free in (("NPU", got.npus, self.npu_free), ("FPGA", got.fpgas, self.fpga_free)):
            taken = [i for i in ids if not free[i]]
            if taken:
                return f"{kind} {taken[0]} is taken"
        return None

    def _gpu_conflict(self, g: GpuRequest, got: DeviceAssignment) -> str | None:
        if g.vgpus:
            return self._slice_conflict(g, got)
        for i in got.gpus:
            if self.ratio[i]:
                return f"GPU {i} is sliced 1:{self.ratio[i]}"
            if g.count:
                if not self.fully_free(i):
                    return f"GPU {i} is not free ({self.milli_free[i]}m of {MILLI}m left)"
                continue
            if self.milli_free[i] < g.milli:
                return f"GPU {i} has {self.milli_free[i]}m left, the share takes {g.milli}m"
            need = self.memory_need(g, i)
            if need and self.devices.gpus[i].memory_mib == 0:
                return f"GPU {i} has unknown memory, the share takes {need} MiB"
            if need > self.memory_free[i]:
                return f"GPU {i} has {self.memory_free[i]} MiB left, the share takes {need} MiB"
        return None

    def _slice_conflict(self, g: GpuRequest, got: DeviceAssignment) -> str | None:
        want = g.vgpu_ratio
        if want not in VGPU_RATIOS:
            return f"vGPU ratio 1:{want} unsupported (1:2, 1:4, 1:8)"
        if got.slices and len(got.slices) != len(got.gpus):
            return f"{len(got.slices)} vGPU slots for {len(got.gpus)} GPUs"
        for k, i in enumerate(got.gpus):
            have = self.ratio[i]
            if have and have != want:
                return f"GPU {i} is sliced 1:{have}, not 1:{want}"
            if not have and not self.fully_free(i):
                return f"GPU {i} is shared ({self.milli_free[i]}m of {MILLI}m left), not sliced"
            if got.slices:
                slot = got.slices[k]
                if not 0 <= slot < want:
                    return f"GPU {i} has no slot {slot} at 1:{want}"
                if self.slot_used[i] >> slot & 1:
                    return f"GPU {i} slot {slot}/{want} is taken"
            elif have and self.slices_free[i] <= 0:
                return f"GPU {i} has no free 1:{want} slot"
        return None

    def apply(self, req: DeviceRequest, got: DeviceAssignment, sign: int = 1) -> DeviceAssignment:
        """Take (sign=1) or give back (sign=-1) the devices of an assignment. Returns the assignment
        as taken: a vGPU assignment without `slices` gets the lowest free slots (keep that one to give
        them back exactly; given back without `slices`, the highest held slots go)."""
        g = req.gpu
        slices = got.slices
        if g is not None and g.vgpus:
            slices = self._apply_slices(g, got, sign)
        elif g is not None:
            for i in got.gpus:
                if g.count:
                    self.milli_free[i] -= sign * MILLI
                    self.memory_free[i] -= sign * self.devices.gpus[i].memory_mib
                else:
                    self.milli_free[i] -= sign * g.milli
                    self.memory_free[i] -= sign * self.memory_need(g, i)
        for i in got.nics:
            self.vfs_free[i] -= sign
        for i in got.npus:
            self.npu_free[i] = sign < 0
        for i in got.fpgas:
            self.fpga_free[i] = sign < 0
        if slices == got.slices:
            return got
        return replace(got, slices=slices, vgpu_ratio=g.vgpu_ratio if g is not None else 0)

    def _apply_slices(self, g: GpuRequest, got: DeviceAssignment, sign: int) -> tuple[int, ...]:
        slots = []
        for k, i in enumerate(got.gpus):
            if sign > 0:
                if self.ratio[i] == 0:
                    self.ratio[i] = g.vgpu_ratio
                slot = got.slices[k] if got.slices else self.free_slot(i)
                self.slot_used[i] |= 1 << slot
            else:
                slot = got.slices[k] if got.slices else max(self.slot_used[i].bit_length() - 1, 0)
                self.slot_used[i] &= ~(1 << slot)
            slots.append(slot)
            self.slices_free[i] = self.ratio[i] - self.slot_used[i].bit_count()
            self.milli_free[i] -= sign * (MILLI // g.vgpu_ratio)
            self.memory_free[i] -= sign * (self.devices.gpus[i].memory_mib // g.vgpu_ratio)
            if sign < 0 and self.slot_used[i] == 0:
                self.ratio[i] = 0
                self.slices_free[i] = 0
                self.milli_free[i] = MILLI
                self.memory_free[i] = self.devices.gpus[i].memory_mib
        return tuple(slots)
