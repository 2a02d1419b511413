import pytest

from jobs.placement import (
    Binpack,
    Placement,
    PlacementRegistry,
    Unschedulable,
    check,
    default_registry,
    register_builtins,
)
from jobs.snapshot import ClusterState, Taint, Toleration
from jobs.workload import (
    BinpackSpec,
    BundleSpec,
    FGDSpec,
    GangSpec,
    PlacementSpec,
    SpreadSpec,
    TidescaleSpec,
    TopologySpec,
)
from tests.jobs.jobs_builders import a_group, a_node, a_pod, a_state, gpus, share

REG = default_registry()


def place(spec: PlacementSpec, state: ClusterState, *pods: object) -> Placement | Unschedulable:
    group = a_group(*pods, placement=spec)  # type: ignore[arg-type]
    return REG.build(spec).place(group, state)


def nodes_of(result: Placement | Unschedulable) -> list[str]:
    assert isinstance(result, Placement), str(result)
    return [b.node for b in result.bindings]


def test_reasons_are_counted_per_reason_across_nodes() -> None:
    reserved = (Taint("gpu", "reserved"),)
    state = a_state(
        *(a_node(f"small-{i}", gpus=1) for i in range(3)),
        *(a_node(f"held-{i}", gpus=8, taints=reserved) for i in range(2)),
    )
    result = place(BinpackSpec(), state, gpus(2))
    assert isinstance(result, Unschedulable)
    assert result.counted() == "3 nodes: insufficient nvidia.com/gpu; 2 nodes: untolerated taint gpu=reserved"


@pytest.mark.parametrize(
    ("node", "pod", "reason"),
    [
        (a_node(labels={"pool": "t4"}), a_pod(selector={"pool": "a100"}), "node selector mismatch"),
        (
            a_node(taints=(Taint("dedicated", "infer", "NoExecute"),)),
            a_pod(),
            "untolerated taint dedicated=infer",
        ),
        (a_node(taints=(Taint("soft", "", "PreferNoSchedule"),)), a_pod(), None),
        (a_node(taints=(Taint("gpu", "x"),)), a_pod(tolerations=(Toleration("gpu", "Exists"),)), None),
        (a_node(cpu="2"), a_pod(cpu="4"), "insufficient cpu"),
        (a_node(memory="1Gi"), a_pod(memory="2Gi"), "insufficient memory"),
        (a_node(pods=0), a_pod(), "too many pods"),
        (
            a_node(gpus=4, model="T4"),
            gpus(1, annotations={"nvidia.com/use-gputype": "A100"}),
            "GPU model not in A100",
        ),
        (a_node(), share(300), "insufficient alibabacloud.com/gpu-milli"),
    ],
    ids=[
        "selector",
        "no-execute-taint",
        "prefer-no-schedule-is-not-a-filter",
        "tolerated",
        "cpu",
        "memory",
        "pod-cap",
        "gpu-model",
        "no-gpus",
    ],
)
def test_a_node_says_the_first_reason_it_cannot_take_a_pod(
    node: object, pod: object, reason: str | None
) -> None:
    got = check(pod, a_state(node), 0)  # type: ignore[arg-type]
    assert (got if isinstance(got, str) else None) == reason


def busy_and_empty() -> ClusterState:
    state = a_state(a_node("empty", gpus=4), a_node("busy", gpus=4))
    prep = place(BinpackSpec(), a_state(a_node("busy", gpus=4)), gpus(2))
    assert isinstance(prep, Placement)
    state.bind(1, prep.receipts[0].pod)
    return state


@pytest.mark.parametrize(
    ("spec", "node"), [(BinpackSpec(), "busy"), (SpreadSpec(), "empty")], ids=["binpack", "spread"]
)
def test_binpack_fills_the_fuller_node_and_spread_the_emptier(spec: PlacementSpec, node: str) -> None:
    assert nodes_of(place(spec, busy_and_empty(), gpus(1))) == [node]


def test_equal_scores_go_to_the_first_node_so_runs_are_deterministic() -> None:
    runs = [
        nodes_of(place(BinpackSpec(), a_state(*(a_node(f"n{i}") for i in range(4))), a_pod()))
        for _ in range(3)
    ]
    assert runs == [["n0"], ["n0"], ["n0"]]


def test_a_gang_that_does_not_fit_whole_is_not_placed_at_all() -> None:
    state = a_state(a_node("a", gpus=2), a_node("b", gpus=1))
    before = ([list(d.milli_free) for d in state.dev], list(state.used))
    result = place(GangSpec(), state, *(gpus(1) for _ in range(4)))
    assert isinstance(result, Unschedulable)
    assert result.message.startswith("gang g needs 4 of 4 pods placed together, only 3 fit")
    assert ([list(d.milli_free) for d in state.dev], list(state.used)) == before
    assert state.bound == []


@pytest.mark.parametrize(
    ("min_member", "placed"),
    [(3, 3), (4, 0)],
    ids=["min-member-met", "min-member-missed"],
)
def test_a_gang_with_min_member_places_what_fits_only_if_the_minimum_does(
    min_member: int, placed: int
) -> None:
    state = a_state(a_node("a", gpus=3))
    result = place(GangSpec(min_member=min_member), state, *(gpus(1) for _ in range(4)))
    assert (len(result.bindings) if isinstance(result, Placement) else 0) == placed
    assert len(state.bound) == placed


