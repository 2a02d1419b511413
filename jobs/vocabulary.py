"""Kubernetes resource names and annotations <-> the resource model.

One vocabulary for the device plugins and schedulers in ../shared/reference/scheduling.md §2:
NVIDIA device plugin (`nvidia.com/gpu`), HAMi (`nvidia.com/gpumem`, `-percentage`, `gpucores`),
Alibaba gpushare (`aliyun.com/gpu-mem`, `aliyun.com/gpu-core.percentage`), Volcano vGPU
(`volcano.sh/vgpu-*`), Koordinator (`koordinator.sh/gpu*`, `rdma`, `fpga`, joint GPU+NIC allocation),
KAI (`gpu-fraction`, `gpu-memory` annotations), the Alibaba trace simulator
(`alibabacloud.com/gpu-*`), Ascend NPUs (`huawei.com/Ascend*`), RDMA (`rdma/hca`). vGPU slices at a
fixed ratio are asked with `tidescale.io/vgpu-ratio: "2"|"4"|"8"` next to a vGPU count.

`pod_request` reads a pod's summed container requests and annotations; `node_capacity` reads a node's
allocatable, labels and annotations (HAMi's vGPU counts, gpushare's GiB totals, or an explicit
`tidescale.io/gpus` / `tidescale.io/nics` inventory); `render` writes a request back in one dialect.
Errors are `ValueError`s that name the field.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from jobs.devices import MILLI, Accelerator, DeviceRequest, Gpu, GpuRequest, Nic, NodeDevices
from jobs.resources import CPU, EPHEMERAL, MEMORY, PODS, Resources, canonical, parse_quantity

NVIDIA_GPU = "nvidia.com/gpu"
HAMI_MEM = "nvidia.com/gpumem"
HAMI_MEM_PCT = "nvidia.com/gpumem-percentage"
HAMI_CORES = "nvidia.com/gpucores"
HAMI_USE_TYPE = "nvidia.com/use-gputype"
GPUSHARE_MEM = "aliyun.com/gpu-mem"
GPUSHARE_CORE = "aliyun.com/gpu-core.percentage"
GPUSHARE_COUNT = "aliyun.com/gpu-count"
VOLCANO_NUMBER = "volcano.sh/vgpu-number"
VOLCANO_MEM = "volcano.sh/vgpu-memory"
VOLCANO_MEM_PCT = "volcano.sh/vgpu-memory-percentage"
VOLCANO_CORES = "volcano.sh/vgpu-cores"
KOORD_GPU = "koordinator.sh/gpu"
KOORD_CORE = "koordinator.sh/gpu-core"
KOORD_MEM = "koordinator.sh/gpu-memory"
KOORD_MEM_RATIO = "koordinator.sh/gpu-memory-ratio"
KOORD_RDMA = "koordinator.sh/rdma"
KOORD_FPGA = "koordinator.sh/fpga"
KOORD_JOINT = "scheduling.koordinator.sh/device-joint-allocate"
KAI_FRACTION = "gpu-fraction"
KAI_MEMORY = "gpu-memory"
KAI_DEVICES = "gpu-fraction-num-devices"
ALI_MILLI = "alibabacloud.com/gpu-milli"
ALI_COUNT = "alibabacloud.com/gpu-count"
ALI_MODEL = "alibabacloud.com/gpu-card-model"
ARENA_RDMA = "rdma/hca"
VGPU_RATIO = "tidescale.io/vgpu-ratio"
ASCEND_PREFIX = "huawei.com/Ascend"
GFD_PRODUCT = "nvidia.com/gpu.product"
GFD_MEMORY = "nvidia.com/gpu.memory"
NODE_GPUS = "tidescale.io/gpus"  # node annotation: JSON [{"index", "model", "memoryMiB", "nvlink", "pcie"}]
NODE_NICS = "tidescale.io/nics"  # node annotation: JSON [{"index", "pcie", "vfs"}]

DIALECTS = ("nvidia", "hami", "gpushare", "volcano", "koordinator", "kai", "alibaba")

_DEVICE_RESOURCES = {
    NVIDIA_GPU,
    HAMI_MEM,
    HAMI_MEM_PCT,
    HAMI_CORES,
    GPUSHARE_MEM,
    GPUSHARE_CORE,
    VOLCANO_NUMBER,
    VOLCANO_MEM,
    VOLCANO_MEM_PCT,
    VOLCANO_CORES,
    KOORD_GPU,
    KOORD_CORE,
    KOORD_MEM,
    KOORD_MEM_RATIO,
    KOORD_RDMA,
    KOORD_FPGA,
    ARENA_RDMA,
}


@dataclass(frozen=True)
class PodRequest:
    """One pod's demand in the model: scalars (with `pods: 1`) and devices."""

    resources: Resources = field(default_factory=lambda: Resources.of(pods=1))
    devices: DeviceRequest = field(default_factory=DeviceRequest)

    @property
    def gpu_milli(self) -> int:
        return self.devices.gpu.milli_total if self.devices.gpu else 0


