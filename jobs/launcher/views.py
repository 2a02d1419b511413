"""The GPU monitoring views behind `tidescale top node` and `tidescale top job`, Arena's node and
application views: the cluster's nodes and pods (plain JSON dicts) and DCGM samples -> what each GPU
holds, who holds it, and how busy it is.

- A node's GPUs come from `jobs.vocabulary.node_capacity` (whole cards also on HAMi and gpushare nodes,
  with their model and memory).
- A GPU's holders come from the device annotations the scheduler writes before it binds
  (`jobs.device_annotations.read_assignment`: `tidescale.io/gpus`, `tidescale.io/gpu-slices`, or
  gpushare's `ALIYUN_COM_GPU_MEM_IDX` for pods another gpushare scheduler bound). A whole GPU counts 1, a
  vGPU slice 1/ratio, a share of one GPU the larger of its compute share and its memory share of the card
  (a memory-only share is not free: Arena's "Allocated GPUs is 0" bug, kubeflow/arena#628).
- A GPU pod bound without annotations (by another scheduler, or one that writes none) is counted at node
  level as "unassigned": its GPUs are taken, which ones is not known.
- DCGM samples are joined by node (`Hostname`, or `hostname` since dcgm-exporter 4) and GPU index (`gpu`):
  per GPU, utilization (`DCGM_FI_DEV_GPU_UTIL`) and memory used and free (`DCGM_FI_DEV_FB_USED`,
  `DCGM_FI_DEV_FB_FREE`, MiB). An instance of a job finds its GPUs through its annotations; only a pod
  without them falls back to the series labelled with its `pod` (dcgm-exporter's per-pod labels cannot
  tell apart the pods that share a GPU: reference launcher.md, "GPU monitoring views"). The utilization
  and memory of a shared GPU are the whole GPU's.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobs.device_annotations import read_assignment
from jobs.devices import MILLI, GpuRequest
from jobs.launcher.status import FAILED, SUCCEEDED, TERMINATING, JobView, PodView
from jobs.scheduler.objects import node_of, request_of
from jobs.vocabulary import GPUSHARE_MEM, HAMI_CORES, HAMI_MEM, HAMI_MEM_PCT, VGPU_RATIO

UTIL = "DCGM_FI_DEV_GPU_UTIL"
FB_USED = "DCGM_FI_DEV_FB_USED"
FB_FREE = "DCGM_FI_DEV_FB_FREE"
METRICS = (UTIL, FB_USED, FB_FREE)
HOSTNAME_LABELS = ("Hostname", "hostname")  # dcgm-exporter up to 4.x, and since
EXCLUSIVE, SHARED, SLICED = "exclusive", "shared", "sliced"
MODES = (EXCLUSIVE, SHARED, SLICED)
_SHARE_RESOURCES = (HAMI_MEM, HAMI_MEM_PCT, HAMI_CORES, GPUSHARE_MEM)
_DONE = (SUCCEEDED, FAILED)

Device = tuple[str, int]  # (node, GPU index)


def _num(x: float) -> str:
    return f"{round(x, 3):g}"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


# -- metrics ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuMetric:
    """One GPU as DCGM reports it; None where the sample is missing."""

    util: float | None = None  # percent
    used_mib: float | None = None
    free_mib: float | None = None

    @property
    def total_mib(self) -> float | None:
        if self.used_mib is None or self.free_mib is None:
            return None
        return self.used_mib + self.free_mib

    def to_json(self) -> dict[str, Any]:
        return {"util": self.util, "memoryUsedMiB": self.used_mib, "memoryTotalMiB": self.total_mib}


@dataclass(frozen=True)
class Metrics:
    """DCGM samples by GPU, and which GPUs the exporter attributes to each pod (namespace, name)."""

    gpus: Mapping[Device, GpuMetric]
    pods: Mapping[tuple[str, str], tuple[Device, ...]]

    def of(self, devices: Sequence[Device]) -> tuple[GpuMetric, ...]:
        return tuple(self.gpus[d] for d in dict.fromkeys(devices) if d in self.gpus)


def _value(sample: Mapping[str, Any]) -> float | None:
    try:
        return float(sample["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def metrics_from(results: Mapping[str, Sequence[Mapping[str, Any]]]) -> Metrics:
    """Prometheus instant-vector results (`data.result` of `/api/v1/query`), one list per metric name in
    `METRICS`, -> the samples by (node, GPU index). A series without a node or GPU label is skipped; of
    several series for one GPU (two scrape jobs), the last one wins."""
    fields = {UTIL: "util", FB_USED: "used_mib", FB_FREE: "free_mib"}
    values: dict[Device, dict[str, float]] = {}
    pods: dict[tuple[str, str], list[Device]] = {}
    for name, samples in results.items():
        key = fields.get(name)
        if key is None:
            continue
        for sample in samples:
            labels = sample.get("metric") or {}
            node = next((labels[k] for k in HOSTNAME_LABELS if labels.get(k)), None)
            gpu = str(labels.get("gpu", ""))
            value = _value(sample)
            if node is None or not gpu.isdigit() or value is None:
                continue
            device = (str(node), int(gpu))
            values.setdefault(device, {})[key] = value
            if labels.get("pod") and labels.get("namespace"):
                holders = pods.setdefault((str(labels["namespace"]), str(labels["pod"])), [])
                if device not in holders:
                    holders.append(device)
    return Metrics(
        gpus={d: GpuMetric(**v) for d, v in values.items()},
        pods={p: tuple(sorted(d)) for p, d in pods.items()},
    )


def _mean(xs: Sequence[float]) -> float | None:
    return round(sum(xs) / len(xs), 1) if xs else None


def _sum(xs: Sequence[float | None]) -> float | None:
    known = [x for x in xs if x is not None]
    return round(sum(known), 1) if known else None


@dataclass(frozen=True)
class Usage:
    """What DCGM says of a set of GPUs: mean utilization, memory used and total (None: no samples)."""

    util: float | None = None
    used_mib: float | None = None
    total_mib: float | None = None

    @classmethod
    def of(cls, samples: Sequence[GpuMetric]) -> Usage:
        return cls(
            _mean([m.util for m in samples if m.util is not None]),
            _sum([m.used_mib for m in samples]),
            _sum([m.total_mib for m in samples]),
        )

    def to_json(self) -> dict[str, Any]:
        return {"util": self.util, "memoryUsedMiB": self.used_mib, "memoryTotalMiB": self.total_mib}


# -- nodes --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    """A pod's hold on one GPU: whole, a share (compute in thousandths, memory in MiB) or a slice."""

    namespace: str
    pod: str
    mode: str  # exclusive | shared | sliced
    fraction: float  # of this GPU
    milli: int = 0
    memory_mib: int = 0
    slot: int | None = None
    ratio: int = 0

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.pod}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "namespace": self.namespace,
            "pod": self.pod,
            "mode": self.mode,
            "fraction": round(self.fraction, 3),
        }
        if self.mode == SHARED:
            out |= {"milli": self.milli, "memoryMiB": self.memory_mib}
        if self.mode == SLICED:
            out |= {"slot": self.slot, "ratio": self.ratio}
        return out