def racks() -> ClusterState:
    return a_state(
        a_node("r1-a", gpus=2, topology={"rack": "r1"}),
        a_node("r1-b", gpus=2, topology={"rack": "r1"}),
        a_node("r2-a", gpus=2, topology={"rack": "r2"}),
        a_node("r2-b", gpus=1, topology={"rack": "r2"}),
    )


@pytest.mark.parametrize(
    ("mode", "count", "outcome"),
    [
        ("hard", 3, ["r2-a", "r2-a", "r2-b"]),
        ("hard", 4, ["r1-a", "r1-a", "r1-b", "r1-b"]),
        ("hard", 5, "no one rack can hold all 5 pods of g (best: rack r1 holds 4)"),
        ("soft", 5, ["r1-a", "r1-a", "r1-b", "r1-b", "r2-b"]),
    ],
    ids=["hard-tightest-rack", "hard-roomier-rack", "hard-refuses-two-racks", "soft-fewest-racks"],
)
def test_topology_hard_keeps_a_group_in_one_domain_and_soft_in_the_fewest(
    mode: str, count: int, outcome: object
) -> None:
    result = place(TopologySpec(key="rack", mode=mode), racks(), *(gpus(1) for _ in range(count)))  # type: ignore[arg-type]
    if isinstance(outcome, str):
        assert isinstance(result, Unschedulable) and result.message == outcome
    else:
        assert sorted(nodes_of(result)) == sorted(outcome)  # type: ignore[arg-type]


def test_nodes_without_the_topology_key_are_counted_as_a_reason() -> None:
    state = a_state(a_node("loose", gpus=8), a_node("r1", gpus=1, topology={"rack": "r1"}))
    result = place(TopologySpec(key="rack"), state, gpus(1), gpus(1))
    assert isinstance(result, Unschedulable)
    assert "1 node: no rack topology" in str(result)


@pytest.mark.parametrize(
    ("key", "outcome"),
    [("node", ["big", "big"]), ("zone", ["z2-a", "z2-b"])],
    ids=["one-node", "one-zone"],
)
def test_a_bundle_is_co_located_on_one_node_or_in_one_domain(key: str, outcome: list[str]) -> None:
    state = a_state(
        a_node("z1-a", cpu="8", topology={"zone": "z1"}),
        a_node("z2-a", cpu="6", topology={"zone": "z2"}),
        a_node("z2-b", cpu="6", topology={"zone": "z2"}),
        a_node("big", cpu="16", topology={"zone": "z3"}),
    )
    result = place(BundleSpec(key=key, inner=SpreadSpec()), state, a_pod(cpu="6"), a_pod(cpu="6"))
    assert sorted(nodes_of(result)) == outcome


def test_a_bundle_that_fits_no_single_node_says_so() -> None:
    state = a_state(a_node("a", cpu="4"), a_node("b", cpu="4"))
    result = place(BundleSpec(), state, a_pod(cpu="3"), a_pod(cpu="3"))
    assert isinstance(result, Unschedulable)
    assert result.message == "no single node can hold all 2 pods of g (best: node a holds 1)"


@pytest.mark.parametrize("spec", [FGDSpec(), TidescaleSpec()], ids=["fgd", "tidescale"])
def test_fragmentation_aware_policies_fill_the_gpu_a_share_fits_exactly(spec: PlacementSpec) -> None:
    state = a_state(a_node("fresh", gpus=2), a_node("half", gpus=2), a_node("other", gpus=1))
    prep = place(BinpackSpec(), a_state(a_node("half", gpus=2)), share(500))
    whole = place(BinpackSpec(), a_state(a_node("other", gpus=1)), gpus(1))
    assert isinstance(prep, Placement) and isinstance(whole, Placement)
    state.bind(1, prep.receipts[0].pod)
    state.bind(2, whole.receipts[0].pod)  # the workload also runs whole-GPU pods
    assert nodes_of(place(spec, state, share(500))) == ["half"]
    assert state.dev[1].milli_free == [0, 1000]


def test_fgd_puts_a_share_on_a_used_gpu_and_keeps_a_whole_gpu_for_a_whole_gpu_pod() -> None:
    state = a_state(a_node("a", gpus=1), a_node("b", gpus=1))
    prep = place(BinpackSpec(), a_state(a_node("a", gpus=1)), share(200))
    assert isinstance(prep, Placement)
    state.bind(0, prep.receipts[0].pod)
    assert nodes_of(place(FGDSpec(), state, share(300), gpus(1))) == ["a", "b"]


def test_the_registry_builds_by_type_and_names_what_it_knows() -> None:
    assert isinstance(REG.build(BinpackSpec()), Binpack)
    with pytest.raises(KeyError, match="no placement type 'FGD' \\(known: \\)"):
        PlacementRegistry().build(FGDSpec())
    with pytest.raises(ValueError, match="registered twice"):
        register_builtins(REG)
    assert REG.known() == ("Binpack", "Bundle", "FGD", "Gang", "Spread", "Tidescale", "Topology")
