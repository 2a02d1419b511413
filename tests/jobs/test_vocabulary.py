import pytest

from jobs.devices import GpuRequest
from jobs.vocabulary import DIALECTS, PodRequest, node_capacity, pod_request, render

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