@dataclass(frozen=True)
class GpuView:
    node: str
    index: int
    model: str
    memory_mib: int  # 0: unknown (no `nvidia.com/gpu.memory` label): DCGM's used + free when known
    holders: tuple[Holder, ...] = ()
    metric: GpuMetric | None = None

    @property
    def allocated(self) -> float:
        return round(sum(h.fraction for h in self.holders), 3)

    @property
    def mode(self) -> str:
        """How the GPU is held: exclusive, shared, sliced (`shared+sliced` when both), `free`."""
        modes = [m for m in MODES if any(h.mode == m for h in self.holders)]
        return "+".join(modes) or "free"

    @property
    def memory_total_mib(self) -> float | None:
        if self.memory_mib:
            return float(self.memory_mib)
        return self.metric.total_mib if self.metric is not None else None

    def allocation_text(self) -> str:
        """`1 (whole)`, `0.3 (share 300m 12000MiB)`, `0.5 (slices 2 of 1/4)`, `0`."""
        if not self.holders:
            return "0"
        parts = []
        if any(h.mode == EXCLUSIVE for h in self.holders):
            parts.append("whole")
        shares = [h for h in self.holders if h.mode == SHARED]
        if shares:
            milli = sum(h.milli for h in shares)
            memory = sum(h.memory_mib for h in shares)
            what = " ".join(x for x in (f"{milli}m" if milli else "", f"{memory}MiB" if memory else "") if x)
            parts.append(
                f"{len(shares)} share{'s' if len(shares) > 1 else ''}" + (f" {what}" if what else "")
            )
        slices = [h for h in self.holders if h.mode == SLICED]
        if slices:
            ratio = max(h.ratio for h in slices)
            parts.append(f"slices {len(slices)} of 1/{ratio}" if ratio else f"slices {len(slices)}")
        return f"{_num(self.allocated)} ({', '.join(parts)})"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "model": self.model,
            "memoryMiB": self.memory_total_mib,
            "mode": self.mode,
            "allocated": self.allocated,
            "holders": [h.to_json() for h in self.holders],
        }
        if self.metric is not None:
            out["metrics"] = self.metric.to_json()
        return out


