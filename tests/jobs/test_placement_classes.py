"""Node equivalence classes change nothing: the class-scored placement equals asking every node."""

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import pytest

from jobs.placement import (
    FGD,
    Binding,
    Gang,
    NodeScorer,
    Placement,
    PlacementPolicy,
    Result,
    Topology,
    Unschedulable,
    check,
    default_registry,
    pod_key,
)
from jobs.snapshot import BoundPod, ClusterState, Node, Receipt, Taint, Toleration
from jobs.workload import (
    BinpackSpec,
    FGDSpec,
    GangSpec,
    PlacementSpec,
    Pod,
    PodGroup,
    SpreadSpec,
    TidescaleSpec,
    TopologySpec,
)
from tests.jobs.jobs_builders import a_group, a_node, a_pod, gpus, share

HOST = "kubernetes.io/hostname"
RESERVED = Taint("gpu", "reserved")


class PerNode:
    """The placement as it was before node classes: every candidate node asked in turn."""

    def __init__(self, scorer: NodeScorer) -> None:
        self.scorer = scorer

    def learn(self, state: ClusterState, pods: Sequence[Pod]) -> None:
        self.scorer.learn(state, pods)

    def place(self, group: PodGroup, state: ClusterState, nodes: Sequence[int] | None = None) -> Result:
        self.scorer.prepare(group, state)
        bindings: list[Binding] = []
        receipts: list[Receipt] = []
        pending: dict[str, Unschedulable] = {}
        for pod in group.pods:
            best = None
            reasons: Counter[str] = Counter()
            for i in range(len(state.nodes)) if nodes is None else nodes:
                got = self.scorer.evaluate(pod, state, i)
                if isinstance(got, str):
                    reasons[got] += 1
                elif best is None or got[0] > best[0]:
                    best = (got[0], i, got[1])
            if best is None:
                pending[pod.name] = Unschedulable(dict(reasons))
                continue
            score, i, devices = best
            node = state.nodes[i].name
            bound = BoundPod(
                pod.name, node, pod.request, devices, group.namespace, group.queue, group.name, group.priority
            )
            receipts.append(state.bind(i, bound))
            bindings.append(Binding(pod.name, node, devices, score))
        if not bindings:
            first = next(iter(pending.values()), Unschedulable())
            return replace(first, message=f"no node fits pod {next(iter(pending))}" if pending else "no pods")
        return Placement(tuple(bindings), pending, tuple(receipts))


def per_node(policy: PlacementPolicy) -> PlacementPolicy:
    """The same policy tree with every node scorer asking node by node."""
    if isinstance(policy, Topology):
        return Topology(policy.key, policy.hard, per_node(policy.inner), policy.what)
    if isinstance(policy, Gang):
        return Gang(per_node(policy.inner), policy.min_member)
    assert isinstance(policy, NodeScorer)
    return PerNode(policy)


def random_node(rng: random.Random, k: int) -> Node:
    n_gpus = rng.choice([0, 1, 2, 4, 4])
    node = a_node(
        f"n{k}",
        cpu=rng.choice(["8", "16", "32"]),
        memory=rng.choice(["32Gi", "64Gi"]),
        gpus=n_gpus,
        model=rng.choice(["A100", "T4"]),
        gpu_memory=16384,
        nvlink=[0, 0, 1, 1] if n_gpus == 4 and rng.random() < 0.5 else None,
        labels={"pool": rng.choice("ab"), HOST: f"n{k}"},
        taints=(RESERVED,) if rng.random() < 0.2 else (),
        topology={"rack": rng.choice(["r1", "r2"])} if rng.random() < 0.8 else {},
        pods=rng.choice([3, 110]),
    )
    return replace(node, unschedulable=rng.random() < 0.05)


def random_pod(rng: random.Random) -> Pod:
    kind = rng.randrange(9)
    cpu = rng.choice(["500m", "1", "2", "4"])
    if kind == 0:
        return a_pod(cpu=cpu, memory=rng.choice(["1Gi", "4Gi", "16Gi"]))
    if kind == 1:
        return gpus(rng.choice([1, 1, 2]), cpu=cpu)
    if kind in (2, 3):
        return share(rng.choice([100, 250, 500, 700]), cpu=cpu)
    if kind == 4:
        return a_pod(cpu=cpu, requests={"nvidia.com/gpu": 1, "nvidia.com/gpumem": 4096})
    if kind == 5:
        return a_pod(cpu=cpu, requests={"nvidia.com/gpu": 1}, annotations={"tidescale.io/vgpu-ratio": "4"})
    if kind == 6:
        return a_pod(cpu=cpu, requests={"nvidia.com/gpu": 2, "nvidia.com/gpucores": 30})
    if kind == 7:
        return replace(share(500, cpu=cpu), node_selector={"pool": rng.choice("ab")})
    pod = replace(gpus(1, cpu=cpu), tolerations=(Toleration("gpu", "Exists"),))
    return replace(pod, node_selector={HOST: f"n{rng.randrange(12)}"}) if rng.random() < 0.5 else pod


def random_state(rng: random.Random, nodes: int) -> ClusterState:
    shapes = [random_node(rng, k) for k in range(4)]
    state = ClusterState(
        [
            replace(rng.choice(shapes), name=f"n{k}", labels={**rng.choice(shapes).labels, HOST: f"n{k}"})
            for k in range(nodes)
        ]
    )
    for k in range(nodes):
        pod = random_pod(rng)
        i = rng.randrange(nodes)
        got = check(pod, state, i)
        if not isinstance(got, str):
            state.bind(i, BoundPod(f"bound-{k}", state.nodes[i].name, pod.request, got))
    return state


