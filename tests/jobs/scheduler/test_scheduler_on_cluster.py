"""`tidescale scheduler run` on the real local control plane with KWOK nodes (no mocks of the API server).

Each test runs its own scheduler in-process (its own scheduler name) over its own KWOK nodes (a label
only its scheduler selects), in its own namespace, with Volcano's PodGroup and Queue CRDs from
../shared/crds installed on the API server.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.scheduler.config import SchedulerConfig
from jobs.scheduler.live import explain_pod
from jobs.workload import BinpackSpec
from kernel.clock import SYSTEM_CLOCK
from tests.cluster_harness import PARTITION, VOLCANO, Harness
from tests.waiting import wait_for
from tidescale.local import nodes as local_nodes

pytestmark = pytest.mark.integration


def _settle(seconds: float = 2.0) -> None:
    """Give a scheduler time to act on what it has seen (used only before asserting that nothing happened)."""
    SYSTEM_CLOCK.sleep(seconds)


# -- gang ------------------------------------------------------------------------------------------


def test_a_gang_that_does_not_fit_binds_nothing_until_a_node_is_added(h: Harness) -> None:
    h.add_nodes(3, {"nvidia.com/gpu": "2"})
    h.start()
    h.podgroup("train", min_member=8)
    for i in range(8):
        h.pod(f"worker-{i}", gpus=1, annotations={"scheduling.k8s.io/group-name": "train"})

    wait_for(lambda: h.podgroup_status("train").get("phase") == "Inqueue", 30, "PodGroup train Inqueue")
    _settle()
    assert h.bound() == {}
    cond = h.condition("worker-0")
    assert cond is not None and cond.status == "False" and cond.reason == "Unschedulable"
    assert cond.message.startswith("0/3 nodes are available: 3 insufficient nvidia.com/gpu")
    assert "gang train needs 8 of 8 pods placed together, only 6 fit" in cond.message
    status = h.podgroup_status("train")
    assert status["conditions"][0]["type"] == "Unschedulable"
    assert status["conditions"][0]["reason"] == "NotEnoughResources"
    wait_for(lambda: "FailedScheduling" in h.event_reasons("worker-0"), 15, "FailedScheduling on worker-0")

    h.add_nodes(1, {"nvidia.com/gpu": "2"})
    wait_for(lambda: len(h.bound()) == 8, 30, "all 8 gang pods bound")
    per_node: dict[str, int] = {}
    for node in h.bound().values():
        per_node[node] = per_node.get(node, 0) + 1
    assert sorted(per_node.values()) == [2, 2, 2, 2]
    wait_for(lambda: h.podgroup_status("train").get("phase") == "Running", 15, "PodGroup train Running")
    assert h.podgroup_status("train")["running"] == 8
    wait_for(lambda: "Scheduled" in h.event_reasons("worker-0"), 15, "Scheduled event on worker-0")
    gpus = {json.dumps(p.metadata.annotations.get("tidescale.io/gpus")) for p in h.pods().values()}
    assert '"0"' in gpus and '"1"' in gpus  # each pod names the GPU it holds


def test_a_coscheduling_labelled_gang_binds_all_or_none(h: Harness) -> None:
    h.add_nodes(1, {"nvidia.com/gpu": "4"})
    h.start()
    labels = {
        "pod-group.scheduling.sigs.k8s.io/name": "arena",
        "pod-group.scheduling.sigs.k8s.io/min-available": "3",
    }
    for i in range(2):
        h.pod(f"w-{i}", gpus=2, labels=labels)
    wait_for(lambda: "2/3 pods" in (getattr(h.condition("w-0"), "message", "") or ""), 20, "2/3 pods exist")
    assert h.bound() == {}  # 2 of min 3 exist: the gang waits for its last member
    h.pod("w-2", gpus=2, labels=labels)  # 6 GPUs asked of 4: still none
    wait_for(lambda: "only 2 fit" in (getattr(h.condition("w-2"), "message", "") or ""), 20, "gang refused")
    assert h.bound() == {}


# -- devices ---------------------------------------------------------------------------------------


def _slices(h: Harness) -> list[str]:
    return sorted(
        p.metadata.annotations["tidescale.io/gpu-slices"]
        for p in h.pods().values()
        if p.spec.node_name and "tidescale.io/gpu-slices" in (p.metadata.annotations or {})
    )


def test_four_quarter_vgpu_pods_share_one_gpu_on_distinct_slots(h: Harness) -> None:
    (node,) = h.add_nodes(1, {"nvidia.com/gpu": "1"})
    h.start()
    for i in range(5):
        h.pod(f"infer-{i}", gpus=1, annotations={"tidescale.io/vgpu-ratio": "4"})
    wait_for(lambda: len(h.bound()) == 4, 30, "four vGPU pods bound")
    assert set(h.bound().values()) == {node}
    assert _slices(h) == ["0:0", "0:1", "0:2", "0:3"]
    left = next(n for n in h.pods() if n not in h.bound())
    wait_for(lambda: h.condition(left) is not None, 15, f"PodScheduled on {left}")
    assert "insufficient nvidia.com/gpu" in h.condition(left).message


def test_a_restarted_scheduler_rebuilds_from_annotations_and_books_no_slot_twice(h: Harness) -> None:
    h.add_nodes(1, {"nvidia.com/gpu": "1"})
    first = h.start()
    for i in range(2):
        h.pod(f"a-{i}", gpus=1, annotations={"tidescale.io/vgpu-ratio": "4"})
    wait_for(lambda: len(h.bound()) == 2, 30, "two vGPU pods bound")
    h.stop(first)
    for i in range(3):
        h.pod(f"b-{i}", gpus=1, annotations={"tidescale.io/vgpu-ratio": "4"})
    second = h.start()
    wait_for(lambda: len(h.bound()) == 4, 30, "the restarted scheduler fills the other two slots")
    _settle()
    assert len(h.bound()) == 4
    assert _slices(h) == ["0:0", "0:1", "0:2", "0:3"]
    assert second.cache.double_booked == 0


def test_shared_gpu_pods_carry_the_names_gpushare_reads(h: Harness) -> None:
    h.add_nodes(1, {"aliyun.com/gpu-count": "2", "aliyun.com/gpu-mem": "32"})
    h.start()
    for i in range(3):
        h.pod(f"s-{i}", resources={"aliyun.com/gpu-mem": "8"})
    wait_for(lambda: len(h.bound()) == 3, 30, "three gpushare pods bound")
    for p in h.pods().values():
        ann = p.metadata.annotations
        assert ann["ALIYUN_COM_GPU_MEM_POD"] == "8"
        assert ann["ALIYUN_COM_GPU_MEM_ASSIGNED"] == "false"
        assert ann["ALIYUN_COM_GPU_MEM_DEV"] == "16"
        assert ann["ALIYUN_COM_GPU_MEM_IDX"] == ann["tidescale.io/gpus"]
        assert int(ann["ALIYUN_COM_GPU_MEM_ASSUME_TIME"]) > 0
    used = sorted(p.metadata.annotations["ALIYUN_COM_GPU_MEM_IDX"] for p in h.pods().values())
    assert used in (["0", "0", "1"], ["0", "1", "1"])  # binpack: two on one card, never three


def test_an_unknown_device_request_is_unschedulable_with_its_reason(h: Harness) -> None:
    h.add_nodes(1, {"nvidia.com/gpu": "8"})
    h.start()
    h.pod("mig", resources={"nvidia.com/mig-1g.10gb": "1"})
    h.pod("plain", gpus=1)
    wait_for(lambda: "plain" in h.bound(), 30, "the valid pod bound")
    wait_for(lambda: h.condition("mig") is not None, 15, "PodScheduled on mig")
    cond = h.condition("mig")
    assert cond.reason == "Unschedulable" and "MIG profiles are not modelled" in cond.message


def test_explain_reads_the_live_cluster_for_a_pending_pod(h: Harness) -> None:
    h.add_nodes(2, {"nvidia.com/gpu": "1"})
    h.start()
    h.pod("big", gpus=2)
    wait_for(lambda: h.condition("big") is not None, 30, "PodScheduled on big")
    cfg = SchedulerConfig(scheduler_name=h.name, node_selector={PARTITION: h.ns}, placement=BinpackSpec())
    result = explain_pod(h.core.api_client, f"{h.ns}/big", cfg)
    assert not result.complete
    text = "\n".join(result.lines())
    assert "2 nodes: insufficient nvidia.com/gpu" in text


# -- other schedulers' pods ------------------------------------------------------------------------


def test_pods_bound_by_kube_scheduler_count_against_the_node(h: Harness) -> None:
    (node,) = h.add_nodes(1, {"nvidia.com/gpu": "4"})
    for i in range(2):
        h.pod(f"default-{i}", gpus=1, scheduler="default-scheduler", node=node)
    wait_for(lambda: len(h.bound()) == 2, 30, "kube-scheduler binds its two pods")
    h.start()
    for i in range(4):
        h.pod(f"ours-{i}", gpus=1)
    wait_for(lambda: len(h.bound()) == 4, 30, "two of ours bound")
    _settle()
    ours = [n for n in h.bound() if n.startswith("ours-")]
    assert len(ours) == 2
    used = sorted(p.metadata.annotations["tidescale.io/gpus"] for n, p in h.pods().items() if n in ours)
    assert len(set(used)) == 2


# -- queues ----------------------------------------------------------------------------------------


def test_fifo_and_lifo_queues_bind_in_their_order(h: Harness) -> None:
    fifo_node, lifo_node = h.add_nodes(2, {"nvidia.com/gpu": "1"})
    fifo = h.queue("fifo", {"tidescale.io/queue-policy": "FIFO"})
    lifo = h.queue("lifo", {"tidescale.io/queue-policy": "LIFO"})
    for i in range(3):
        h.pod(f"f-{i}", gpus=1, annotations={"scheduling.volcano.sh/queue-name": fifo}, node=fifo_node)
        h.pod(f"l-{i}", gpus=1, annotations={"scheduling.volcano.sh/queue-name": lifo}, node=lifo_node)
        SYSTEM_CLOCK.sleep(1.1)  # creation timestamps are whole seconds
    h.start()
    wait_for(lambda: len(h.bound()) == 2, 30, "one pod of each queue bound")
    assert set(h.bound()) == {"f-0", "l-2"}
    wait_for(lambda: h.queue_status(fifo).get("running") == 1, 15, "queue status written")
    assert h.queue_status(fifo)["allocated"]["nvidia.com/gpu"] == "1"


def _pdb(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": labels}},
    }


def test_capacity_queues_borrow_then_reclaim_through_evictions_honouring_budgets(h: Harness) -> None:
    h.add_nodes(1, {"nvidia.com/gpu": "4"})
    policy = {"tidescale.io/queue-policy": "Capacity"}
    a = h.queue("a", policy, deserved={"nvidia.com/gpu": "2"})
    b = h.queue("b", policy, deserved={"nvidia.com/gpu": "2"})
    h.start()
    for i in range(4):  # b takes its 2 and borrows a's idle 2
        h.pod(f"b-{i}", gpus=1, annotations={"scheduling.volcano.sh/queue-name": b}, labels={"q": "b"})
        SYSTEM_CLOCK.sleep(1.1)
    wait_for(lambda: len(h.bound()) == 4, 30, "queue b borrows the whole node")
    # a budget that forbids any disruption of b-3: the reclaim must not evict it
    h.policy.create_namespaced_pod_disruption_budget(h.ns, _pdb("keep-b3", {"keep": "yes"}))
    h.core.patch_namespaced_pod("b-3", h.ns, {"metadata": {"labels": {"keep": "yes"}}})
    for i in range(2):
        h.pod(f"a-{i}", gpus=1, annotations={"scheduling.volcano.sh/queue-name": a})
    wait_for(lambda: "a-0" in h.bound(), 60, "queue a gets its guarantee back")
    assert "b-3" in h.bound(), "the budget-protected borrower must not be evicted"
    wait_for(lambda: "ReclaimBlocked" in h.event_reasons("b-3"), 30, "the refused eviction reported")
    assert "b-2" not in h.bound()  # the newest unprotected borrower gave way
    assert "Reclaimed" in h.event_reasons("b-2")


def test_a_queue_cap_keeps_pods_pending_over_quota(h: Harness) -> None:
    h.add_nodes(1, {"nvidia.com/gpu": "8"})
    capped = h.queue("capped", capability={"nvidia.com/gpu": "2"})
    h.start()
    for i in range(3):
        h.pod(f"c-{i}", gpus=1, annotations={"scheduling.volcano.sh/queue-name": capped})
    wait_for(lambda: len(h.bound()) == 2, 30, "two pods within the cap")
    left = next(n for n in h.pods() if n not in h.bound())
    wait_for(lambda: h.condition(left) is not None, 15, "PodScheduled on the third")
    assert "would exceed its max gpu: 3 > 2" in h.condition(left).message


def test_invalid_queues_and_groups_get_a_clear_status_and_the_rest_is_scheduled(h: Harness) -> None:
    h.add_nodes(1, {"nvidia.com/gpu": "4"})
    bogus = h.queue("bogus", {"tidescale.io/queue-policy": "Roulette"})
    h.start()
    h.podgroup("lost", min_member=1, queue=f"{h.ns}-missing")
    h.pod("lost-0", gpus=1, annotations={"scheduling.k8s.io/group-name": "lost"})
    h.pod("orphan", gpus=1, annotations={"scheduling.k8s.io/group-name": "nowhere"})
    h.pod("in-bogus", gpus=1, annotations={"scheduling.volcano.sh/queue-name": bogus})
    h.pod("fine", gpus=1)
    wait_for(lambda: {"fine", "in-bogus"} <= set(h.bound()), 30, "the valid pods bound")
    wait_for(lambda: h.podgroup_status("lost").get("phase") == "Pending", 15, "PodGroup lost Pending")
    assert h.podgroup_status("lost")["conditions"][0]["reason"] == "QueueNotFound"
    wait_for(lambda: h.condition("orphan") is not None, 15, "PodScheduled on orphan")
    assert "PodGroup" in h.condition("orphan").message and "does not exist" in h.condition("orphan").message
    wait_for(lambda: h.queue_status(bogus).get("state") == "Unknown", 15, "the invalid queue's state")
    notes = [
        e.note
        for e in h.events.list_namespaced_event("default", field_selector=f"regarding.name={bogus}").items
        if e.reason == "InvalidQueue"
    ]
    assert notes and "no queue policy 'Roulette'" in notes[0]


# -- safety ----------------------------------------------------------------------------------------


def _metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def test_two_replicas_on_one_lease_only_the_holder_binds(h: Harness) -> None:
    h.add_nodes(1, {"nvidia.com/gpu": "8"})
    one = h.start(leader_elect=True, identity="one")
    wait_for(one.leading.is_set, 30, "replica one leads")
    two = h.start(leader_elect=True, identity="two")
    for i in range(3):
        h.pod(f"p-{i}", gpus=1)
    wait_for(lambda: len(h.bound()) == 3, 30, "pods bound by the leader")
    assert _metric(one.http.url, "tidescale_scheduler_pods_bound_total") == 3
    assert _metric(two.http.url, "tidescale_scheduler_pods_bound_total") == 0
    assert not two.leading.is_set()
    h.stop(one)
    wait_for(two.leading.is_set, 30, "replica two takes over")
    h.pod("p-3", gpus=1)
    wait_for(lambda: "p-3" in h.bound(), 30, "the new leader binds")
    assert _metric(two.http.url, "tidescale_scheduler_pods_bound_total") == 1


def test_healthz_and_metrics_report_cycles_and_binds(h: Harness) -> None:
    h.add_nodes(1, {"nvidia.com/gpu": "1"})
    running = h.start()
    h.pod("x", gpus=1)
    wait_for(lambda: "x" in h.bound(), 30, "x bound")
    assert urllib.request.urlopen(f"{running.http.url}/healthz", timeout=5).read() == b"ok"
    assert _metric(running.http.url, "tidescale_scheduler_cycles_total") >= 1
    assert _metric(running.http.url, "tidescale_scheduler_pods_bound_total") == 1
    text = urllib.request.urlopen(f"{running.http.url}/metrics", timeout=5).read().decode()
    assert "tidescale_scheduler_bind_seconds_bucket" in text and "tidescale_scheduler_cycle_seconds" in text


def test_a_pod_waits_while_its_only_node_is_gone_and_binds_when_one_returns(h: Harness) -> None:
    (only,) = h.add_nodes(1, {"nvidia.com/gpu": "1"})
    running = h.start()
    h.core.delete_node(only)
    h.nodes.remove(only)
    wait_for(lambda: not running.cache.has_node(only), 15, "the cache forgets the node")
    h.pod("late", gpus=1)
    _settle()
    assert h.bound() == {}
    h.add_nodes(1, {"nvidia.com/gpu": "1"})
    wait_for(lambda: "late" in h.bound(), 30, "requeued onto the new node")


# -- the README's examples -------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _apply(h: Harness, doc: dict[str, Any]) -> None:
    kind, ns = doc["kind"], doc["metadata"].get("namespace", "")
    if kind == "Namespace":
        h.core.create_namespace(doc)
    elif kind == "Pod":
        h.core.create_namespaced_pod(ns, doc)
    elif kind == "PodGroup":
        h.custom.create_namespaced_custom_object(*VOLCANO, ns, "podgroups", doc)
    elif kind == "Queue":
        h.custom.create_cluster_custom_object(*VOLCANO, "queues", doc)
        h.queues.append(doc["metadata"]["name"])
    else:
        raise AssertionError(f"the examples hold a {kind}: teach this test to apply it")


def test_the_readme_examples_schedule_on_the_example_nodes(h: Harness) -> None:
    spec = local_nodes.load(EXAMPLES / "local" / "nodes.yaml")
    names = []
    for pool in spec.pools:
        for index in range(pool.count):
            manifest = local_nodes.node_manifest(pool, index)
            manifest["metadata"]["name"] = f"{h.ns}-{manifest['metadata']['name']}"
            manifest["metadata"]["labels"][PARTITION] = h.ns
            h.core.create_node(manifest)
            h.nodes.append(manifest["metadata"]["name"])
            names.append(manifest["metadata"]["name"])
    local_nodes.wait_ready(h.kubeconfig, names, 60)
    h.name = "tidescale-examples"  # the examples name schedulerName tidescale: only this test's nodes serve
    try:
        h.start()
        for path in sorted((EXAMPLES / "jobs" / "cluster").glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc["kind"] == "Pod":
                    doc["spec"]["schedulerName"] = h.name
                _apply(h, doc)
        core = h.core
        wait_for(
            lambda: len([p for p in core.list_namespaced_pod("team-a").items if p.spec.node_name]) == 9,
            60,
            "all nine example pods bound",
        )
        pods = {p.metadata.name: p for p in core.list_namespaced_pod("team-a").items}
        train_nodes = {pods[f"train-{i}"].spec.node_name for i in range(4)}
        assert len(train_nodes) == 4 and all("h100" in n for n in train_nodes)
        assert pods["reranker-0"].metadata.annotations["tidescale.io/gpu-slices"].endswith(":0")
        assert "tidescale.io/gpus" in pods["embedder-0"].metadata.annotations
        assert pods["npu-infer-0"].metadata.annotations["tidescale.io/npus"] == "0,1,2,3"
        assert "ascend" in pods["npu-infer-0"].spec.node_name
        fpga = pods["fpga-decode-0"].metadata.annotations
        assert (fpga["tidescale.io/fpgas"], fpga["tidescale.io/nics"]) == ("0", "0")
        status = h.custom.get_namespaced_custom_object(*VOLCANO, "team-a", "podgroups", "train")["status"]
        assert status["phase"] == "Running"
    finally:
        h.core.delete_namespace("team-a")
        wait_for(
            lambda: "team-a" not in {n.metadata.name for n in h.core.list_namespace().items},
            60,
            "namespace team-a gone",
        )
