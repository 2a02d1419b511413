import json
from pathlib import Path

import pytest
import yaml

from jobs.devices import Gpu, GpuRequest, Nic
from jobs.vocabulary import DIALECTS, PodRequest, node_capacity, pod_request, render

LOCAL_NODES = Path(__file__).resolve().parents[2] / "examples" / "local" / "nodes.yaml"

ALI = {"alibabacloud.com/gpu-milli": "460", "alibabacloud.com/gpu-count": "1"}


@pytest.mark.parametrize(
    ("requests", "annotations", "gpu"),
    [
        ({"nvidia.com/gpu": 2}, {}, GpuRequest(count=2, label="nvidia.com/gpu")),
        (
            {"nvidia.com/gpu": 1, "nvidia.com/gpumem": 8000, "nvidia.com/gpucores": 30},
            {},
            GpuRequest(shared=1, milli=300, memory_mib=8000, label="nvidia.com/gpumem"),
        ),
        (
            {"nvidia.com/gpu": 2, "nvidia.com/gpumem-percentage": 50},
            {},
            GpuRequest(shared=2, memory_pct=50, label="nvidia.com/gpumem"),
        ),
        ({"aliyun.com/gpu-mem": 8}, {}, GpuRequest(shared=1, memory_mib=8192, label="aliyun.com/gpu-mem")),
        (
            {"volcano.sh/vgpu-number": 1, "volcano.sh/vgpu-memory": 4096, "volcano.sh/vgpu-cores": 25},
            {},
            GpuRequest(shared=1, milli=250, memory_mib=4096, label="volcano.sh/vgpu-number"),
        ),
        (
            {"volcano.sh/vgpu-number": 2},
            {"tidescale.io/vgpu-ratio": "4"},
            GpuRequest(vgpus=2, vgpu_ratio=4, label="volcano.sh/vgpu-number"),
        ),
        ({"koordinator.sh/gpu": 50}, {}, GpuRequest(shared=1, milli=500, label="koordinator.sh/gpu")),
        ({"koordinator.sh/gpu": 200}, {}, GpuRequest(count=2, label="koordinator.sh/gpu")),
        (
            {"koordinator.sh/gpu-core": 50, "koordinator.sh/gpu-memory": "8Gi"},
            {},
            GpuRequest(shared=1, milli=500, memory_mib=8192, label="koordinator.sh/gpu-core"),
        ),
        ({}, {"gpu-fraction": "0.5"}, GpuRequest(shared=1, milli=500, label="gpu-fraction")),
        ({}, {"gpu-memory": "2048"}, GpuRequest(shared=1, memory_mib=2048, label="gpu-memory")),
        ({}, ALI, GpuRequest(shared=1, milli=460, label="alibabacloud.com/gpu-milli")),
        (
            {},
            {"alibabacloud.com/gpu-milli": "1000", "alibabacloud.com/gpu-count": "4"},
            GpuRequest(count=4, label="alibabacloud.com/gpu-count"),
        ),
        (
            {"nvidia.com/gpu": 1},
            {"nvidia.com/use-gputype": "A100,H100"},
            GpuRequest(count=1, models=("A100", "H100"), label="nvidia.com/gpu"),
        ),
    ],
    ids=[
        "nvidia-whole",
        "hami-share",
        "hami-memory-percent",
        "gpushare-memory",
        "volcano-share",
        "volcano-vgpu-slices",
        "koordinator-percent",
        "koordinator-whole",
        "koordinator-core-and-memory",
        "kai-fraction",
        "kai-memory",
        "alibaba-share",
        "alibaba-whole",
        "model-allow-list",
    ],
)
def test_each_dialect_maps_onto_the_gpu_model(
    requests: dict[str, str | int], annotations: dict[str, str], gpu: GpuRequest
) -> None:
    assert pod_request({"cpu": "1", **requests}, annotations).devices.gpu == gpu


JOINT = '{"deviceTypes":["gpu","rdma"],"requiredScope":"SamePCIe"}'


def test_npus_fpgas_rdma_and_joint_allocation_translate() -> None:
    req = pod_request(
        {"huawei.com/Ascend910B3": 8, "koordinator.sh/fpga": 1, "rdma/hca": 1},
        {"scheduling.koordinator.sh/device-joint-allocate": JOINT},
    )
    d = req.devices
    assert (d.npus, d.npu_model, d.fpgas, d.rdma, d.same_pcie) == (8, "Ascend910B3", 1, 1, True)


