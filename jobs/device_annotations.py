"""A pod's device assignment <-> the pod annotations that record it.

When tidescale binds a pod it writes, before the binding, which devices of the node the pod holds: its
own names (`tidescale.io/gpus: "0,3"`, `tidescale.io/gpu-slices: "0:2"`, ...), and for a share of one
GPU also the names Alibaba's gpushare device plugin reads at Allocate, exactly as the gpushare
scheduler-extender writes them (`ALIYUN_COM_GPU_MEM_IDX`, `_DEV`, `_POD`, `_ASSIGNED`, `_ASSUME_TIME`)
plus Arena's `scheduler.framework.gpushare.allocation`. After a restart the annotations are the truth:
`read_assignment` turns them back into a `DeviceAssignment` (falling back to gpushare's device index
for pods another gpushare scheduler bound), and `DeviceState.conflict` refuses what would double-book.

Pure: no I/O, no clock (the assume time is passed in as `now_ns`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from jobs.devices import DeviceAssignment
from jobs.vocabulary import VGPU_RATIO, PodRequest

ASSIGNED_NODE = "tidescale.io/node"
ASSIGNED_GPUS = "tidescale.io/gpus"
ASSIGNED_SLICES = "tidescale.io/gpu-slices"  # "<gpu>:<slot>,...", same order as ASSIGNED_GPUS
ASSIGNED_NICS = "tidescale.io/nics"
ASSIGNED_NPUS = "tidescale.io/npus"
ASSIGNED_FPGAS = "tidescale.io/fpgas"
ASSUME_TIME = "tidescale.io/assume-time"  # unix ns when tidescale decided
ASSIGNMENT_KEYS = (
    ASSIGNED_NODE,
    ASSIGNED_GPUS,
    ASSIGNED_SLICES,
    ASSIGNED_NICS,
    ASSIGNED_NPUS,
    ASSIGNED_FPGAS,
    ASSUME_TIME,
)

# gpushare-scheduler-extender pkg/utils/const.go; the device plugin matches on these at Allocate
GPUSHARE_IDX = "ALIYUN_COM_GPU_MEM_IDX"
GPUSHARE_DEV = "ALIYUN_COM_GPU_MEM_DEV"
GPUSHARE_POD = "ALIYUN_COM_GPU_MEM_POD"
GPUSHARE_ASSIGNED = "ALIYUN_COM_GPU_MEM_ASSIGNED"
GPUSHARE_ASSUME_TIME = "ALIYUN_COM_GPU_MEM_ASSUME_TIME"
GPUSHARE_ALLOCATION = "scheduler.framework.gpushare.allocation"  # {"<container>": {"<device>": GiB}}
GPUSHARE_KEYS = (
    GPUSHARE_IDX,
    GPUSHARE_DEV,
    GPUSHARE_POD,
    GPUSHARE_ASSIGNED,
    GPUSHARE_ASSUME_TIME,
    GPUSHARE_ALLOCATION,
)

GIB = 1024  # MiB


def _ids(ids: Sequence[int]) -> str:
    return ",".join(map(str, ids))


def assignment_annotations(
    request: PodRequest,
    got: DeviceAssignment,
    node: str,
    now_ns: int,
    gpu_memory_mib: Sequence[int] = (),
) -> dict[str, str]:
    """The annotations to write on a pod bound to `node` with devices `got`.

    `gpu_memory_mib[i]` is GPU i's memory (0 or missing: unknown); it gives gpushare's per-device size
    and the share of a request asked as a percentage of the card.
    """
    g = request.devices.gpu
    if got.slices and len(got.slices) != len(got.gpus):
        raise ValueError(f"{len(got.slices)} vGPU slots for {len(got.gpus)} GPUs in {got}")
    if g is not None and g.vgpus and got.gpus and not got.slices:
        raise ValueError(f"a vGPU assignment needs its slots (DeviceState.apply fills them): {got}")
    out = {ASSIGNED_NODE: node}
    for key, ids in (
        (ASSIGNED_GPUS, got.gpus),
        (ASSIGNED_NICS, got.nics),
        (ASSIGNED_NPUS, got.npus),
        (ASSIGNED_FPGAS, got.fpgas),
    ):
        if ids:
            out[key] = _ids(ids)
    if got.slices:
        out[ASSIGNED_SLICES] = ",".join(f"{i}:{s}" for i, s in zip(got.gpus, got.slices, strict=True))
    out[ASSUME_TIME] = str(now_ns)
    if g is not None and g.shared == 1 and not g.count and not g.vgpus:
        if len(got.gpus) != 1:
            raise ValueError(f"a share of one GPU assigned {len(got.gpus)} GPUs: {got}")
        idx = got.gpus[0]
        card = gpu_memory_mib[idx] if idx < len(gpu_memory_mib) else 0
        need = -(-card * g.memory_pct // 100) if g.memory_pct else g.memory_mib
        pod_gib = -(-need // GIB)  # gpushare counts whole GiB; its Allocate matches the pod's gpu-mem
        out[GPUSHARE_IDX] = str(idx)
        if card:
            out[GPUSHARE_DEV] = str(card // GIB)  # the device plugin's own per-device count rounds down
        out[GPUSHARE_POD] = str(pod_gib)
        out[GPUSHARE_ASSIGNED] = "false"
        out[GPUSHARE_ASSUME_TIME] = str(now_ns)
        out[GPUSHARE_ALLOCATION] = json.dumps({"0": {str(idx): pod_gib}}, separators=(",", ":"))
    return out


_INDEX = re.compile(r"\d+", re.ASCII)


def _index(key: str, raw: str, text: str) -> int:
    if not _INDEX.fullmatch(text.strip()):
        raise ValueError(f"{key}: not a device index list: {raw!r}")
    return int(text)


def _index_list(annotations: Mapping[str, str], key: str) -> tuple[int, ...]:
    raw = annotations.get(key, "")
    if not raw.strip():
        return ()
    return tuple(_index(key, raw, part) for part in raw.split(","))


def _slices(annotations: Mapping[str, str]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    raw = annotations.get(ASSIGNED_SLICES, "")
    if not raw.strip():
        return (), ()
    gpus, slots = [], []
    for part in raw.split(","):
        gpu, sep, slot = part.partition(":")
        if not sep:
            raise ValueError(f"{ASSIGNED_SLICES}: not a list of <gpu>:<slot>: {raw!r}")
        gpus.append(_index(ASSIGNED_SLICES, raw, gpu))
        slots.append(_index(ASSIGNED_SLICES, raw, slot))
    return tuple(gpus), tuple(slots)


def _gpushare(annotations: Mapping[str, str]) -> DeviceAssignment | None:
    """A pod that another gpushare scheduler bound: its one device index, else Arena's allocation."""
    if GPUSHARE_IDX in annotations:
        return DeviceAssignment(
            gpus=(_index(GPUSHARE_IDX, annotations[GPUSHARE_IDX], annotations[GPUSHARE_IDX]),)
        )
    raw = annotations.get(GPUSHARE_ALLOCATION)
    if raw is None:
        return None
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{GPUSHARE_ALLOCATION}: not JSON: {e.msg}") from None
    if not isinstance(spec, dict) or not all(isinstance(v, dict) for v in spec.values()):
        raise ValueError(f'{GPUSHARE_ALLOCATION}: not {{"<container>": {{"<device>": GiB}}}}: {raw!r}')
    devices = {_index(GPUSHARE_ALLOCATION, raw, d) for per in spec.values() for d in per}
    return DeviceAssignment(gpus=tuple(sorted(devices)))


