import json

import pytest

from jobs.device_annotations import assignment_annotations, read_assignment
from jobs.devices import DeviceAssignment, DeviceRequest, DeviceState, Gpu, GpuRequest, NodeDevices
from jobs.vocabulary import PodRequest, pod_request

NOW = 1_700_000_000_123_456_789


def a_request(gpu: GpuRequest | None = None, rdma: int = 0, npus: int = 0, fpgas: int = 0) -> PodRequest:
    return PodRequest(devices=DeviceRequest(gpu=gpu, rdma=rdma, npus=npus, fpgas=fpgas))


ROUND_TRIPS = [
    (a_request(GpuRequest(count=2)), DeviceAssignment(gpus=(0, 3))),
    (a_request(GpuRequest(shared=1, memory_mib=8192)), DeviceAssignment(gpus=(1,))),
    (a_request(GpuRequest(shared=2, milli=300)), DeviceAssignment(gpus=(2, 0))),
    (a_request(GpuRequest(vgpus=2, vgpu_ratio=4)), DeviceAssignment(gpus=(0, 3), slices=(2, 0))),
    (a_request(GpuRequest(count=1), rdma=2), DeviceAssignment(gpus=(1,), nics=(0, 1))),
    (a_request(npus=2), DeviceAssignment(npus=(4, 5))),
    (a_request(fpgas=1), DeviceAssignment(fpgas=(1,))),
    (a_request(), DeviceAssignment()),
]


@pytest.mark.parametrize(
    ("request_", "got"),
    ROUND_TRIPS,
    ids=["whole", "shared-one", "shared-two", "vgpu", "gpu-and-nics", "npus", "fpgas", "no-devices"],
)
def test_the_annotations_written_at_bind_read_back_to_the_same_assignment(
    request_: PodRequest, got: DeviceAssignment
) -> None:
    written = assignment_annotations(request_, got, "node-a", NOW, (16_384,) * 4)
    assert written["tidescale.io/node"] == "node-a"
    assert written["tidescale.io/assume-time"] == str(NOW)
    assert read_assignment(written) == got


def test_a_gpushare_pod_gets_exactly_the_annotations_the_gpushare_device_plugin_matches() -> None:
    request = pod_request({"cpu": "1", "aliyun.com/gpu-mem": 8})
    written = assignment_annotations(request, DeviceAssignment(gpus=(1,)), "node-a", NOW, (16_384, 16_384))
    assert written == {
        "tidescale.io/node": "node-a",
        "tidescale.io/gpus": "1",
        "tidescale.io/assume-time": str(NOW),
        "ALIYUN_COM_GPU_MEM_IDX": "1",
        "ALIYUN_COM_GPU_MEM_DEV": "16",
        "ALIYUN_COM_GPU_MEM_POD": "8",
        "ALIYUN_COM_GPU_MEM_ASSIGNED": "false",
        "ALIYUN_COM_GPU_MEM_ASSUME_TIME": str(NOW),
        "scheduler.framework.gpushare.allocation": '{"0":{"1":8}}',
    }


@pytest.mark.parametrize(
    ("gpu", "memory", "pod", "dev"),
    [
        (GpuRequest(shared=1, memory_mib=6000), (16_384,), "6", "16"),
        (GpuRequest(shared=1, memory_pct=25), (46_068,), "12", "44"),
        (GpuRequest(shared=1, milli=500), (), "0", None),
    ],
    ids=["mib-rounded-up", "percent-of-the-card", "compute-only-unknown-card"],
)
def test_gpushare_sizes_are_whole_gib_the_pod_rounded_up_and_the_card_rounded_down(
    gpu: GpuRequest, memory: tuple[int, ...], pod: str, dev: str | None
) -> None:
    written = assignment_annotations(a_request(gpu), DeviceAssignment(gpus=(0,)), "n", NOW, memory)
    assert (written["ALIYUN_COM_GPU_MEM_POD"], written.get("ALIYUN_COM_GPU_MEM_DEV")) == (pod, dev)
    assert json.loads(written["scheduler.framework.gpushare.allocation"]) == {"0": {"0": int(pod)}}


@pytest.mark.parametrize(
    "gpu",
    [GpuRequest(count=1), GpuRequest(vgpus=1, vgpu_ratio=2), GpuRequest(shared=2, milli=500)],
    ids=["whole", "vgpu", "share-of-two-gpus"],
)
def test_only_a_share_of_one_gpu_carries_the_gpushare_names(gpu: GpuRequest) -> None:
    got = DeviceAssignment(gpus=tuple(range(gpu.gpus_touched)), slices=(0,) if gpu.vgpus else ())
    written = assignment_annotations(a_request(gpu), got, "n", NOW, (16_384, 16_384))
    assert not any(k.startswith(("ALIYUN_", "scheduler.framework.")) for k in written)


