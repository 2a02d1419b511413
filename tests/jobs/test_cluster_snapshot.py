import pytest

from jobs.snapshot import parse_snapshot
from kernel.errors import InvalidSpec
from tests.jobs.jobs_builders import SNAPSHOT


def test_a_snapshot_loads_nodes_topology_devices_and_bound_pods() -> None:
    state = parse_snapshot(SNAPSHOT)
    a100, t4 = state.nodes
    assert a100.domain("zone") == "z1" and a100.domain("rack") == "r1" and a100.domain("node") == "a100-0"
    assert [g.model for g in a100.devices.gpus] == ["A100"] * 8
    assert a100.devices.nics[0].vfs == 2
    assert str(a100.taints[0]) == "gpu=reserved"
    assert [g.memory_mib for g in t4.devices.gpus] == [15360, 15360]
    assert state.free(1)["cpu"] == 28_000
    assert state.dev[1].milli_free == [0, 1000]
    assert state.dev[0].milli_free[0] == 500


def test_binding_and_unbinding_restores_the_state() -> None:
    state = parse_snapshot(SNAPSHOT)
    before = (state.used[1], list(state.dev[1].milli_free))
    receipt = state.bind(1, state.bound[0])
    state.unbind(receipt)
    assert (state.used[1], state.dev[1].milli_free) == before


@pytest.mark.parametrize(
    ("edit", "line_field_reason"),
    [
        (
            ('allocatable: {cpu: "32"', 'allocatable: {cpu: "lots"'),
            ":10: nodes.1.allocatable: Value error, cpu: not a",
        ),
        (("node: t4-0,", "node: t9-9,"), ":15: pods.0.node: no node 't9-9' in this snapshot"),
        (
            ("nvidia.com/gpu: 1}", "nvidia.com/gpu: 3}"),
            ":15: pods.0: does not fit its node t4-0: insufficient nvidia.com/gpu",
        ),
        (
            ("memoryMiB: 15360, nvlink: 0, pcie: 1", "memoryMiB: 15360, nvlinks: 0, pcie: 1"),
            ":13: nodes.1.gpus.1.nvlinks: Extra",
        ),
        (("kind: ClusterSnapshot", "kind: Snapshot"), ":2: kind: Input should be 'ClusterSnapshot'"),
    ],
    ids=["bad-quantity", "unknown-node", "overcommitted", "unknown-field", "wrong-kind"],
)
def test_snapshot_errors_name_file_line_field_and_reason(
    edit: tuple[str, str], line_field_reason: str
) -> None:
    with pytest.raises(InvalidSpec) as e:
        parse_snapshot(SNAPSHOT.replace(*edit), "cluster.yaml")
    assert str(e.value).startswith("cluster.yaml" + line_field_reason), str(e.value)


def test_json_is_accepted_as_well() -> None:
    state = parse_snapshot('{"nodes": [{"name": "n", "allocatable": {"cpu": 4}}]}')
    assert state.nodes[0].capacity["cpu"] == 4000