def read_assignment(annotations: Mapping[str, str]) -> DeviceAssignment | None:
    """The devices a pod holds according to its annotations; None when it carries no assignment."""
    if not any(key in annotations for key in ASSIGNMENT_KEYS):
        return _gpushare(annotations)
    gpus = _index_list(annotations, ASSIGNED_GPUS)
    slice_gpus, slots = _slices(annotations)
    if slots and ASSIGNED_GPUS in annotations and slice_gpus != gpus:
        raise ValueError(
            f"{ASSIGNED_SLICES}: GPUs {_ids(slice_gpus)} differ from {ASSIGNED_GPUS} {_ids(gpus) or '(none)'}"
        )
    ratio = 0
    if slots and VGPU_RATIO in annotations:
        if not _INDEX.fullmatch(annotations[VGPU_RATIO].strip()):
            raise ValueError(f"{VGPU_RATIO}: not a whole number: {annotations[VGPU_RATIO]!r}")
        ratio = int(annotations[VGPU_RATIO])
    return DeviceAssignment(
        gpus=slice_gpus or gpus,
        nics=_index_list(annotations, ASSIGNED_NICS),
        npus=_index_list(annotations, ASSIGNED_NPUS),
        fpgas=_index_list(annotations, ASSIGNED_FPGAS),
        slices=slots,
        vgpu_ratio=ratio,
    )
