"""The GPU views of `top node` and `top job`, computed from plain nodes, pods and DCGM samples."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.launcher import views
from jobs.launcher.status import JobView, PodView

L40S = {"nvidia.com/gpu.product": "NVIDIA-L40S", "nvidia.com/gpu.memory": "46068"}


def a_node(
    name: str = "n0",
    allocatable: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    ready: bool = True,
    cordoned: bool = False,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": L40S if labels is None else labels},
        "spec": {"unschedulable": cordoned},
        "status": {
            "allocatable": {"cpu": "32", "memory": "128Gi", "nvidia.com/gpu": "4"}
            if allocatable is None
            else allocatable,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def a_pod(
    name: str,
    node: str = "n0",
    limits: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    phase: str = "Running",
    namespace: str = "ml",
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "main", "resources": {"limits": limits or {"nvidia.com/gpu": "1"}}}],
        },
        "status": {"phase": phase},
    }


def whole(name: str, gpus: str, node: str = "n0", **kw: Any) -> dict[str, Any]:
    count = str(len(gpus.split(",")))
    ann = {"tidescale.io/node": node, "tidescale.io/gpus": gpus}
    return a_pod(name, node, {"nvidia.com/gpu": count}, ann, **kw)


def share(name: str, gpu: str, memory: str = "12000", cores: str | None = "30") -> dict[str, Any]:
    limits = {"nvidia.com/gpu": "1", "nvidia.com/gpumem": memory}
    if cores is not None:
        limits["nvidia.com/gpucores"] = cores
    return a_pod(name, "n0", limits, {"tidescale.io/node": "n0", "tidescale.io/gpus": gpu})


def a_slice(name: str, gpu: int, slot: int, ratio: int = 4) -> dict[str, Any]:
    ann = {
        "tidescale.io/node": "n0",
        "tidescale.io/gpus": str(gpu),
        "tidescale.io/gpu-slices": f"{gpu}:{slot}",
        "tidescale.io/vgpu-ratio": str(ratio),
    }
    return a_pod(name, "n0", {"nvidia.com/gpu": "1"}, ann)


def sample(metric: str, node: str, gpu: int, value: float, pod: str | None = None) -> dict[str, Any]:
    labels = {"__name__": metric, "hostname": node, "gpu": str(gpu)}
    if pod:
        labels |= {"pod": pod, "namespace": "ml"}
    return {"metric": labels, "value": [1700000000.0, str(value)]}


def by_gpu(view: views.ClusterView, node: str = "n0") -> dict[int, tuple[float, str, list[str]]]:
    (n,) = [n for n in view.nodes if n.name == node]
    return {g.index: (g.allocated, g.mode, [h.ref for h in g.holders]) for g in n.gpus}


# -- allocation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pods", "expected", "node_allocated", "mode"),
    [
        pytest.param([], {0: (0, "free", []), 3: (0, "free", [])}, 0, "exclusive", id="idle"),
        pytest.param(
            [whole("train", "0,1")],
            {0: (1, "exclusive", ["ml/train"]), 1: (1, "exclusive", ["ml/train"]), 2: (0, "free", [])},
            2,
            "exclusive",
            id="whole GPUs",
        ),
        pytest.param(
            [share("a", "2"), share("b", "2", memory="23034", cores=None)],
            # a: max(30% of the cores, 12000/46068 of the memory); b: half the memory, no cores asked
            {2: (0.8, "shared", ["ml/a", "ml/b"])},
            0.8,
            "shared",
            id="two shares of one GPU",
        ),
        pytest.param(
            [a_slice("s0", 3, 0), a_slice("s1", 3, 2)],
            {3: (0.5, "sliced", ["ml/s0", "ml/s1"])},
            0.5,
            "sliced",
            id="two quarter slices",
        ),
        pytest.param(
            [whole("train", "0,1"), share("a", "2"), a_slice("s0", 3, 1)],
            {0: (1, "exclusive", ["ml/train"]), 2: (0.3, "shared", ["ml/a"]), 3: (0.25, "sliced", ["ml/s0"])},
            2.55,
            "exclusive+shared+sliced",
            id="whole, shared and sliced on one node",
        ),
        pytest.param(
            [whole("done", "0", phase="Succeeded"), whole("gone", "1", phase="Failed")],
            {0: (0, "free", []), 1: (0, "free", [])},
            0,
            "exclusive",
            id="ended pods hold nothing",
        ),
    ],
)
def test_each_gpu_shows_what_its_pods_hold(
    pods: list[dict[str, Any]],
    expected: dict[int, tuple[float, str, list[str]]],
    node_allocated: float,
    mode: str,
) -> None:
    view = views.node_views([a_node()], pods)
    got = by_gpu(view)
    assert {i: got[i] for i in expected} == expected
    (node,) = view.nodes
    assert (node.total, node.allocated, node.mode, node.model) == (4, node_allocated, mode, "NVIDIA-L40S")
    assert (
        view.footer()
        == f"Allocated/Total GPUs In Cluster: {node_allocated:g}/4 ({round(node_allocated * 25)}%)"
    )


def test_a_gpu_pod_bound_without_annotations_is_counted_at_node_level_as_unassigned() -> None:
    other = a_pod("kube-scheduled", limits={"nvidia.com/gpu": "2"})  # bound by somebody else
    view = views.node_views([a_node()], [other, whole("train", "0")])
    (node,) = view.nodes
    assert node.unassigned == (views.Unassigned("ml", "kube-scheduled", 2.0),)
    assert node.allocated == 3 and node.pods == 2
    assert by_gpu(view)[1] == (0, "free", [])  # which GPUs it took is not known
    text = views.format_nodes(view, details=True)
    assert "Unassigned: 2 GPU of ml/kube-scheduled" in text


def test_gpushare_pods_of_another_scheduler_are_read_from_their_device_index() -> None:
    node = a_node(allocatable={"aliyun.com/gpu-count": "2", "aliyun.com/gpu-mem": "32"}, labels={})
    pod = a_pod("s", limits={"aliyun.com/gpu-mem": "8"}, annotations={"ALIYUN_COM_GPU_MEM_IDX": "1"})
    view = views.node_views([node], [pod])
    assert by_gpu(view) == {0: (0, "free", []), 1: (0.5, "shared", ["ml/s"])}  # 8 of 16 GiB
    assert view.nodes[0].offers == "shared"


def test_hami_nodes_count_cards_not_vgpus() -> None:
    node = a_node(
        allocatable={"nvidia.com/gpu": "40", "nvidia.com/gpumem": "184272", "nvidia.com/gpucores": "400"},
        labels={},
    )
    view = views.node_views([node], [share("a", "1")])
    assert view.nodes[0].total == 4
    assert by_gpu(view)[1] == (0.3, "shared", ["ml/a"])
    assert view.nodes[0].gpus[1].memory_mib == 46068


def test_nodes_without_gpus_and_pods_elsewhere_are_left_out_and_problems_are_named() -> None:
    cpu = a_node("cpu", allocatable={"cpu": "8"})
    bad = a_pod("bad", annotations={"tidescale.io/node": "n0", "tidescale.io/gpus": "0,x"})
    far = whole("far", "7")  # a GPU the node does not have
    view = views.node_views([cpu, a_node()], [bad, far, whole("elsewhere", "0", node="cpu")])
    assert [n.name for n in view.nodes] == ["n0"]
    assert any("tidescale.io/gpus: not a device index list" in p for p in view.problems)
    assert any("holds GPU 7 of node n0, which has 4" in p for p in view.problems)
    assert view.nodes[0].unassigned == (views.Unassigned("ml", "bad", 1.0),)


def test_node_status_says_not_ready_and_cordoned() -> None:
    view = views.node_views([a_node("a", ready=False), a_node("b", cordoned=True)], [])
    assert [n.status for n in view.nodes] == ["NotReady", "Ready,SchedulingDisabled"]


# -- metrics ------------------------------------------------------------------------------------------


def test_samples_join_by_node_and_gpu_under_either_hostname_label() -> None:
    results = {
        views.UTIL: [sample(views.UTIL, "n0", 0, 90, pod="train"), sample(views.UTIL, "n0", 1, 10)],
        views.FB_USED: [sample(views.FB_USED, "n0", 0, 40000)],
        views.FB_FREE: [
            sample(views.FB_FREE, "n0", 0, 6068),
            {"metric": {"Hostname": "n0", "gpu": "1"}, "value": [0, "46068"]},  # dcgm-exporter 3.x
            {"metric": {"gpu": "2"}, "value": [0, "1"]},  # no node: skipped
            {"metric": {"hostname": "n0", "gpu": "3"}, "value": [0, "NaN?"]},  # not a number: skipped
        ],
    }
    m = views.metrics_from(results)
    assert m.gpus[("n0", 0)] == views.GpuMetric(90, 40000, 6068)
    assert m.gpus[("n0", 0)].total_mib == 46068
    assert m.gpus[("n0", 1)] == views.GpuMetric(util=10, free_mib=46068)
    assert set(m.gpus) == {("n0", 0), ("n0", 1)}
    assert m.pods == {("ml", "train"): (("n0", 0),)}

    view = views.node_views([a_node()], [whole("train", "0")], m)
    usage = view.nodes[0].usage
    assert usage == views.Usage(util=50, used_mib=40000, total_mib=4 * 46068)  # every GPU of the node
    text = views.format_nodes(view, details=True)
    header, row = text.splitlines()[:2]
    assert header.split()[-2:] == ["UTIL", "MEMORY(Used/Total)"]
    assert row.split()[-2:] == ["50%", "40000/184272MiB"]
    assert "1 (whole)" in text and "90%" in text


def test_without_metrics_the_tables_have_no_metric_columns() -> None:
    view = views.node_views([a_node()], [whole("train", "0")])
    assert "UTIL" not in views.format_nodes(view, details=True)
    assert view.to_json()["metrics"] is False
    assert "metrics" not in view.to_json()["nodes"][0]


def test_allocation_text_names_whole_shares_and_slices() -> None:
    view = views.node_views(
        [a_node()],
        [whole("t", "0"), share("a", "1"), share("b", "1", cores="20"), a_slice("s", 2, 3, ratio=8)],
    )
    texts = [g.allocation_text() for g in view.nodes[0].gpus]  # b: its memory share (0.26) over its cores
    assert texts == ["1 (whole)", "0.56 (2 shares 500m 24000MiB)", "0.125 (slices 1 of 1/8)", "0"]


# -- jobs ---------------------------------------------------------------------------------------------


def a_pod_view(name: str, node: str = "n0", devices: dict[str, str] | None = None, **kw: Any) -> PodView:
    return PodView(
        name=name,
        role="worker",
        index="",
        phase=kw.get("phase", "Running"),
        node=node,
        gpus=kw.get("gpus", 1.0),
        devices=devices or {},
        scheduler="tidescale",
        bound_by_tidescale=bool(devices),
        message="",
        created="",
    )


def a_job_view(pods: tuple[PodView, ...], name: str = "ft") -> JobView:
    return JobView(name, "ml", "TrainingJob", "Running", "", "default", "tidescale", "", pods)


def test_a_job_uses_the_gpus_its_annotations_name_and_falls_back_to_dcgm_pod_labels() -> None:
    m = views.metrics_from(
        {
            views.UTIL: [
                sample(views.UTIL, "n0", 0, 80),
                sample(views.UTIL, "n0", 1, 40),
                sample(views.UTIL, "n1", 5, 20, pod="ft-2"),
                sample(views.UTIL, "n0", 3, 99, pod="ft-0"),  # the exporter's own idea: not used
            ],
            views.FB_USED: [sample(views.FB_USED, "n0", 0, 1000), sample(views.FB_USED, "n0", 1, 3000)],
            views.FB_FREE: [sample(views.FB_FREE, "n0", 0, 9000), sample(views.FB_FREE, "n0", 1, 7000)],
        }
    )
    pods = (
        a_pod_view("ft-0", devices={"gpus": "0,1"}, gpus=2),
        a_pod_view("ft-1", devices={"gpus": "1", "slices": "1:2"}, gpus=0.25),
        a_pod_view("ft-2", node="n1"),  # bound without annotations
        a_pod_view("ft-3", node="", gpus=1, phase="Pending"),
    )
    (top,) = views.job_tops([a_job_view(pods)], m)
    ft0, ft1, ft2, ft3 = top.instances
    assert (ft0.devices, ft0.usage) == (("0", "1"), views.Usage(60, 4000, 20000))
    assert (ft1.devices, ft1.usage) == (("1 slot 2",), views.Usage(40, 3000, 10000))
    assert (ft2.devices, ft2.usage) == (("5",), views.Usage(20, None, None))
    assert (ft3.devices, ft3.usage) == ((), None)
    # the job: each GPU once (GPU 1 is ft-0's and ft-1's)
    assert top.usage == views.Usage(round((80 + 40 + 20) / 3, 1), 4000, 20000)
    text = views.format_job(top, metrics=True)
    assert "ft-1" in text and "1 slot 2" in text and "3000/10000MiB" in text


def test_jobs_without_metrics_list_requested_and_allocated_gpus() -> None:
    pods = (a_pod_view("ft-0", devices={"gpus": "0"}), a_pod_view("ft-1", node="", phase="Pending"))
    tops = views.job_tops([a_job_view(pods)])
    assert tops[0].usage is None and (tops[0].requested, tops[0].allocated) == (2, 1)
    text = views.format_jobs(tops, metrics=False)
    assert text.splitlines()[0].split() == [
        "NAME",
        "KIND",
        "STATUS",
        "GPU(Requested)",
        "GPU(Allocated)",
        "NODE",
    ]
    assert text.splitlines()[-1] == "Total Allocated/Requested GPUs of Jobs: 1/2"