@dataclass(frozen=True)
class Unassigned:
    """A GPU pod on the node without device annotations: its GPUs are taken, which ones is unknown."""

    namespace: str
    pod: str
    gpus: float

    def to_json(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "pod": self.pod, "gpus": round(self.gpus, 3)}


@dataclass(frozen=True)
class NodeView:
    name: str
    status: str  # Ready, NotReady, with `,SchedulingDisabled` when cordoned
    offers: str  # exclusive, or shared on a node that advertises HAMi or gpushare resources
    gpus: tuple[GpuView, ...]
    unassigned: tuple[Unassigned, ...] = ()
    pods: int = 0  # live pods holding GPUs of the node

    @property
    def model(self) -> str:
        return ",".join(sorted({g.model for g in self.gpus if g.model})) or "-"

    @property
    def total(self) -> int:
        return len(self.gpus)

    @property
    def allocated(self) -> float:
        return round(sum(g.allocated for g in self.gpus) + sum(u.gpus for u in self.unassigned), 3)

    @property
    def mode(self) -> str:
        """The ways its GPUs are held now, else what the node offers."""
        held = [m for m in MODES if any(m in g.mode.split("+") for g in self.gpus)]
        if self.unassigned and not held:
            held = [EXCLUSIVE]
        return "+".join(held) or self.offers

    @property
    def usage(self) -> Usage | None:
        """DCGM's view of the node's GPUs (the memory total: every GPU's, known from its label or DCGM)."""
        samples = [g.metric for g in self.gpus if g.metric is not None]
        if not samples:
            return None
        sampled = Usage.of(samples)
        return Usage(sampled.util, sampled.used_mib, _sum([g.memory_total_mib for g in self.gpus]))

    def to_json(self) -> dict[str, Any]:
        usage = self.usage
        return {
            "name": self.name,
            "status": self.status,
            "model": self.model,
            "mode": self.mode,
            "gpuTotal": self.total,
            "gpuAllocated": self.allocated,
            "pods": self.pods,
            "gpus": [g.to_json() for g in self.gpus],
            "unassigned": [u.to_json() for u in self.unassigned],
            **({"metrics": usage.to_json()} if usage is not None else {}),
        }


@dataclass(frozen=True)
class ClusterView:
    nodes: tuple[NodeView, ...]
    metrics: bool  # whether DCGM samples were given
    problems: tuple[str, ...] = ()  # objects that could not be read, and assignments that do not fit

    @property
    def total(self) -> int:
        return sum(n.total for n in self.nodes)

    @property
    def allocated(self) -> float:
        return round(sum(n.allocated for n in self.nodes), 3)

    def footer(self) -> str:
        pct = round(100 * self.allocated / self.total) if self.total else 0
        return f"Allocated/Total GPUs In Cluster: {_num(self.allocated)}/{self.total} ({pct}%)"

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": [n.to_json() for n in self.nodes],
            "gpuTotal": self.total,
            "gpuAllocated": self.allocated,
            "metrics": self.metrics,
            "problems": list(self.problems),
        }


def _status(node: Mapping[str, Any]) -> str:
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c.get("status") == "True" for c in conditions if c.get("type") == "Ready"), False)
    out = "Ready" if ready else "NotReady"
    return out + (",SchedulingDisabled" if (node.get("spec") or {}).get("unschedulable") else "")


def _offers(node: Mapping[str, Any]) -> str:
    status = node.get("status") or {}
    allocatable = status.get("allocatable") or status.get("capacity") or {}
    return SHARED if any(r in allocatable for r in _SHARE_RESOURCES) else EXCLUSIVE