def _int(raw: Mapping[str, str | int | float], name: str) -> int:
    try:
        value = parse_quantity(raw[name])
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    if value < 0 or value != int(value):
        raise ValueError(f"{name}: must be a whole non-negative number, got {raw[name]!r}")
    return int(value)


def _pct_to_milli(raw: Mapping[str, str | int | float], name: str) -> int:
    pct = _int(raw, name)
    if not 0 < pct <= 100:
        raise ValueError(f"{name}: a percentage in 1..100, got {pct}")
    return pct * 10


def _models(annotations: Mapping[str, str]) -> tuple[str, ...]:
    for key, sep in ((HAMI_USE_TYPE, ","), (ALI_MODEL, "|")):
        if annotations.get(key):
            return tuple(m.strip() for m in annotations[key].split(sep) if m.strip())
    return ()


def _gpu_forms(req: Mapping[str, str | int | float], ann: Mapping[str, str]) -> list[str]:
    forms = []
    if any(k in req for k in (HAMI_MEM, HAMI_MEM_PCT, HAMI_CORES)):
        forms.append("hami")
    elif NVIDIA_GPU in req:
        forms.append("nvidia")
    if GPUSHARE_MEM in req or GPUSHARE_CORE in req:
        forms.append("gpushare")
    if any(k in req for k in (VOLCANO_NUMBER, VOLCANO_MEM, VOLCANO_MEM_PCT, VOLCANO_CORES)):
        forms.append("volcano")
    if any(k in req for k in (KOORD_GPU, KOORD_CORE, KOORD_MEM, KOORD_MEM_RATIO)):
        forms.append("koordinator")
    if KAI_FRACTION in ann or KAI_MEMORY in ann:
        forms.append("kai")
    if ALI_COUNT in ann or ALI_MILLI in ann:
        forms.append("alibaba")
    return forms


