"""The live scheduler places the paper's workload exactly where the simulator does."""

import numpy as np
import pytest

from jobs.devices import GpuRequest
from jobs.fgd import TypicalTasks
from jobs.openb import NodeList, PodList
from jobs.replay import replay, submission, trace_cluster, trace_request
from jobs.resources import Resources
from jobs.scorers import policy_factory
from jobs.simulator import read_level, simulate

# openb-like node shapes (cpu milli, memory MiB, GPUs, model) and pod shapes (cpu milli, memory MiB,
# GPUs, GPU milli): shares of all sizes, whole GPUs, multi-GPU and CPU-only pods
NODE_SHAPES = [
    (96_000, 786_432, 8, "V100M32"),
    (64_000, 262_144, 2, "P100"),
    (96_000, 393_216, 8, "G2"),
    (32_000, 131_072, 4, "T4"),
    (104_000, 786_432, 8, "G3"),
]
POD_SHAPES = [
    (12_000, 16_384, 1, 1000),
    (6_000, 12_288, 1, 460),
    (4_000, 8_192, 1, 810),
    (8_000, 16_384, 0, 0),
    (16_000, 32_768, 2, 1000),
    (2_000, 4_096, 1, 160),
    (8_000, 30_000, 1, 250),
    (32_000, 65_536, 8, 1000),
    (4_000, 15_000, 1, 500),
    (88_000, 700_000, 1, 300),
]


def openb_like(nodes: int, pods: int, seed: int) -> tuple[NodeList, PodList]:
    rng = np.random.default_rng(seed)
    n = [NODE_SHAPES[int(k)] for k in rng.integers(len(NODE_SHAPES), size=nodes)]
    weights = np.array([6, 5, 4, 3, 2, 4, 3, 1, 3, 1], dtype=float)
    p = [POD_SHAPES[int(k)] for k in rng.choice(len(POD_SHAPES), size=pods, p=weights / weights.sum())]
    node_list = NodeList(
        names=tuple(f"openb-node-{i:04d}" for i in range(nodes)),
        cpu_milli=np.array([r[0] for r in n], dtype=np.int64),
        memory_mib=np.array([r[1] for r in n], dtype=np.int64),
        gpus=np.array([r[2] for r in n], dtype=np.int64),
        models=tuple(r[3] for r in n),
    )
    pod_list = PodList(
        names=tuple(f"openb-pod-{i:04d}" for i in range(pods)),
        cpu_milli=np.array([r[0] for r in p], dtype=np.int64),
        memory_mib=np.array([r[1] for r in p], dtype=np.int64),
        num_gpu=np.array([r[2] for r in p], dtype=np.int64),
        gpu_milli=np.array([r[3] for r in p], dtype=np.int64),
        gpu_spec=("",) * pods,
    )
    return node_list, pod_list


@pytest.mark.parametrize("seed", [42, 43])
@pytest.mark.parametrize("policy", ["fgd", "tidescale"])
def test_the_cycle_places_every_pod_on_the_simulators_node(policy: str, seed: int) -> None:
    nodes, pods = openb_like(48, 200, seed)
    tasks = TypicalTasks.from_arrays(pods.cpu_milli, pods.gpu_milli, pods.num_gpu, pods.gpu_spec)
    sim = simulate(nodes, pods, policy_factory(policy), seed, typical=tasks)
    live = replay(submission(nodes, pods, seed), policy, tasks)
    assert sim.events.node is not None and sim.pods > 200  # tuned up to 1.3 x the cluster's GPUs
    assert (~sim.events.placed).sum() > 0  # the cluster fills up: some pods fit nowhere
    assert live.node.tolist() == sim.events.node.tolist()
    for level in (90, 100, 110):
        gpu = nodes.total_gpu_milli
        assert (
            read_level(live.events, gpu, level).unallocated_pct
            == read_level(sim.events, gpu, level).unallocated_pct
        )


def test_learning_the_typical_tasks_from_the_pending_pods_stays_close_to_the_simulator() -> None:
    nodes, pods = openb_like(48, 200, 44)
    sim = simulate(nodes, pods, policy_factory("tidescale"), 44)
    live = replay(submission(nodes, pods, 44), "tidescale")
    gpu = nodes.total_gpu_milli
    assert read_level(live.events, gpu, 100).unallocated_pct == pytest.approx(
        read_level(sim.events, gpu, 100).unallocated_pct, abs=2.0
    )


@pytest.mark.parametrize(
    ("row", "gpu"),
    [
        ((4000, 1024, 1, 460), GpuRequest(shared=1, milli=460, label="alibabacloud.com/gpu-milli")),
        ((4000, 1024, 1, 1000), GpuRequest(count=1, label="alibabacloud.com/gpu-count")),
        ((4000, 1024, 4, 1000), GpuRequest(count=4, label="alibabacloud.com/gpu-count")),
        ((4000, 1024, 0, 0), None),
    ],
    ids=["share", "one-gpu", "four-gpus", "cpu-only"],
)
def test_a_trace_pod_asks_what_the_simulator_gives_it(
    row: tuple[int, int, int, int], gpu: GpuRequest | None
) -> None:
    request = trace_request(*row)
    assert request.resources == Resources.of(cpu=4000, memory=1024 * 2**20, pods=1)
    assert request.devices.gpu == gpu


def test_the_trace_cluster_lists_nodes_in_tie_break_order_with_the_simulators_pod_cap() -> None:
    nodes, _ = openb_like(5, 1, 0)
    state = trace_cluster(nodes, [3, 1, 0, 4, 2])
    assert [n.name for n in state.nodes] == [nodes.names[i] for i in (3, 1, 0, 4, 2)]
    assert state.nodes[0].capacity["pods"] == 1001
    assert state.nodes[0].capacity["memory"] == int(nodes.memory_mib[3]) * 2**20
    assert [g.model for g in state.nodes[0].devices.gpus] == [nodes.models[3]] * int(nodes.gpus[3])