def share_of(g: GpuRequest, card_mib: int) -> tuple[float, int]:
    """(fraction of one GPU, MiB) that a share of one GPU takes: the larger of its compute share and its
    memory share of the card (a percentage of the card, or MiB of `card_mib`; unknown memory counts 0)."""
    memory = g.memory_mib or (card_mib * g.memory_pct // 100 if card_mib else 0)
    by_memory = g.memory_pct / 100 if g.memory_pct else (memory / card_mib if card_mib else 0.0)
    return min(1.0, max(g.milli / MILLI, by_memory)), memory


def _holders(
    namespace: str,
    name: str,
    g: GpuRequest,
    gpus: Sequence[int],
    slots: Sequence[int],
    ratio: int,
    cards: Sequence[int],
) -> list[tuple[int, Holder]]:
    """(GPU index, hold) for each GPU the pod's assignment names; `cards`: each GPU's memory in MiB."""
    out = []
    ratio = ratio or g.vgpu_ratio
    for i, index in enumerate(gpus):
        if g.vgpus:
            slot = slots[i] if i < len(slots) else None
            holder = Holder(namespace, name, SLICED, 1 / ratio if ratio else 0.0, slot=slot, ratio=ratio)
        elif g.shared:
            fraction, memory = share_of(g, cards[index] if index < len(cards) else 0)
            holder = Holder(namespace, name, SHARED, fraction, g.milli, memory)
        else:
            holder = Holder(namespace, name, EXCLUSIVE, 1.0)
        out.append((index, holder))
    return out


def _unassigned_gpus(g: GpuRequest, card: int) -> float:
    if g.vgpus:
        return g.vgpus / g.vgpu_ratio if g.vgpu_ratio else 0.0
    if g.shared:
        return g.shared * share_of(g, card)[0]
    return float(g.count)


def node_views(
    nodes: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]], metrics: Metrics | None = None
) -> ClusterView:
    """Every node with GPUs, by name, with what each GPU holds (see the module's docstring)."""
    problems: list[str] = []
    # 1. the nodes' GPUs
    parsed: dict[str, tuple[Mapping[str, Any], list[tuple[str, int]]]] = {}
    for obj in nodes:
        try:
            parsed_node = node_of(obj)
        except ValueError as e:
            problems.append(str(e))
            continue
        if parsed_node.devices.gpus:
            parsed[parsed_node.name] = (obj, [(g.model, g.memory_mib) for g in parsed_node.devices.gpus])
    # 2. who holds them
    held: dict[Device, list[Holder]] = {}
    unassigned: dict[str, list[Unassigned]] = {}
    counted: dict[str, int] = {}
    for pod in pods:
        m, spec = _meta(pod), pod.get("spec") or {}
        node = str(spec.get("nodeName") or "")
        phase = (pod.get("status") or {}).get("phase")
        if node not in parsed or phase in _DONE:
            continue
        namespace, name = str(m.get("namespace") or ""), str(m.get("name") or "")
        try:
            g = request_of(pod).devices.gpu
        except ValueError as e:
            problems.append(str(e))
            continue
        if g is None or (not g.milli_total and not g.memory_mib and not g.memory_pct):
            continue
        cards = [memory for _, memory in parsed[node][1]]
        annotations = dict(m.get("annotations") or {})
        try:
            got = read_assignment(annotations)
        except ValueError as e:
            problems.append(f"Pod {namespace}/{name}: {e}")
            got = None
        counted[node] = counted.get(node, 0) + 1
        if got is None or not got.gpus:
            taken = _unassigned_gpus(g, cards[0] if cards else 0)
            unassigned.setdefault(node, []).append(Unassigned(namespace, name, taken))
            continue
        ratio = got.vgpu_ratio or int(annotations.get(VGPU_RATIO, "0") or 0)
        for index, holder in _holders(namespace, name, g, got.gpus, got.slices, ratio, cards):
            if index >= len(cards):
                problems.append(
                    f"Pod {namespace}/{name} holds GPU {index} of node {node}, which has {len(cards)}"
                )
                continue
            held.setdefault((node, index), []).append(holder)
    # 3. the views, with DCGM's samples where given
    views = []
    for node_name in sorted(parsed):
        obj, inventory = parsed[node_name]
        gpu_views = tuple(
            GpuView(
                node_name,
                i,
                model,
                memory,
                tuple(sorted(held.get((node_name, i), []), key=lambda h: (h.namespace, h.pod, h.slot or 0))),
                metrics.gpus.get((node_name, i)) if metrics is not None else None,
            )
            for i, (model, memory) in enumerate(inventory)
        )
        views.append(
            NodeView(
                node_name,
                _status(obj),
                _offers(obj),
                gpu_views,
                tuple(sorted(unassigned.get(node_name, []), key=lambda u: (u.namespace, u.pod))),
                counted.get(node_name, 0),
            )
        )
    return ClusterView(tuple(views), metrics is not None, tuple(problems))


