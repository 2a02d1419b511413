"""The pure mapping from a cluster's nodes and pods to simulated devices, the load rules replayed onto a
changing device set, and the simulator swapping its devices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter import allocation, reading
from exporter.allocation import (
    Allocation,
    GpuContainer,
    GpuNode,
    GpuPod,
    allocate,
    cluster_devices,
    deployment_of,
    gpu_node,
    gpu_pod,
    model_name_of,
)
from exporter.model import SimDevice, SimParams
from exporter.selector import LoadRequest, apply_rules, with_rule
from exporter.simulator import Simulator
from exporter.spec import gpu_uuid
from kernel.clock import FakeClock
from tidescale.cli import main

# builders


def a_node_object(name: str = "gpu-0", gpus: str | None = "8", **labels: str) -> dict[str, Any]:
    capacity = {"cpu": "96"} | ({"nvidia.com/gpu": gpus} if gpus is not None else {})
    return {"metadata": {"name": name, "labels": labels}, "status": {"capacity": capacity}}


def a_pod_object(
    name: str = "llm-5d9f8c7b6-x2kq9",
    *,
    node: str | None = "gpu-0",
    phase: str = "Running",
    containers: list[dict[str, Any]] | None = None,
    rs: str | None = "llm-5d9f8c7b6",
    template_hash: str | None = "5d9f8c7b6",
) -> dict[str, Any]:
    labels = {"app": "llm"} | ({"pod-template-hash": template_hash} if template_hash else {})
    owners = [{"kind": "ReplicaSet", "name": rs, "controller": True}] if rs else []
    spec: dict[str, Any] = {
        "containers": containers
        if containers is not None
        else [{"name": "vllm", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]
    }
    if node is not None:
        spec["nodeName"] = node
    return {
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": f"uid-{name}",
            "labels": labels,
            "ownerReferences": owners,
        },
        "spec": spec,
        "status": {"phase": phase},
    }


def a_node(name: str = "gpu-0", gpus: int = 2) -> GpuNode:
    return GpuNode(name, gpus, "NVIDIA-L4", 23034)


def a_pod(name: str, node: str = "gpu-0", gpus: int = 1, deployment: str | None = "llm") -> GpuPod:
    return GpuPod(f"uid-{name}", "ml", name, node, (GpuContainer("c", gpus),), deployment)


def holders_by_pod(result: Allocation) -> dict[tuple[str, int], str]:
    return {slot: uid.removeprefix("uid-") for slot, (uid, _) in result.holders.items()}


# reading API objects


def test_a_node_with_gpu_capacity_has_that_many_gpus_of_its_labelled_model() -> None:
    node = gpu_node(
        a_node_object(**{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.memory": "81559"})
    )
    assert node == GpuNode("gpu-0", 8, "NVIDIA-H100-80GB-HBM3", 81559)


@pytest.mark.parametrize(
    "gpus",
    [pytest.param(None, id="no-gpu-capacity"), pytest.param("0", id="zero"), pytest.param("x", id="junk")],
)
def test_a_node_without_gpus_is_not_a_gpu_node(gpus: str | None) -> None:
    assert gpu_node(a_node_object(gpus=gpus)) is None


def test_a_pod_holds_gpus_for_each_container_that_asks_for_them() -> None:
    pod = gpu_pod(
        a_pod_object(
            containers=[
                {"name": "sidecar", "resources": {}},
                {"name": "vllm", "resources": {"limits": {"nvidia.com/gpu": "2"}}},
                {"name": "aux", "resources": {"requests": {"nvidia.com/gpu": 1}}},
            ]
        )
    )
    assert pod is not None
    assert pod.containers == (GpuContainer("vllm", 2), GpuContainer("aux", 1))
    assert (pod.namespace, pod.name, pod.node, pod.deployment) == (
        "ml",
        "llm-5d9f8c7b6-x2kq9",
        "gpu-0",
        "llm",
    )


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(a_pod_object(node=None), id="not-bound-yet"),
        pytest.param(a_pod_object(phase="Succeeded"), id="succeeded"),
        pytest.param(a_pod_object(phase="Failed"), id="failed"),
        pytest.param(a_pod_object(containers=[{"name": "web", "resources": {}}]), id="asks-for-no-gpu"),
    ],
)
def test_a_pod_that_is_unbound_terminated_or_gpu_less_holds_nothing(obj: dict[str, Any]) -> None:
    assert gpu_pod(obj) is None


@pytest.mark.parametrize(
    ("rs", "template_hash", "expected"),
    [
        pytest.param("llm-5d9f8c7b6", "5d9f8c7b6", "llm", id="replicaset-minus-its-hash"),
        pytest.param("llm-embed-7f6c9", "7f6c9", "llm-embed", id="dashes-in-the-deployment-name"),
        pytest.param(None, None, None, id="a-bare-pod"),
        pytest.param("mine-1", None, None, id="a-replicaset-without-a-deployment-hash"),
    ],
)
def test_a_pods_deployment_comes_from_its_replicaset_owner(
    rs: str | None, template_hash: str | None, expected: str | None
) -> None:
    metadata = a_pod_object(rs=rs, template_hash=template_hash)["metadata"]
    assert deployment_of(metadata) == expected


@pytest.mark.parametrize(
    ("product", "expected"),
    [
        pytest.param("NVIDIA-H100-80GB-HBM3", "NVIDIA H100 80GB HBM3", id="known-model"),
        pytest.param("NVIDIA-A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB", id="known-model-with-dashes"),
        pytest.param("NVIDIA-B200", "NVIDIA-B200", id="unknown-model-as-labelled"),
        pytest.param(None, "DEFAULT", id="no-label"),
    ],
)
def test_the_gpu_model_name_is_nvmls_name_for_the_product_label(product: str | None, expected: str) -> None:
    assert model_name_of(product, "DEFAULT") == expected


# allocation


def test_new_pods_take_the_lowest_free_gpus_in_name_order() -> None:
    result = allocate([a_node(gpus=4)], [a_pod("b", gpus=2), a_pod("a")], {})
    assert holders_by_pod(result) == {("gpu-0", 0): "a", ("gpu-0", 1): "b", ("gpu-0", 2): "b"}


def test_a_pod_keeps_its_gpus_while_it_lives_and_a_newcomer_takes_a_free_one() -> None:
    first = allocate([a_node(gpus=3)], [a_pod("b")], {})
    then = allocate([a_node(gpus=3)], [a_pod("a"), a_pod("b")], first.holders)
    assert holders_by_pod(then) == {("gpu-0", 0): "b", ("gpu-0", 1): "a"}


def test_a_gone_pods_gpu_is_free_for_its_replacement() -> None:
    first = allocate([a_node()], [a_pod("a"), a_pod("b")], {})
    then = allocate([a_node()], [a_pod("b"), a_pod("c")], first.holders)
    assert holders_by_pod(then) == {("gpu-0", 0): "c", ("gpu-0", 1): "b"}


def test_pods_on_nodes_without_gpus_hold_nothing_and_each_node_allocates_its_own() -> None:
    result = allocate(
        [a_node("n1", 1), a_node("n2", 1)], [a_pod("a", "n2"), a_pod("b", "n1"), a_pod("c", "cpu-0")], {}
    )
    assert holders_by_pod(result) == {("n1", 0): "b", ("n2", 0): "a"}


def test_a_container_that_does_not_fit_gets_nothing_and_the_shortfall_is_named() -> None:
    result = allocate([a_node(gpus=2)], [a_pod("a"), a_pod("b", gpus=2)], {})
    assert holders_by_pod(result) == {("gpu-0", 0): "a"}
    assert result.shortfalls == ("pod ml/b container c asks for 2 GPUs on node gpu-0, which has 1 free",)


def test_a_node_that_lost_gpus_drops_the_holders_of_the_missing_ones() -> None:
    first = allocate([a_node(gpus=2)], [a_pod("a"), a_pod("b")], {})
    then = allocate([a_node(gpus=1)], [a_pod("a"), a_pod("b")], first.holders)
    assert holders_by_pod(then) == {("gpu-0", 0): "a"}
    assert len(then.shortfalls) == 1


def recorded(obj: dict[str, Any], **annotations: str) -> dict[str, Any]:
    obj["metadata"]["annotations"] = annotations
    return obj


def test_a_pod_the_scheduler_recorded_holds_exactly_the_recorded_gpus() -> None:
    pod = gpu_pod(recorded(a_pod_object("b"), **{"tidescale.io/gpus": "3"}))
    other = gpu_pod(a_pod_object("a"))
    assert pod is not None and other is not None
    result = allocate([a_node(gpus=4)], [pod, other], {})
    # the recorded pod holds GPU 3 as the scheduler decided (not the lowest free one); the unrecorded
    # pod takes the lowest free GPU, as the device plugin would
    assert holders_by_pod(result) == {("gpu-0", 3): "b", ("gpu-0", 0): "a"}


def test_a_recorded_gpu_is_not_kept_by_an_unrecorded_pod_that_held_it_before() -> None:
    plain = gpu_pod(a_pod_object("a"))
    assert plain is not None
    first = allocate([a_node(gpus=2)], [plain], {})
    assert holders_by_pod(first) == {("gpu-0", 0): "a"}
    claimed = gpu_pod(recorded(a_pod_object("z"), **{"tidescale.io/gpus": "0"}))
    assert claimed is not None
    then = allocate([a_node(gpus=2)], [plain, claimed], first.holders)
    assert holders_by_pod(then) == {("gpu-0", 0): "z", ("gpu-0", 1): "a"}


def test_pods_sharing_a_gpu_by_slices_name_the_first_as_dcgm_exporter_does_and_nothing_is_short() -> None:
    shares = [
        gpu_pod(
            recorded(a_pod_object(name), **{"tidescale.io/gpus": "1", "tidescale.io/gpu-slices": f"1:{slot}"})
        )
        for name, slot in (("s2", 1), ("s1", 0))
    ]
    assert all(p is not None and p.shared for p in shares)
    result = allocate([a_node(gpus=2)], [p for p in shares if p is not None], {})
    assert holders_by_pod(result) == {("gpu-0", 1): "s1"}
    assert result.shortfalls == ()


def test_a_gpushare_pod_without_a_gpu_count_holds_its_recorded_device() -> None:
    memory_only = [{"name": "srv", "resources": {"limits": {"aliyun.com/gpu-mem": "8"}}}]
    pod = gpu_pod(recorded(a_pod_object("g", containers=memory_only), ALIYUN_COM_GPU_MEM_IDX="1"))
    assert pod is not None and pod.shared and pod.assigned == (1,)
    result = allocate([a_node(gpus=2)], [pod], {})
    assert result.holders == {("gpu-0", 1): ("uid-g", "srv")}


def test_two_pods_recording_the_same_whole_gpu_are_reported() -> None:
    pods = [gpu_pod(recorded(a_pod_object(n), **{"tidescale.io/gpus": "0"})) for n in ("a", "b")]
    result = allocate([a_node(gpus=2)], [p for p in pods if p is not None], {})
    assert holders_by_pod(result) == {("gpu-0", 0): "a"}
    assert result.shortfalls == ("pod ml/b records GPU 0 on node gpu-0, which another pod holds",)


def test_a_malformed_record_counts_as_none() -> None:
    pod = gpu_pod(recorded(a_pod_object("a"), **{"tidescale.io/gpus": "zero"}))
    assert pod is not None and pod.assigned == ()


# devices


def test_each_gpu_is_a_device_labelled_with_the_pod_container_that_holds_it() -> None:
    nodes = [a_node("n2", 1), a_node("n1", 2)]
    pods = [a_pod("llm-abc-1", "n1")]
    devices = cluster_devices(nodes, pods, allocate(nodes, pods, {}))
    assert [(d.node, d.labels.gpu) for d in devices] == [("n1", 0), ("n1", 1), ("n2", 0)]
    held = devices[0]
    assert held.key == held.labels.uuid == gpu_uuid("n1", 0)
    assert held.labels.model_name == "NVIDIA L4"
    assert held.labels.pod is not None
    assert (held.labels.pod.namespace, held.labels.pod.name, held.labels.pod.container) == (
        "ml",
        "llm-abc-1",
        "c",
    )
    assert held.deployment == "llm"
    assert devices[1].labels.pod is None and devices[1].deployment is None
    assert held.memory_mib == 23034


def test_the_same_cluster_gives_the_same_devices() -> None:
    nodes = [a_node("n1", 2)]
    pods = [a_pod("a", "n1")]
    assert cluster_devices(nodes, pods, allocate(nodes, pods, {})) == cluster_devices(
        nodes, pods, allocate(nodes, pods, {})
    )


def test_a_node_without_gfd_labels_gets_the_default_model_and_memory() -> None:
    devices = cluster_devices([GpuNode("n1", 1)], [], Allocation({}))
    assert devices[0].labels.model_name == allocation.DEFAULT_SETTINGS.default_model
    assert devices[0].memory_mib == allocation.DEFAULT_SETTINGS.default_memory_mib


# load rules


def devices_for(*pods: GpuPod, gpus: int = 4) -> tuple[SimDevice, ...]:
    nodes = [a_node(gpus=gpus)]
    return cluster_devices(nodes, list(pods), allocate(nodes, list(pods), {}))


def loads_by_pod(devices: tuple[SimDevice, ...], loads: dict[str, float]) -> dict[str, float]:
    return {(d.labels.pod.name if d.labels.pod else f"free-{d.labels.gpu}"): loads[d.key] for d in devices}


def rule(load: float, **selector: str) -> LoadRequest:
    return LoadRequest(load=load, **selector)


def test_a_deployment_rule_reaches_pods_that_arrive_later() -> None:
    rules = with_rule((), rule(0.9, namespace="ml", deployment="llm"))
    later = devices_for(a_pod("llm-x-1"), a_pod("llm-x-2"), a_pod("other-1", deployment="other"))
    assert loads_by_pod(later, apply_rules(later, rules)) == {
        "llm-x-1": 0.9,
        "llm-x-2": 0.9,
        "other-1": 0.0,
        "free-3": 0.0,
    }


def test_the_deployment_is_matched_exactly_when_known_not_by_name_prefix() -> None:
    devices = devices_for(a_pod("llm-x-1"), a_pod("llm-embed-y-1", deployment="llm-embed"))
    loads = apply_rules(devices, with_rule((), rule(0.5, namespace="ml", deployment="llm")))
    assert loads_by_pod(devices, loads)["llm-embed-y-1"] == 0.0


def test_the_last_matching_rule_wins() -> None:
    devices = devices_for(a_pod("llm-x-1"), a_pod("llm-x-2"))
    rules = with_rule((), rule(0.2))
    rules = with_rule(rules, rule(0.9, namespace="ml", deployment="llm"))
    rules = with_rule(rules, rule(0.4, namespace="ml", pod="llm-x-2"))
    assert loads_by_pod(devices, apply_rules(devices, rules)) == {
        "llm-x-1": 0.9,
        "llm-x-2": 0.4,
        "free-2": 0.2,
        "free-3": 0.2,
    }


def test_a_wider_rule_replaces_the_narrower_ones_it_covers() -> None:
    rules = with_rule((), rule(0.9, namespace="ml", deployment="llm"))
    rules = with_rule(rules, rule(0.4, node="gpu-0"))
    rules = with_rule(rules, rule(0.3, namespace="ml", deployment="llm"))
    assert rules == (rule(0.4, node="gpu-0"), rule(0.3, namespace="ml", deployment="llm"))
    assert with_rule(rules, rule(0.0)) == (rule(0.0),)


# the simulator with a changing device set


def test_replacing_devices_replays_the_rules_and_keeps_surviving_gpus_state() -> None:
    clock = FakeClock()
    simulator = Simulator(devices_for(a_pod("llm-x-1")), SimParams(), clock, keep_unmatched=True)
    assert simulator.set_load(rule(1.0, namespace="ml", deployment="llm")) == (gpu_uuid("gpu-0", 0),)
    clock.advance(60)
    energy_before = simulator.collect()[0].values
    assert simulator.replace_devices(devices_for(a_pod("llm-x-1"), a_pod("llm-x-2")))
    loads = simulator.loads()
    assert loads[gpu_uuid("gpu-0", 0)] == loads[gpu_uuid("gpu-0", 1)] == 1.0
    assert loads[gpu_uuid("gpu-0", 2)] == 0.0
    readings = simulator.collect()
    energy = reading.TOTAL_ENERGY_CONSUMPTION
    assert readings[0].values[energy] == energy_before[energy] > 0  # the surviving GPU kept its counter
    assert readings[1].values[reading.GPU_UTIL] == 100


def test_replacing_with_the_same_devices_changes_nothing() -> None:
    devices = devices_for(a_pod("llm-x-1"))
    simulator = Simulator(devices, SimParams(), FakeClock())
    assert not simulator.replace_devices(devices)


def test_following_a_cluster_a_rule_for_pods_not_there_yet_is_kept() -> None:
    simulator = Simulator((), SimParams(), FakeClock(), keep_unmatched=True)
    assert simulator.set_load(rule(0.7, namespace="ml", deployment="llm")) == ()
    simulator.replace_devices(devices_for(a_pod("llm-x-1")))
    assert simulator.loads()[gpu_uuid("gpu-0", 0)] == 0.7


# the subcommand


def test_an_unusable_kubeconfig_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exporter", "--kubeconfig", str(tmp_path / "missing"), "--listen", "127.0.0.1:0"]) == 2
    assert f"--kubeconfig {tmp_path / 'missing'}:" in capsys.readouterr().err


def test_a_cluster_that_cannot_be_reached_exits_2_naming_what_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
    )
    assert main(["exporter", "--kubeconfig", str(kubeconfig), "--listen", "127.0.0.1:0"]) == 2
    assert "cannot list nodes" in capsys.readouterr().err
