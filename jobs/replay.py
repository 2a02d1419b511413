"""The FGD paper's experiment driven through the live scheduler: the openb trace as a cluster snapshot
and pending pod groups, placed by one `schedule_cycle`.

The simulator (`jobs.simulator`) and this replay agree pod for pod when they are given the same
inputs, which is what `tests/jobs/test_replay.py` holds them to:

- the submitted pods are `prepare_pods`' sequence, one single-pod group each, pending in that order
  under a FIFO queue (the simulator places them one by one in that order, never retrying);
- the nodes are listed in the simulator's seeded tie-break order (the placement breaks ties by the
  lowest node index) and advertise `pods: 1001`, the simulator's cap;
- memory is checked as the simulator checks it (node and pod memory in MiB, as bytes here);
- a pod with a GPU share below 1000 milli is a share of one GPU, any other GPU pod takes whole GPUs
  (the simulator's `TaskShape.is_shared`);
- FGD and Tidescale use the simulator's typical tasks (the trace's pods) when `typical` is given,
  else they learn them from the pending pods as the live scheduler does.

Pure: no I/O, no clock; randomness only from the seeded Generator, as in `simulate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jobs.cycle import ADMITTED, QueueState, schedule_cycle
from jobs.devices import DeviceRequest, Gpu, GpuRequest, NodeDevices
from jobs.fgd import I64, TypicalTasks
from jobs.openb import NodeList, PodList
from jobs.placement import PlacementRegistry, register_builtins
from jobs.queues import FIFO, Entry
from jobs.resources import CPU, MEMORY, PODS, Resources
from jobs.simulator import DEFAULT_TUNE, POD_CAP, Events, node_order, prepare_pods
from jobs.snapshot import ClusterState, Node
from jobs.vocabulary import ALI_COUNT, ALI_MILLI, PodRequest
from jobs.workload import FGDSpec, PlacementSpec, Pod, PodGroup, TidescaleSpec

MIB = 2**20
PLACEMENTS: dict[str, PlacementSpec] = {"fgd": FGDSpec(), "tidescale": TidescaleSpec()}


def trace_cluster(
    nodes: NodeList, order: Sequence[int] | I64 | None = None, pod_cap: int = POD_CAP
) -> ClusterState:
    """The node list as a cluster state, its nodes in `order` (default: file order)."""
    index = range(len(nodes)) if order is None else [int(i) for i in order]
    out = []
    for i in index:
        capacity = Resources(
            {CPU: int(nodes.cpu_milli[i]), MEMORY: int(nodes.memory_mib[i]) * MIB, PODS: pod_cap}
        )
        gpus = tuple(Gpu(g, nodes.models[i]) for g in range(int(nodes.gpus[i])))
        out.append(Node(nodes.names[i], capacity, NodeDevices(gpus)))
    return ClusterState(out)


def trace_request(
    cpu_milli: int, memory_mib: int, num_gpu: int, gpu_milli: int, gpu_spec: str = ""
) -> PodRequest:
    """One trace pod's request, with the simulator's reading of its GPU columns."""
    resources = Resources({k: v for k, v in ((CPU, cpu_milli), (MEMORY, memory_mib * MIB), (PODS, 1)) if v})
    models = tuple(m for m in gpu_spec.split("|") if m)
    gpu: GpuRequest | None = None
    if num_gpu > 0 and gpu_milli > 0:
        if num_gpu == 1 and gpu_milli < 1000:
            gpu = GpuRequest(shared=1, milli=gpu_milli, models=models, label=ALI_MILLI)
        else:
            gpu = GpuRequest(count=num_gpu, models=models, label=ALI_COUNT)
    return PodRequest(resources, DeviceRequest(gpu=gpu))


def trace_entries(pods: PodList, placement: PlacementSpec, queue: str = "default") -> list[Entry]:
    """One pending single-pod group per trace pod, in list order (names made unique by position:
    the submitted sequence repeats pods)."""
    out = []
    for k in range(len(pods)):
        request = trace_request(
            int(pods.cpu_milli[k]),
            int(pods.memory_mib[k]),
            int(pods.num_gpu[k]),
            int(pods.gpu_milli[k]),
            pods.gpu_spec[k],
        )
        name = f"{k:06d}-{pods.names[k]}"
        out.append(Entry(PodGroup(name, (Pod(name, "pod", request),), placement, queue=queue), k))
    return out


@dataclass(frozen=True)
class Submission:
    """What one seed submits: the cluster in tie-break order, the pods in submission order."""

    state: ClusterState
    order: I64  # trace node index of each state node
    pods: PodList


def submission(
    nodes: NodeList, pods: PodList, seed: int, tune: float = DEFAULT_TUNE, limit: int | None = None
) -> Submission:
    """The simulator's pod sequence and node order for a seed (the same draws as `simulate`)."""
    rng = np.random.default_rng(seed)
    submitted = prepare_pods(pods, nodes.total_gpu_milli, tune, rng)
    if limit is not None and limit < len(submitted):
        submitted = submitted.take(np.arange(limit, dtype=np.int64))
    order = node_order(nodes, rng)
    return Submission(trace_cluster(nodes, order), order, submitted)


def registry_for(typical: TypicalTasks | None) -> PlacementRegistry:
    return register_builtins(PlacementRegistry(), typical)


@dataclass(frozen=True)
class Replay:
    """Per submitted pod: the state index of its node (-1: not placed), and the simulator's events."""

    node: I64
    events: Events


def replay(sub: Submission, policy: str = "tidescale", typical: TypicalTasks | None = None) -> Replay:
    """All submitted pods pending at once in one FIFO queue, decided by one `schedule_cycle`."""
    spec = PLACEMENTS.get(policy)
    if spec is None:
        raise KeyError(f"no live placement for simulator policy {policy!r} (known: {', '.join(PLACEMENTS)})")
    entries = trace_entries(sub.pods, spec)
    result = schedule_cycle(QueueState(FIFO(), (), entries), sub.state, registry_for(typical))
    index = sub.state.index
    node = np.full(len(entries), -1, dtype=np.int64)
    for d in result.decisions:
        if d.outcome == ADMITTED and d.placement is not None:
            node[int(d.uid.split("/", 1)[1][:6])] = index[d.placement.bindings[0].node]
    placed = node >= 0
    demand = sub.pods.num_gpu * sub.pods.gpu_milli
    events = Events(
        used_milli=np.cumsum(np.where(placed, demand, 0)),
        arrived_milli=np.cumsum(demand),
        frag_milli=np.full(len(entries), np.nan),
        placed=placed,
        classes_seen=sub.state.classes,  # the snapshot's (the cycle works on a copy)
        node=node,
    )
    return Replay(node, events)
