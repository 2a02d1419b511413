"""Small builders for the jobs tests: nodes, cluster states, pods, pod groups, openb CSV rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from jobs.devices import Accelerator, Gpu, Nic, NodeDevices
from jobs.resources import Resources, canonical
from jobs.snapshot import ClusterState, Node, Taint, Toleration
from jobs.vocabulary import pod_request
from jobs.workload import BinpackSpec, PlacementSpec, Pod, PodGroup


def a_node(
    name: str = "n0",
    cpu: str = "32",
    memory: str = "128Gi",
    gpus: int = 0,
    model: str = "A100",
    gpu_memory: int = 81920,
    nvlink: Sequence[int | None] | None = None,
    pcie: Sequence[int | None] | None = None,
    nics: Sequence[int | None] = (),
    npus: int = 0,
    npu_model: str = "Ascend910B3",
    labels: Mapping[str, str] | None = None,
    taints: Sequence[Taint] = (),
    topology: Mapping[str, str] | None = None,
    pods: int = 110,
) -> Node:
    capacity = Resources({"cpu": canonical("cpu", cpu), "memory": canonical("memory", memory), "pods": pods})
    devices = NodeDevices(
        gpus=tuple(
            Gpu(i, model, gpu_memory, nvlink[i] if nvlink else None, pcie[i] if pcie else None)
            for i in range(gpus)
        ),
        nics=tuple(Nic(i, sw, vfs=1) for i, sw in enumerate(nics)),
        npus=tuple(Accelerator(i, npu_model) for i in range(npus)),
    )
    return Node(name, capacity, devices, dict(labels or {}), tuple(taints), False, dict(topology or {}))


def a_state(*nodes: Node) -> ClusterState:
    return ClusterState(nodes)


def a_pod(
    name: str = "p",
    cpu: str = "1",
    memory: str = "1Gi",
    requests: Mapping[str, str | int] | None = None,
    annotations: Mapping[str, str] | None = None,
    selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Toleration] = (),
) -> Pod:
    raw: dict[str, str | int] = {"cpu": cpu, "memory": memory, **dict(requests or {})}
    return Pod(name, "task", pod_request(raw, annotations), dict(selector or {}), tuple(tolerations))


def gpus(n: int, **kw: object) -> Pod:
    """A pod asking for `n` whole GPUs (NVIDIA device plugin)."""
    return a_pod(requests={"nvidia.com/gpu": n}, **kw)  # type: ignore[arg-type]


def share(milli: int, name: str = "p", cpu: str = "1") -> Pod:
    """A pod asking for a share of one GPU in thousandths (the trace simulator's annotations)."""
    return a_pod(
        name,
        cpu=cpu,
        annotations={"alibabacloud.com/gpu-milli": str(milli), "alibabacloud.com/gpu-count": "1"},
    )


def a_group(
    *pods: Pod,
    name: str = "g",
    placement: PlacementSpec | None = None,
    queue: str = "default",
    priority: int = 0,
    namespace: str = "default",
) -> PodGroup:
    named = tuple(
        Pod(p.name if p.name != "p" else f"{name}-{i}", p.task, p.request, p.node_selector, p.tolerations)
        for i, p in enumerate(pods)
    )
    return PodGroup(name, named, placement or BinpackSpec(), namespace, queue, priority)


def write_openb(
    tmp: Path,
    nodes: Sequence[tuple[int, int, int, str]],
    pods: Sequence[tuple[int, int, int, int]],
) -> tuple[Path, Path]:
    """Node rows (cpu_milli, memory_mib, gpus, model) and pod rows (cpu_milli, memory_mib, num_gpu,
    gpu_milli) as openb CSV files in `tmp`."""
    n = tmp / "openb_node_list_gpu_node.csv"
    n.write_text(
        "sn,cpu_milli,memory_mib,gpu,model\n"
        + "".join(f"openb-node-{i:04d},{c},{m},{g},{mo}\n" for i, (c, m, g, mo) in enumerate(nodes)),
        encoding="utf-8",
    )
    p = tmp / "openb_pod_list_synthetic.csv"
    p.write_text(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"
        + "".join(
            f"openb-pod-{i:04d},{c},{m},{ng},{gm},,LS,Running,{i},{i + 100},{i}\n"
            for i, (c, m, ng, gm) in enumerate(pods)
        ),
        encoding="utf-8",
    )
    return n, p


# A two-node cluster snapshot document (an A100 node behind a taint, a T4 node) with two bound pods.
SNAPSHOT = """\
apiVersion: tidescale.io/v1alpha1
kind: ClusterSnapshot
nodes:
  - name: a100-0
    labels: {nvidia.com/gpu.product: A100, topology.kubernetes.io/zone: z1}
    allocatable: {cpu: "96", memory: 768Gi, pods: 110, nvidia.com/gpu: 8, rdma/hca: 2}
    topology: {rack: r1, hypernode: hn1}
    taints: [{key: gpu, value: reserved}]
  - name: t4-0
    allocatable: {cpu: "32", memory: 128Gi, pods: 110}
    gpus:
      - {index: 0, model: T4, memoryMiB: 15360, nvlink: 0, pcie: 0}
      - {index: 1, model: T4, memoryMiB: 15360, nvlink: 0, pcie: 1}
pods:
  - {name: web-0, node: t4-0, requests: {cpu: "4", memory: 8Gi, nvidia.com/gpu: 1}, queue: serve}
  - {name: nb-0, node: a100-0, requests: {cpu: "2"}, annotations: {gpu-fraction: "0.5"}}
"""