@pytest.mark.parametrize(
    ("requests", "annotations", "message"),
    [
        (
            {"nvidia.com/gpu": 1, "aliyun.com/gpu-mem": 4},
            {},
            "conflicting GPU requests in one pod: nvidia and gpushare",
        ),
        ({"nvidia.com/gpucores": 130}, {}, "nvidia.com/gpucores: a percentage in 1..100, got 130"),
        ({"koordinator.sh/gpu": 150}, {}, "multiple of 100"),
        ({"nvidia.com/mig-1g.5gb": 1}, {}, "MIG profiles are not modelled"),
        ({"huawei.com/Ascend910A-memory": 1}, {}, "vNPU sharing is not modelled"),
        ({"cpu": "lots"}, {}, "cpu: not a quantity"),
    ],
    ids=["two-dialects", "percent-range", "koordinator-fraction-above-one", "mig", "vnpu", "bad-quantity"],
)
def test_requests_the_model_cannot_hold_are_refused_by_name(
    requests: dict[str, str | int], annotations: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        pod_request(requests, annotations)


def test_other_extended_resources_count_as_scalars() -> None:
    assert pod_request({"example.com/dongle": 2}).resources["example.com/dongle"] == 2


@pytest.mark.parametrize(
    ("allocatable", "labels", "count", "model", "memory"),
    [
        (
            {"nvidia.com/gpu": 8},
            {"nvidia.com/gpu.product": "A100", "nvidia.com/gpu.memory": "81920"},
            8,
            "A100",
            81920,
        ),
        ({"alibabacloud.com/gpu-count": 2}, {"alibabacloud.com/gpu-card-model": "T4"}, 2, "T4", 0),
        ({"aliyun.com/gpu-count": 4, "aliyun.com/gpu-mem": 64}, {}, 4, "", 16384),
    ],
    ids=["nvidia-with-feature-discovery-labels", "alibaba-simulator", "gpushare-memory-split"],
)
def test_node_allocatable_becomes_gpus(
    allocatable: dict[str, int], labels: dict[str, str], count: int, model: str, memory: int
) -> None:
    scalars, devices = node_capacity({"cpu": "96", **allocatable}, labels)
    assert scalars["cpu"] == 96_000
    assert len(devices.gpus) == count
    assert {(g.model, g.memory_mib) for g in devices.gpus} == {(model, memory)}


def test_a_hami_node_counts_cards_from_gpucores_and_splits_gpumem_over_them() -> None:
    pools = yaml.safe_load(LOCAL_NODES.read_text(encoding="utf-8"))["pools"]
    pool = next(p for p in pools if p["name"] == "l40s-shared")
    assert pool["capacity"]["nvidia.com/gpu"] == "40"  # vGPUs: 4 cards x deviceSplitCount 10
    _, devices = node_capacity(pool["capacity"], {})
    assert [(g.index, g.memory_mib) for g in devices.gpus] == [(i, 46068) for i in range(4)]
    assert pool["gpu"]["memoryMiB"] == 46068


def test_a_gpu_memory_label_wins_over_the_hami_node_total() -> None:
    _, devices = node_capacity(
        {"nvidia.com/gpu": "20", "nvidia.com/gpumem": "90000", "nvidia.com/gpucores": "200"},
        {"nvidia.com/gpu.memory": "46068"},
    )
    assert {g.memory_mib for g in devices.gpus} == {46068} and len(devices.gpus) == 2


INVENTORY = [
    {"index": 1, "model": "H100", "memoryMiB": 81559, "nvlink": 0, "pcie": 1},
    {"index": 0, "nvlink": 0, "pcie": 0},
]


def test_an_inventory_annotation_replaces_the_counted_gpus_and_nics() -> None:
    _, devices = node_capacity(
        {"nvidia.com/gpu": 8, "rdma/hca": 4},
        {"nvidia.com/gpu.product": "A100", "nvidia.com/gpu.memory": "81920"},
        {
            "tidescale.io/gpus": json.dumps(INVENTORY),
            "tidescale.io/nics": '[{"index": 0, "pcie": 1, "vfs": 8}, {"index": 1}]',
        },
    )
    assert devices.gpus == (Gpu(0, "A100", 81920, 0, 0), Gpu(1, "H100", 81559, 0, 1))
    assert devices.nics == (Nic(0, 1, 8), Nic(1, None, 1))


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"tidescale.io/gpus": "[{"}, "tidescale.io/gpus: not JSON"),
        ({"tidescale.io/gpus": '{"index": 0}'}, "tidescale.io/gpus: must be a JSON list of objects"),
        (
            {"tidescale.io/gpus": '[{"index": 0, "mem": 1}]'},
            "tidescale.io/gpus: entry 0: unknown field 'mem'",
        ),
        ({"tidescale.io/gpus": '[{"model": "A100"}]'}, "tidescale.io/gpus: entry 0: no index"),
        (
            {"tidescale.io/gpus": '[{"index": 0}, {"index": 2}]'},
            r"indices must be 0\.\.1 once each, got \[0, 2\]",
        ),
        (
            {"tidescale.io/gpus": '[{"index": 0, "memoryMiB": "80G"}]'},
            "tidescale.io/gpus: GPU 0: memoryMiB must be a whole number >= 0, got '80G'",
        ),
        (
            {"tidescale.io/nics": '[{"index": 0, "vfs": 0}]'},
            "tidescale.io/nics: NIC 0: vfs must be a whole number >= 1",
        ),
        (
            {"tidescale.io/nics": '[{"index": true}]'},
            "tidescale.io/nics: entry 0: index must be a whole number",
        ),
    ],
    ids=[
        "not-json",
        "not-a-list",
        "unknown-field",
        "no-index",
        "index-gap",
        "memory-not-int",
        "no-vfs",
        "bool-index",
    ],
)
def test_a_bad_inventory_annotation_is_refused_by_name(annotations: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        node_capacity({"nvidia.com/gpu": 2}, {}, annotations)


def test_nodes_with_npus_fpgas_and_rdma_list_them() -> None:
    _, d = node_capacity({"huawei.com/Ascend910B3": 8, "koordinator.sh/fpga": 2, "rdma/hca": 4})
    assert (len(d.npus), d.npus[0].model, len(d.fpgas), d.nics[0].vfs) == (8, "Ascend910B3", 2, 4)


ROUND_TRIPS = [
    ("nvidia", GpuRequest(count=2)),
    ("hami", GpuRequest(shared=1, milli=300, memory_mib=8000)),
    ("gpushare", GpuRequest(shared=1, memory_mib=8192)),
    ("volcano", GpuRequest(shared=2, milli=250, memory_mib=4096)),
    ("volcano", GpuRequest(vgpus=1, vgpu_ratio=8)),
    ("koordinator", GpuRequest(shared=1, milli=500)),
    ("koordinator", GpuRequest(count=2)),
    ("kai", GpuRequest(shared=1, milli=250)),
    ("alibaba", GpuRequest(shared=1, milli=460)),
    ("alibaba", GpuRequest(count=8)),
]


@pytest.mark.parametrize(
    ("dialect", "gpu"), ROUND_TRIPS, ids=[f"{d}-{i}" for i, (d, _) in enumerate(ROUND_TRIPS)]
)
def test_rendering_in_a_dialect_reads_back_to_the_same_request(dialect: str, gpu: GpuRequest) -> None:
    original = pod_request({"cpu": "2", "memory": "4Gi"})
    original = PodRequest(original.resources, type(original.devices)(gpu=gpu))
    requests, annotations = render(original, dialect)
    back = pod_request(requests, annotations).devices.gpu
    assert back is not None
    assert (back.count, back.shared, back.milli, back.memory_mib, back.vgpus, back.vgpu_ratio) == (
        gpu.count,
        gpu.shared,
        gpu.milli,
        gpu.memory_mib,
        gpu.vgpus,
        gpu.vgpu_ratio,
    )


@pytest.mark.parametrize(
    ("dialect", "gpu", "message"),
    [
        ("nvidia", GpuRequest(shared=1, milli=500), "cannot express GPU sharing"),
        ("gpushare", GpuRequest(count=1), "cannot express whole GPUs"),
        ("kai", GpuRequest(vgpus=1, vgpu_ratio=2), "cannot express vGPU slices"),
    ],
    ids=["nvidia-share", "gpushare-whole", "kai-slices"],
)
def test_a_dialect_that_cannot_express_a_request_says_so(dialect: str, gpu: GpuRequest, message: str) -> None:
    req = PodRequest(pod_request({"cpu": "1"}).resources, type(pod_request({}).devices)(gpu=gpu))
    with pytest.raises(ValueError, match=message):
        render(req, dialect)


def test_every_dialect_is_known() -> None:
    assert set(DIALECTS) == {"nvidia", "hami", "gpushare", "volcano", "koordinator", "kai", "alibaba"}