# -- jobs ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceView:
    """One pod of a job: where it runs, the GPUs it holds (`0`, `1 slot 2`), and DCGM's view of them."""

    name: str
    phase: str
    node: str
    gpus: float  # requested
    devices: tuple[str, ...]
    usage: Usage | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "phase": self.phase,
            "node": self.node,
            "gpus": self.gpus,
            "devices": list(self.devices),
        }
        if self.usage is not None:
            out["metrics"] = self.usage.to_json()
        return out


@dataclass(frozen=True)
class JobTop:
    name: str
    namespace: str
    kind: str
    phase: str
    requested: float
    allocated: float
    nodes: tuple[str, ...]
    instances: tuple[InstanceView, ...]
    usage: Usage | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "kind": self.kind,
            "phase": self.phase,
            "gpuRequested": self.requested,
            "gpuAllocated": self.allocated,
            "nodes": list(self.nodes),
            "instances": [i.to_json() for i in self.instances],
        }
        if self.usage is not None:
            out["metrics"] = self.usage.to_json()
        return out


def pod_devices(pod: PodView) -> tuple[tuple[int, str], ...]:
    """(GPU index, how it is shown) of each GPU the pod holds according to the scheduler: `1`, `0 slot 2`."""
    slices = pod.devices.get("slices", "")
    if slices:
        out = []
        for part in slices.split(","):
            gpu, _, slot = part.partition(":")
            if gpu.strip().isdigit():
                out.append((int(gpu), f"{int(gpu)} slot {slot.strip()}"))
        return tuple(out)
    return tuple((int(x), x.strip()) for x in pod.devices.get("gpus", "").split(",") if x.strip().isdigit())


def _instance(namespace: str, pod: PodView, metrics: Metrics | None) -> tuple[InstanceView, list[Device]]:
    devices = pod_devices(pod)
    found: list[Device] = [(pod.node, i) for i, _ in devices] if pod.node else []
    if not found and metrics is not None:
        found = list(metrics.pods.get((namespace, pod.name), ()))  # bound without annotations
    shown = tuple(text for _, text in devices) or tuple(str(i) for _, i in found)
    usage = Usage.of(metrics.of(found)) if metrics is not None and found else None
    if metrics is not None and usage is None and pod.node and pod.gpus:
        usage = Usage()  # holds GPUs, but DCGM has no sample of them
    return InstanceView(pod.name, pod.phase, pod.node, pod.gpus, shown, usage), found


def job_tops(views: Sequence[JobView], metrics: Metrics | None = None) -> list[JobTop]:
    """Per job: GPUs requested and allocated, nodes, and with DCGM samples the mean utilization and the
    memory used of the GPUs its live pods hold (each GPU once); per pod the same for its own GPUs."""
    out = []
    for v in views:
        instances = []
        devices: list[Device] = []
        for pod in v.pods:
            instance, found = _instance(v.namespace, pod, metrics)
            instances.append(instance)
            if pod.phase not in (*_DONE, TERMINATING):
                devices += found
        usage = Usage.of(metrics.of(devices)) if metrics is not None else None
        out.append(
            JobTop(
                v.name,
                v.namespace,
                v.kind,
                v.phase,
                v.gpus_requested,
                v.gpus_allocated,
                v.nodes,
                tuple(instances),
                usage,
            )
        )
    return out


# -- tables -------------------------------------------------------------------------------------------