SPECS: list[PlacementSpec] = [
    BinpackSpec(),
    SpreadSpec(),
    FGDSpec(),
    TidescaleSpec(),
    GangSpec(inner=FGDSpec()),
    GangSpec(min_member=2, inner=TidescaleSpec()),
    TopologySpec(key="rack", mode="hard", inner=TidescaleSpec()),
    TopologySpec(key="rack", mode="soft", inner=BinpackSpec()),
    GangSpec(inner=TopologySpec(key="rack", mode="soft", inner=FGDSpec())),
]


def observed(state: ClusterState) -> tuple[object, ...]:
    return (
        [d.signature() for d in state.dev],
        [sorted(u.amounts.items()) for u in state.used],
        [(b.name, b.node, b.devices) for b in state.bound],
    )


@pytest.mark.parametrize("learned", [False, True], ids=["per-group", "learned-once"])
@pytest.mark.parametrize("seed", range(16))
def test_class_scoring_places_exactly_like_asking_every_node(seed: int, learned: bool) -> None:
    rng = random.Random(seed)
    state = random_state(rng, rng.choice([6, 12, 40, 150]))
    groups = [
        a_group(
            *(random_pod(rng) for _ in range(rng.randint(1, 5))), name=f"g{k}", placement=rng.choice(SPECS)
        )
        for k in range(10)
    ]
    fast, slow = state.copy(), state.copy()
    reg = default_registry()
    built = {id(g): (reg.build(g.placement), per_node(reg.build(g.placement))) for g in groups}
    if learned:
        every = [p for g in groups for p in g.pods]
        for policy, reference in built.values():
            policy.learn(fast, every)
            reference.learn(slow, every)
    for g in groups:
        policy, reference = built[id(g)]
        got = policy.place(g, fast)
        want = reference.place(g, slow)
        assert got == want, (g.name, g.placement)
        assert observed(fast) == observed(slow)


def test_one_policy_answers_many_groups_from_its_class_cache() -> None:
    rng = random.Random(99)
    state = random_state(rng, 40)
    policy = FGD()
    reference = PerNode(FGD())
    pods = [random_pod(rng) for _ in range(60)]
    policy.learn(state, pods)
    reference_state = state.copy()
    reference.learn(reference_state, pods)
    for k, pod in enumerate(pods):
        group = a_group(pod, name=f"g{k}", placement=FGDSpec())
        assert policy.place(group, state) == reference.place(group, reference_state)
    assert observed(state) == observed(reference_state)


def test_nodes_that_differ_only_by_name_and_hostname_share_a_class() -> None:
    state = ClusterState([a_node(f"n{k}", gpus=2, labels={HOST: f"n{k}"}) for k in range(3)])
    assert state.cls.tolist() == [0, 0, 0] and state.members == [{0, 1, 2}]
    receipt = state.bind(1, BoundPod("x", "n1", gpus(1).request, check(gpus(1), state, 1)))  # type: ignore[arg-type]
    assert state.cls.tolist() == [0, 1, 0]
    state.unbind(receipt)
    assert state.cls.tolist() == [0, 0, 0] and state.members[1] == set()


def test_an_emptied_class_is_not_revived_so_cached_answers_stay_true() -> None:
    state = ClusterState([a_node("a", gpus=1), a_node("b", cpu="8", gpus=1)])
    receipt = state.bind(0, BoundPod("x", "a", gpus(1).request, check(gpus(1), state, 0)))  # type: ignore[arg-type]
    emptied = int(state.cls[0])
    state.unbind(receipt)
    again = state.bind(0, BoundPod("x", "a", gpus(1).request, check(gpus(1), state, 0)))  # type: ignore[arg-type]
    assert int(state.cls[0]) != emptied and state.members[emptied] == set()
    state.unbind(again)


def test_a_hostname_selector_is_checked_node_by_node() -> None:
    state = ClusterState([a_node(f"n{k}", labels={HOST: f"n{k}"}) for k in range(3)])
    pod = replace(a_pod(), node_selector={HOST: "n2"})
    result = FGD().place(a_group(pod), state)
    assert isinstance(result, Placement) and [b.node for b in result.bindings] == ["n2"]
    cordoned = ClusterState(
        [
            replace(a_node("n0", labels={HOST: "n0"}), unschedulable=True),
            a_node("n1", cpu="1", labels={HOST: "n1"}),
        ]
    )
    result = FGD().place(a_group(replace(a_pod(cpu="2"), node_selector={HOST: "n1"})), cordoned)
    assert isinstance(result, Unschedulable)
    assert result.reasons == {"node unschedulable": 1, "insufficient cpu": 1}


def test_a_pods_key_ignores_its_name() -> None:
    assert pod_key(share(300, name="a")) == pod_key(share(300, name="b"))
    assert pod_key(share(300)) != pod_key(share(400))


def test_a_copy_keeps_only_the_live_classes_renumbered_in_order() -> None:
    state = ClusterState([a_node(f"n{k}", gpus=2) for k in range(3)])
    for k in range(3):
        state.bind(k, BoundPod(f"x{k}", f"n{k}", gpus(1).request, check(gpus(1), state, k)))  # type: ignore[arg-type]
    state.bind(0, BoundPod("y", "n0", gpus(1).request, check(gpus(1), state, 0)))  # type: ignore[arg-type]
    assert state.classes == 3 and state.cls.tolist() == [2, 1, 1]
    copy = state.copy()
    assert copy.classes == 2 and copy.cls.tolist() == [1, 0, 0] and copy.members == [{1, 2}, {0}]
    copy.bind(1, BoundPod("z", "n1", gpus(1).request, check(gpus(1), copy, 1)))  # type: ignore[arg-type]
    assert copy.cls.tolist() == [1, 1, 0]  # n1 joins n0's live class under its new id