def test_slots_are_written_per_gpu_and_read_back_with_the_pods_ratio_for_display() -> None:
    req = DeviceRequest(gpu=GpuRequest(vgpus=1, vgpu_ratio=4))
    state = DeviceState.fresh(NodeDevices((Gpu(0), Gpu(1))))
    got: DeviceAssignment | str = DeviceAssignment()
    for _ in range(3):
        got = state.assign(req)
        assert isinstance(got, DeviceAssignment)
        state.apply(req, got)
    assert isinstance(got, DeviceAssignment)
    written = assignment_annotations(PodRequest(devices=req), got, "n", NOW)
    assert written["tidescale.io/gpu-slices"] == "0:2"
    back = read_assignment({**written, "tidescale.io/vgpu-ratio": "4"})
    assert back == got and str(back) == "gpu 0 slot 2/4"


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({"ALIYUN_COM_GPU_MEM_IDX": "2", "ALIYUN_COM_GPU_MEM_POD": "4"}, DeviceAssignment(gpus=(2,))),
        (
            {"scheduler.framework.gpushare.allocation": '{"0":{"1":1},"1":{"1":7}}'},
            DeviceAssignment(gpus=(1,)),
        ),
        ({"tidescale.io/gpus": "0", "ALIYUN_COM_GPU_MEM_IDX": "2"}, DeviceAssignment(gpus=(0,))),
        ({"tidescale.io/vgpu-ratio": "4", "other": "x"}, None),
    ],
    ids=["gpushare-index", "arena-allocation", "tidescale-names-first", "no-assignment"],
)
def test_pods_another_gpushare_scheduler_bound_are_read_from_its_device_index(
    annotations: dict[str, str], expected: DeviceAssignment | None
) -> None:
    assert read_assignment(annotations) == expected


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"tidescale.io/gpus": "0,x"}, "tidescale.io/gpus: not a device index list: '0,x'"),
        ({"tidescale.io/gpus": "-1"}, "tidescale.io/gpus: not a device index list"),
        ({"tidescale.io/gpu-slices": "0-2"}, "tidescale.io/gpu-slices: not a list of <gpu>:<slot>"),
        (
            {"tidescale.io/gpus": "0,1", "tidescale.io/gpu-slices": "0:1"},
            "GPUs 0 differ from tidescale.io/gpus 0,1",
        ),
        ({"tidescale.io/npus": "1,,2"}, "tidescale.io/npus: not a device index list"),
        ({"ALIYUN_COM_GPU_MEM_IDX": "one"}, "ALIYUN_COM_GPU_MEM_IDX: not a device index list"),
        (
            {"scheduler.framework.gpushare.allocation": "{"},
            "scheduler.framework.gpushare.allocation: not JSON",
        ),
        ({"tidescale.io/gpu-slices": "0:1", "tidescale.io/vgpu-ratio": "quarter"}, "tidescale.io/vgpu-ratio"),
    ],
    ids=[
        "not-a-number",
        "negative",
        "no-colon",
        "slices-elsewhere",
        "empty-item",
        "gpushare-index",
        "arena-json",
        "ratio",
    ],
)
def test_malformed_annotations_are_refused_by_name(annotations: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_assignment(annotations)


def test_a_vgpu_assignment_without_its_slots_is_not_written() -> None:
    with pytest.raises(ValueError, match="a vGPU assignment needs its slots"):
        assignment_annotations(
            a_request(GpuRequest(vgpus=1, vgpu_ratio=2)), DeviceAssignment(gpus=(0,)), "n", NOW
        )


def test_read_back_assignments_refuse_to_double_book_a_slot() -> None:
    req = DeviceRequest(gpu=GpuRequest(vgpus=1, vgpu_ratio=2))
    state = DeviceState.fresh(NodeDevices((Gpu(0, "L40S", 46_068),)))
    pods = [{"tidescale.io/gpus": "0", "tidescale.io/gpu-slices": "0:1"}] * 2
    outcomes = []
    for annotations in pods:
        got = read_assignment(annotations)
        assert got is not None
        why = state.conflict(req, got)
        if why is None:
            state.apply(req, got)
        outcomes.append(why)
    assert outcomes == [None, "GPU 0 slot 1/2 is taken"]
    assert state.assign(req) == DeviceAssignment(gpus=(0,), slices=(0,))