def table(rows: Sequence[Sequence[str]]) -> str:
    """kubectl's layout: columns padded to the widest cell, three spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:g}%"


def _mib(x: float | None) -> str:
    return "-" if x is None else f"{round(x):d}MiB"


def _used_total(u: Usage | None) -> str:
    if u is None or u.used_mib is None:
        return "-"
    return f"{round(u.used_mib):d}/{_mib(u.total_mib)}" if u.total_mib is not None else _mib(u.used_mib)


def _nodes(nodes: Sequence[str]) -> str:
    if not nodes:
        return "-"
    return ",".join(nodes[:2]) + (f",+{len(nodes) - 2}" if len(nodes) > 2 else "")


def format_nodes(view: ClusterView, details: bool = False) -> str:
    """`top node`: one row per node and the cluster's footer; `details`: a table of GPUs under each."""
    head = ["NAME", "STATUS", "MODEL", "GPU(Total)", "GPU(Allocated)", "MODE", "PODS"]
    if view.metrics:
        head += ["UTIL", "MEMORY(Used/Total)"]
    rows = [head]
    for n in view.nodes:
        row = [n.name, n.status, n.model, str(n.total), _num(n.allocated), n.mode, str(n.pods)]
        if view.metrics:
            usage = n.usage
            row += [_pct(usage.util if usage else None), _used_total(usage)]
        rows.append(row)
    lines = [table(rows) if view.nodes else "No nodes with GPUs."]
    if details:
        for n in view.nodes:
            lines += [
                "",
                f"Node {n.name} ({n.status}, {n.model}): {_num(n.allocated)}/{n.total} GPUs allocated",
            ]
            gpu_head = ["INDEX", "MEMORY(Total)", "ALLOCATED", "PODS"]
            if view.metrics:
                gpu_head += ["UTIL", "MEMORY(Used)"]
            gpu_rows = [gpu_head]
            for g in n.gpus:
                pods = ",".join(dict.fromkeys(h.ref for h in g.holders)) or "-"
                row = [str(g.index), _mib(g.memory_total_mib), g.allocation_text(), pods]
                if view.metrics:
                    m = g.metric
                    row += [_pct(m.util if m else None), _mib(m.used_mib if m else None)]
                gpu_rows.append(row)
            lines.append(table(gpu_rows))
            for u in n.unassigned:
                lines.append(
                    f"Unassigned: {_num(u.gpus)} GPU of {u.namespace}/{u.pod} "
                    "(bound without device annotations: which GPUs is not known)"
                )
    lines += ["-" * 60, view.footer()]
    return "\n".join(lines)


def format_jobs(tops: Sequence[JobTop], metrics: bool, all_namespaces: bool = False) -> str:
    """`top job`: one row per job and the footer of allocated/requested GPUs."""
    head = ["NAME", "KIND", "STATUS", "GPU(Requested)", "GPU(Allocated)", "NODE"]
    if metrics:
        head += ["UTIL", "MEMORY(Used/Total)"]
    rows = [(["NAMESPACE"] if all_namespaces else []) + head]
    for t in tops:
        row = [t.name, t.kind, t.phase, _num(t.requested), _num(t.allocated), _nodes(t.nodes)]
        if metrics:
            row += [_pct(t.usage.util if t.usage else None), _used_total(t.usage)]
        rows.append(([t.namespace] if all_namespaces else []) + row)
    allocated = sum(t.allocated for t in tops)
    requested = sum(t.requested for t in tops)
    footer = f"Total Allocated/Requested GPUs of Jobs: {_num(allocated)}/{_num(requested)}"
    return "\n".join([table(rows), "-" * 60, footer])


def format_job(top: JobTop, metrics: bool) -> str:
    """`top job NAME`: the job's line, then one row per instance."""
    lines = [
        f"Name:      {top.name}",
        f"Namespace: {top.namespace}",
        f"Kind:      {top.kind}",
        f"Status:    {top.phase}",
        f"GPUs:      {_num(top.allocated)} allocated of {_num(top.requested)} requested",
    ]
    if metrics and top.usage is not None:
        lines.append(f"Usage:     {_pct(top.usage.util)} util, {_used_total(top.usage)} memory")
    head = ["INSTANCE", "STATUS", "NODE", "GPU(Requested)", "GPU(DeviceIndex)"]
    if metrics:
        head += ["UTIL", "MEMORY(Used/Total)"]
    rows = [head]
    for i in top.instances:
        row = [i.name, i.phase, i.node or "-", _num(i.gpus), ",".join(i.devices) or "-"]
        if metrics:
            row += [_pct(i.usage.util if i.usage else None), _used_total(i.usage)]
        rows.append(row)
    return "\n".join([*lines, "", table(rows)])