def _gpu_request(req: Mapping[str, str | int | float], ann: Mapping[str, str]) -> GpuRequest | None:
    forms = _gpu_forms(req, ann)
    if not forms:
        return None
    if len(forms) > 1:
        raise ValueError(f"conflicting GPU requests in one pod: {' and '.join(forms)} resource names")
    form = forms[0]
    models = _models(ann)
    ratio = int(ann.get(VGPU_RATIO, "0") or 0)
    if form == "nvidia":
        n = _int(req, NVIDIA_GPU)
        if ratio:
            return GpuRequest(vgpus=n, vgpu_ratio=ratio, models=models, label=NVIDIA_GPU)
        return GpuRequest(count=n, models=models, label=NVIDIA_GPU)
    if form == "hami":
        n = _int(req, NVIDIA_GPU) if NVIDIA_GPU in req else 1
        milli = _pct_to_milli(req, HAMI_CORES) if HAMI_CORES in req else 0
        mem = _int(req, HAMI_MEM) if HAMI_MEM in req else 0
        pct = _pct_to_milli(req, HAMI_MEM_PCT) // 10 if HAMI_MEM_PCT in req else 0
        label = HAMI_MEM if (mem or pct) else HAMI_CORES
        return GpuRequest(shared=n, milli=milli, memory_mib=mem, memory_pct=pct, models=models, label=label)
    if form == "gpushare":
        gib = _int(req, GPUSHARE_MEM) if GPUSHARE_MEM in req else 0
        milli = _pct_to_milli(req, GPUSHARE_CORE) if GPUSHARE_CORE in req else 0
        label = GPUSHARE_MEM if gib else GPUSHARE_CORE
        return GpuRequest(shared=1, milli=milli, memory_mib=gib * 1024, models=models, label=label)
    if form == "volcano":
        n = _int(req, VOLCANO_NUMBER) if VOLCANO_NUMBER in req else 1
        if ratio:
            return GpuRequest(vgpus=n, vgpu_ratio=ratio, models=models, label=VOLCANO_NUMBER)
        milli = _pct_to_milli(req, VOLCANO_CORES) if VOLCANO_CORES in req else 0
        mem = _int(req, VOLCANO_MEM) if VOLCANO_MEM in req else 0
        pct = _pct_to_milli(req, VOLCANO_MEM_PCT) // 10 if VOLCANO_MEM_PCT in req else 0
        if milli == MILLI and not mem and not pct:
            return GpuRequest(count=n, models=models, label=VOLCANO_NUMBER)
        return GpuRequest(
            shared=n, milli=milli, memory_mib=mem, memory_pct=pct, models=models, label=VOLCANO_NUMBER
        )
    if form == "koordinator":
        if KOORD_GPU in req:
            pct = _int(req, KOORD_GPU)
            if pct >= 100:
                if pct % 100:
                    raise ValueError(
                        f"{KOORD_GPU}: above 100 must be whole GPUs (a multiple of 100), got {pct}"
                    )
                return GpuRequest(count=pct // 100, models=models, label=KOORD_GPU)
            return GpuRequest(shared=1, milli=pct * 10, models=models, label=KOORD_GPU)
        milli = _pct_to_milli(req, KOORD_CORE) if KOORD_CORE in req else 0
        mem = math.ceil(parse_quantity(req[KOORD_MEM]) / 2**20) if KOORD_MEM in req else 0
        pct = _pct_to_milli(req, KOORD_MEM_RATIO) // 10 if KOORD_MEM_RATIO in req else 0
        if milli == MILLI and pct == 100:
            return GpuRequest(count=1, models=models, label=KOORD_CORE)
        return GpuRequest(
            shared=1, milli=milli, memory_mib=mem, memory_pct=pct, models=models, label=KOORD_CORE
        )
    if form == "kai":
        n = int(ann.get(KAI_DEVICES, "1"))
        if KAI_FRACTION in ann:
            frac = float(ann[KAI_FRACTION])
            if not 0 < frac <= 1:
                raise ValueError(f"{KAI_FRACTION}: a fraction in (0, 1], got {ann[KAI_FRACTION]!r}")
            return GpuRequest(shared=n, milli=round(frac * MILLI), models=models, label=KAI_FRACTION)
        return GpuRequest(shared=n, memory_mib=int(ann[KAI_MEMORY]), models=models, label=KAI_MEMORY)
    # alibaba trace simulator annotations
    count = int(ann.get(ALI_COUNT, "1"))
    milli = min(int(ann.get(ALI_MILLI, str(MILLI))), MILLI)
    if count == 0:
        return None
    if milli < MILLI:
        if count != 1:
            raise ValueError(f"{ALI_MILLI}: a GPU share below 1000 needs {ALI_COUNT}: 1, got {count}")
        return GpuRequest(shared=1, milli=milli, models=models, label=ALI_MILLI)
    return GpuRequest(count=count, models=models, label=ALI_COUNT)


def _joint_pcie(ann: Mapping[str, str]) -> bool:
    raw = ann.get(KOORD_JOINT)
    if not raw:
        return False
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{KOORD_JOINT}: not JSON: {e.msg}") from None
    return bool(spec.get("requiredScope") == "SamePCIe")


def pod_request(
    requests: Mapping[str, str | int | float], annotations: Mapping[str, str] | None = None
) -> PodRequest:
    """A pod's demand from its (summed) container requests and its annotations."""
    ann = dict(annotations or {})
    scalars: dict[str, int] = {PODS: 1}
    npus = 0
    npu_model = ""
    npu_label = "huawei.com/npu"
    for name, value in requests.items():
        if name in (CPU, MEMORY, EPHEMERAL):
            try:
                scalars[name] = canonical(name, value)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
        elif name.startswith(ASCEND_PREFIX):
            if name.endswith(("-memory", "-core")):
                raise ValueError(f"{name}: vNPU sharing is not modelled; request whole NPUs")
            npus, npu_model, npu_label = _int(requests, name), name.split("/", 1)[1], name
        elif name.startswith("nvidia.com/mig-"):
            raise ValueError(f"{name}: MIG profiles are not modelled; use vGPU slices ({VGPU_RATIO})")
        elif name not in _DEVICE_RESOURCES:
            scalars[name] = canonical(name, value)  # any other extended resource counts as a scalar
    rdma = sum(_int(requests, k) for k in (ARENA_RDMA, KOORD_RDMA) if k in requests)
    rdma_label = KOORD_RDMA if KOORD_RDMA in requests else ARENA_RDMA
    devices = DeviceRequest(
        gpu=_gpu_request(requests, ann),
        npus=npus,
        npu_model=npu_model,
        fpgas=_int(requests, KOORD_FPGA) if KOORD_FPGA in requests else 0,
        rdma=rdma,
        same_pcie=_joint_pcie(ann),
        npu_label=npu_label,
        fpga_label=KOORD_FPGA,
        rdma_label=rdma_label,
    )
    return PodRequest(Resources({k: v for k, v in scalars.items() if v}), devices)


def node_capacity(
    allocatable: Mapping[str, str | int | float],
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> tuple[Resources, NodeDevices]:
    """A node's scalar capacity and devices from its allocatable resources, labels and annotations.

    GPUs are counted from `nvidia.com/gpu`, `aliyun.com/gpu-count` or the simulator's count, except on
    HAMi nodes: there `nvidia.com/gpu` counts vGPUs (GPUs x deviceSplitCount) and `nvidia.com/gpucores`
    (100 per card) counts the cards. A card's memory comes from the `nvidia.com/gpu.memory` label, else
    from the node total (`nvidia.com/gpumem` MiB, `aliyun.com/gpu-mem` GiB) split evenly. The
    `tidescale.io/gpus` and `tidescale.io/nics` annotations, when present, replace what was counted.
    """
    labels = dict(labels or {})
    model = labels.get(GFD_PRODUCT) or labels.get(ALI_MODEL) or ""
    memory = int(labels.get(GFD_MEMORY, "0") or 0)
    scalars: dict[str, int] = {}
    gpus = 0
    npus: list[Accelerator] = []
    fpgas = 0
    rdma = 0
    for name, value in allocatable.items():
        if name in (NVIDIA_GPU, ALI_COUNT, GPUSHARE_COUNT):
            gpus = max(gpus, _int(allocatable, name))
        elif name == GPUSHARE_MEM:
            continue  # per-node GiB total; split over the GPUs below
        elif name.startswith(ASCEND_PREFIX):
            npus += [
                Accelerator(len(npus) + i, name.split("/", 1)[1]) for i in range(_int(allocatable, name))
            ]
        elif name == KOORD_FPGA:
            fpgas = _int(allocatable, name)
        elif name in (ARENA_RDMA, KOORD_RDMA):
            rdma = max(rdma, _int(allocatable, name))
        elif name in _DEVICE_RESOURCES or name in (ALI_MILLI,):
            continue
        else:
            scalars[name] = canonical(name, value)
    if HAMI_CORES in allocatable:
        # HAMi advertises nvidia.com/gpu as vGPUs (cards x deviceSplitCount); 100 cores is one card
        gpus = _int(allocatable, HAMI_CORES) // 100
    if gpus and not memory:
        if HAMI_MEM in allocatable:
            memory = _int(allocatable, HAMI_MEM) // gpus
        elif GPUSHARE_MEM in allocatable:
            memory = _int(allocatable, GPUSHARE_MEM) * 1024 // gpus
    gpu_list = tuple(Gpu(i, model, memory) for i in range(gpus))
    nics: tuple[Nic, ...] = (Nic(0, None, rdma),) if rdma else ()
    ann = annotations or {}
    if NODE_GPUS in ann:
        gpu_list = _gpu_inventory(ann[NODE_GPUS], model, memory)
    if NODE_NICS in ann:
        nics = _nic_inventory(ann[NODE_NICS])
    devices = NodeDevices(
        gpus=gpu_list,
        nics=nics,
        npus=tuple(npus),
        fpgas=tuple(Accelerator(i) for i in range(fpgas)),
    )
    return Resources({k: v for k, v in scalars.items() if v}), devices


_GPU_FIELDS = {"index", "model", "memoryMiB", "nvlink", "pcie"}
_NIC_FIELDS = {"index", "pcie", "vfs"}


def _inventory(name: str, raw: str, fields: set[str]) -> list[dict[str, object]]:
    """The entries of an inventory annotation, sorted by index, each index 0..N-1 exactly once."""
    try:
        entries = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{name}: not JSON: {e.msg}") from None
    if not isinstance(entries, list) or not all(isinstance(x, dict) for x in entries):
        raise ValueError(f"{name}: must be a JSON list of objects")
    for k, entry in enumerate(entries):
        extra = sorted(set(entry) - fields)
        if extra:
            raise ValueError(
                f"{name}: entry {k}: unknown field {extra[0]!r} (known: {', '.join(sorted(fields))})"
            )
        if "index" not in entry:
            raise ValueError(f"{name}: entry {k}: no index")
    by_index = sorted((_field_int(f"{name}: entry {k}", e, "index", 0), k) for k, e in enumerate(entries))
    indices = [i for i, _ in by_index]
    if indices != list(range(len(entries))):
        raise ValueError(f"{name}: indices must be 0..{len(entries) - 1} once each, got {indices}")
    return [entries[k] for _, k in by_index]


def _field_int(where: str, entry: Mapping[str, object], key: str, low: int) -> int:
    value = entry[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{where}: {key} must be a whole number >= {low}, got {value!r}")
    return value


def _field_optional_int(where: str, entry: Mapping[str, object], key: str) -> int | None:
    return None if entry.get(key) is None else _field_int(where, entry, key, 0)


def _gpu_inventory(raw: str, model: str, memory: int) -> tuple[Gpu, ...]:
    out = []
    for i, e in enumerate(_inventory(NODE_GPUS, raw, _GPU_FIELDS)):
        where = f"{NODE_GPUS}: GPU {i}"
        gpu_model = e.get("model", model)
        if not isinstance(gpu_model, str):
            raise ValueError(f"{where}: model must be a string, got {gpu_model!r}")
        out.append(
            Gpu(
                i,
                gpu_model,
                _field_int(where, e, "memoryMiB", 0) if "memoryMiB" in e else memory,
                _field_optional_int(where, e, "nvlink"),
                _field_optional_int(where, e, "pcie"),
            )
        )
    return tuple(out)


def _nic_inventory(raw: str) -> tuple[Nic, ...]:
    return tuple(
        Nic(
            i,
            _field_optional_int(f"{NODE_NICS}: NIC {i}", e, "pcie"),
            _field_int(f"{NODE_NICS}: NIC {i}", e, "vfs", 1) if "vfs" in e else 1,
        )
        for i, e in enumerate(_inventory(NODE_NICS, raw, _NIC_FIELDS))
    )


def render(request: PodRequest, dialect: str) -> tuple[dict[str, str], dict[str, str]]:
    """A request as (resource requests, annotations) in one dialect (see DIALECTS)."""
    if dialect not in DIALECTS:
        raise ValueError(f"no dialect {dialect!r} (known: {', '.join(DIALECTS)})")
    out = {k: v for k, v in request.resources.render().items() if k != PODS}
    ann: dict[str, str] = {}
    g = request.devices.gpu
    if g is not None and g.gpus_touched:
        _render_gpu(g, dialect, out, ann)
    d = request.devices
    if d.npus:
        out[f"huawei.com/{d.npu_model or 'Ascend910'}"] = str(d.npus)
    if d.fpgas:
        out[KOORD_FPGA] = str(d.fpgas)
    if d.rdma:
        out[KOORD_RDMA if dialect == "koordinator" else ARENA_RDMA] = str(d.rdma)
    if d.same_pcie:
        ann[KOORD_JOINT] = json.dumps({"deviceTypes": ["gpu", "rdma"], "requiredScope": "SamePCIe"})
    return out, ann


def _render_gpu(g: GpuRequest, dialect: str, out: dict[str, str], ann: dict[str, str]) -> None:
    def unsupported(what: str) -> ValueError:
        return ValueError(f"dialect {dialect!r} cannot express {what}")

    if g.models:
        if dialect == "alibaba":
            ann[ALI_MODEL] = "|".join(g.models)
        elif dialect in ("hami", "nvidia", "volcano"):
            ann[HAMI_USE_TYPE] = ",".join(g.models)
        else:
            raise unsupported("a GPU model constraint")
    if g.vgpus:
        if dialect not in ("nvidia", "volcano"):
            raise unsupported("vGPU slices")
        out[NVIDIA_GPU if dialect == "nvidia" else VOLCANO_NUMBER] = str(g.vgpus)
        ann[VGPU_RATIO] = str(g.vgpu_ratio)
        return
    if g.count:
        if dialect == "koordinator":
            out[KOORD_GPU] = str(100 * g.count)
        elif dialect == "alibaba":
            ann[ALI_COUNT] = str(g.count)
            ann[ALI_MILLI] = str(MILLI)
        elif dialect == "volcano":
            out[VOLCANO_NUMBER] = str(g.count)
            out[VOLCANO_CORES] = "100"
        elif dialect == "gpushare":
            raise unsupported("whole GPUs")
        else:
            out[NVIDIA_GPU] = str(g.count)
        return
    # shared
    cores = g.milli // 10
    if g.milli % 10 and dialect not in ("alibaba", "kai"):
        raise unsupported(f"a {g.milli}m share (whole percent only)")
    if dialect == "nvidia":
        raise unsupported("GPU sharing")
    if dialect == "hami":
        out[NVIDIA_GPU] = str(g.shared)
        if g.milli:
            out[HAMI_CORES] = str(cores)
        if g.memory_mib:
            out[HAMI_MEM] = str(g.memory_mib)
        if g.memory_pct:
            out[HAMI_MEM_PCT] = str(g.memory_pct)
    elif dialect == "gpushare":
        if g.shared != 1 or g.memory_pct or g.memory_mib % 1024:
            raise unsupported("this share (one GPU, memory in whole GiB)")
        if g.memory_mib:
            out[GPUSHARE_MEM] = str(g.memory_mib // 1024)
        if g.milli:
            out[GPUSHARE_CORE] = str(cores)
    elif dialect == "volcano":
        out[VOLCANO_NUMBER] = str(g.shared)
        if g.milli:
            out[VOLCANO_CORES] = str(cores)
        if g.memory_mib:
            out[VOLCANO_MEM] = str(g.memory_mib)
        if g.memory_pct:
            out[VOLCANO_MEM_PCT] = str(g.memory_pct)
    elif dialect == "koordinator":
        if g.shared != 1:
            raise unsupported("shares of several GPUs")
        if g.memory_mib or g.memory_pct:
            out[KOORD_CORE] = str(cores)
            if g.memory_mib:
                out[KOORD_MEM] = f"{g.memory_mib}Mi"
            if g.memory_pct:
                out[KOORD_MEM_RATIO] = str(g.memory_pct)
        else:
            out[KOORD_GPU] = str(cores)
    elif dialect == "kai":
        if g.memory_pct or (g.milli and g.memory_mib):
            raise unsupported("a share of both compute and memory")
        if g.milli:
            ann[KAI_FRACTION] = f"{g.milli / MILLI:g}"
        else:
            ann[KAI_MEMORY] = str(g.memory_mib)
        if g.shared != 1:
            ann[KAI_DEVICES] = str(g.shared)
    else:  # alibaba
        if g.shared != 1 or g.memory_mib or g.memory_pct:
            raise unsupported("this share (one GPU, compute only)")
        ann[ALI_COUNT] = "1"
        ann[ALI_MILLI] = str(g.milli)
