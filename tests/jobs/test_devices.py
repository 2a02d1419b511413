import pytest

from jobs.devices import (
    Accelerator,
    DeviceAssignment,
    DeviceRequest,
    DeviceState,
    Gpu,
    GpuRequest,
    Nic,
    NodeDevices,
)


def a_device_state(
    n: int = 8,
    model: str = "A100",
    memory: int = 80_000,
    nvlink: tuple[int | None, ...] | None = None,
    pcie: tuple[int | None, ...] | None = None,
    nics: tuple[int | None, ...] = (),
    npus: tuple[str, ...] = (),
) -> DeviceState:
    return DeviceState.fresh(
        NodeDevices(
            tuple(
                Gpu(i, model, memory, nvlink[i] if nvlink else None, pcie[i] if pcie else None)
                for i in range(n)
            ),
            tuple(Nic(i, sw) for i, sw in enumerate(nics)),
            tuple(Accelerator(i, m) for i, m in enumerate(npus)),
        )
    )


def take(state: DeviceState, req: GpuRequest) -> DeviceAssignment:
    d = DeviceRequest(gpu=req)
    got = state.assign(d)
    assert isinstance(got, DeviceAssignment), got
    state.apply(d, got)
    return got


def test_whole_gpus_prefer_the_tightest_nvlink_group_that_holds_them() -> None:
    s = a_device_state(nvlink=(0, 0, 0, 0, 1, 1, 1, 1))
    take(s, GpuRequest(count=2))  # leaves group 0 with 2 free, group 1 with 4
    assert take(s, GpuRequest(count=2)).gpus == (2, 3)


@pytest.mark.parametrize(
    ("nvlink", "required", "outcome"),
    [
        ((0, 0, 1, 1), True, "no NVLink group with 3 free GPUs"),
        ((0, 0, 1, 1), False, (0, 1, 2)),
        ((None, None, None, None), False, (0, 1, 2)),
    ],
    ids=["hard-needs-one-group", "soft-takes-any", "unknown-topology"],
)
def test_nvlink_is_a_hard_requirement_only_when_asked(
    nvlink: tuple[int | None, ...], required: bool, outcome: object
) -> None:
    s = a_device_state(4, nvlink=nvlink)
    got = s.gpu_choice(GpuRequest(count=3, nvlink=required))
    assert got == outcome


def test_a_shared_request_takes_the_fitting_gpu_with_least_free_compute() -> None:
    s = a_device_state(3)
    take(s, GpuRequest(shared=1, milli=600))  # gpu 0: 400 free
    take(s, GpuRequest(shared=1, milli=700))  # 0 cannot take 700 -> gpu 1: 300 free
    assert take(s, GpuRequest(shared=1, milli=250)).gpus == (1,)
    assert s.milli_free == [400, 50, 1000]


def test_gpu_memory_sharing_checks_memory_per_gpu() -> None:
    s = a_device_state(2, memory=16_000)
    take(s, GpuRequest(shared=1, memory_mib=10_000))
    assert take(s, GpuRequest(shared=1, memory_mib=8_000)).gpus == (1,)
    assert s.gpu_choice(GpuRequest(shared=1, memory_mib=9_000, label="aliyun.com/gpu-mem")) == (
        "insufficient aliyun.com/gpu-mem"
    )


def test_a_memory_percentage_is_taken_from_each_cards_own_size() -> None:
    s = a_device_state(1, memory=24_000)
    take(s, GpuRequest(shared=1, memory_pct=25))
    assert s.memory_free == [18_000]


@pytest.mark.parametrize("ratio", [2, 4, 8], ids=["1:2", "1:4", "1:8"])
def test_vgpu_slices_fill_one_card_before_slicing_the_next(ratio: int) -> None:
    s = a_device_state(2)
    for _ in range(ratio):
        assert take(s, GpuRequest(vgpus=1, vgpu_ratio=ratio)).gpus == (0,)
    assert take(s, GpuRequest(vgpus=1, vgpu_ratio=ratio)).gpus == (1,)
    assert s.ratio == [ratio, ratio]
    assert s.milli_free[0] == 0


def test_a_card_sliced_at_one_ratio_refuses_other_ratios_shares_and_whole_requests() -> None:
    s = a_device_state(1)
    take(s, GpuRequest(vgpus=1, vgpu_ratio=4))
    assert s.gpu_choice(GpuRequest(vgpus=1, vgpu_ratio=2)) == "insufficient nvidia.com/gpu"
    assert s.gpu_choice(GpuRequest(shared=1, milli=100)) == "insufficient nvidia.com/gpu"
    assert s.gpu_choice(GpuRequest(count=1)) == "insufficient nvidia.com/gpu"


def test_releasing_the_last_slice_unslices_the_card() -> None:
    s = a_device_state(1)
    d = DeviceRequest(gpu=GpuRequest(vgpus=1, vgpu_ratio=8))
    got = s.assign(d)
    assert isinstance(got, DeviceAssignment)
    s.apply(d, got)
    s.apply(d, got, -1)
    assert (s.ratio, s.milli_free, s.memory_free) == ([0], [1000], [80_000])


def test_an_unsupported_vgpu_ratio_is_named() -> None:
    assert a_device_state(1).gpu_choice(GpuRequest(vgpus=1, vgpu_ratio=3)) == (
        "vGPU ratio 1:3 unsupported (1:2, 1:4, 1:8)"
    )


def test_a_gpu_model_allow_list_excludes_other_models() -> None:
    assert (
        a_device_state(2, model="T4").gpu_choice(GpuRequest(count=1, models=("A100",)))
        == "GPU model not in A100"
    )


@pytest.mark.parametrize(
    ("pcie", "nics", "outcome"),
    [((0, 0, 1, 1), (1,), "gpu 0; nic 0"), ((0, 0, 0, 0), (1,), "no RDMA NIC on the GPUs' PCIe switch")],
    ids=["nic-behind-the-gpu-switch", "nic-elsewhere"],
)
def test_rdma_nics_can_be_required_behind_the_gpus_pcie_switch(
    pcie: tuple[int, ...], nics: tuple[int, ...], outcome: str
) -> None:
    s = a_device_state(4, pcie=pcie, nics=nics)
    take(s, GpuRequest(count=2))  # gpus 0,1 gone: what is left on switch 1 is 2,3
    req = DeviceRequest(gpu=GpuRequest(count=1), rdma=1, same_pcie=True)
    got = s.assign(req)
    if outcome.startswith("gpu"):
        assert isinstance(got, DeviceAssignment) and got.nics == (0,)
        assert s.devices.gpus[got.gpus[0]].pcie == 1
    else:
        assert got == outcome


def test_npus_are_matched_by_model_and_counted_whole() -> None:
    s = a_device_state(0, npus=("Ascend910B3", "Ascend910B3", "Ascend310P"))
    req = DeviceRequest(npus=2, npu_model="Ascend910B3", npu_label="huawei.com/Ascend910B3")
    got = s.assign(req)
    assert isinstance(got, DeviceAssignment) and got.npus == (0, 1)
    s.apply(req, got)
    assert s.assign(req) == "insufficient huawei.com/Ascend910B3"


def test_gpus_are_chosen_behind_a_switch_with_a_free_nic_when_both_are_required() -> None:
    s = a_device_state(4, pcie=(0, 0, 1, 1), nics=(1,))
    got = s.assign(DeviceRequest(gpu=GpuRequest(count=1), rdma=1, same_pcie=True))
    assert isinstance(got, DeviceAssignment)
    assert (got.gpus, got.nics) == ((2,), (0,))


def vgpu(ratio: int = 4) -> DeviceRequest:
    return DeviceRequest(gpu=GpuRequest(vgpus=1, vgpu_ratio=ratio))


@pytest.mark.parametrize(
    ("gpus", "fifth"),
    [(1, "insufficient nvidia.com/gpu"), (2, DeviceAssignment(gpus=(1,), slices=(0,)))],
    ids=["one-gpu-refuses", "two-gpus-slice-the-next"],
)
def test_four_quarter_vgpus_take_slots_0_to_3_of_one_gpu_and_a_fifth_goes_elsewhere(
    gpus: int, fifth: object
) -> None:
    s = a_device_state(gpus)
    got = [take(s, GpuRequest(vgpus=1, vgpu_ratio=4)) for _ in range(4)]
    assert [(a.gpus, a.slices) for a in got] == [((0,), (k,)) for k in range(4)]
    assert s.slot_used[0] == 0b1111
    assert s.assign(vgpu()) == fifth


def test_a_released_slot_is_the_next_one_given() -> None:
    s = a_device_state(1)
    got = [take(s, GpuRequest(vgpus=1, vgpu_ratio=4)) for _ in range(3)]
    s.apply(vgpu(), got[1], -1)
    assert (s.slot_used, s.slices_free) == ([0b101], [2])
    again = s.assign(vgpu())
    assert isinstance(again, DeviceAssignment) and again.slices == (1,)


def test_a_vgpu_assignment_without_slots_takes_the_lowest_free_ones_and_says_which() -> None:
    s = a_device_state(1)
    s.apply(vgpu(), DeviceAssignment(gpus=(0,), slices=(0,)))
    taken = s.apply(vgpu(), DeviceAssignment(gpus=(0,)))
    assert (taken.slices, s.slot_used, s.slices_free) == ((1,), [0b11], [2])
    s.apply(vgpu(), taken, -1)
    s.apply(vgpu(), DeviceAssignment(gpus=(0,), slices=(0,)), -1)
    assert (s.ratio, s.slot_used, s.milli_free, s.memory_free) == ([0], [0], [1000], [80_000])


def test_the_signature_tells_apart_nodes_holding_different_slots() -> None:
    a, b = a_device_state(1), a_device_state(1)
    a.apply(vgpu(), DeviceAssignment(gpus=(0,), slices=(0,)))
    b.apply(vgpu(), DeviceAssignment(gpus=(0,), slices=(3,)))
    assert a.signature() != b.signature()
    assert a.copy().signature() == a.signature()


@pytest.mark.parametrize(
    ("got", "text"),
    [
        (DeviceAssignment(gpus=(0,), slices=(2,), vgpu_ratio=4), "gpu 0 slot 2/4"),
        (DeviceAssignment(gpus=(0, 3), slices=(2, 0)), "gpu 0 slot 2,3 slot 0"),
        (DeviceAssignment(gpus=(0, 3), nics=(1,)), "gpu 0,3; nic 1"),
        (DeviceAssignment(), "no devices"),
    ],
    ids=["slot-of-ratio", "slots", "whole", "none"],
)
def test_an_assignment_reads_as_devices_and_slots(got: DeviceAssignment, text: str) -> None:
    assert str(got) == text


def a_busy_node() -> DeviceState:
    """GPU 0 whole-used, GPU 1 sliced 1:4 with slot 1 held, GPU 2 shared with 700m left, GPU 3 free;
    one NIC with one VF, used; NPU 0 taken."""
    s = a_device_state(4, memory=16_384, nics=(None,), npus=("Ascend910", "Ascend910"))
    s.apply(DeviceRequest(gpu=GpuRequest(count=1)), DeviceAssignment(gpus=(0,)))
    s.apply(vgpu(), DeviceAssignment(gpus=(1,), slices=(1,)))
    s.apply(DeviceRequest(gpu=GpuRequest(shared=1, milli=300, memory_mib=8192)), DeviceAssignment(gpus=(2,)))
    s.apply(DeviceRequest(rdma=1, npus=1), DeviceAssignment(nics=(0,), npus=(0,)))
    return s


SHARE = DeviceRequest(gpu=GpuRequest(shared=1, milli=500, memory_mib=4096))


@pytest.mark.parametrize(
    ("req", "got", "reason"),
    [
        (vgpu(), DeviceAssignment(gpus=(1,), slices=(1,)), "GPU 1 slot 1/4 is taken"),
        (vgpu(), DeviceAssignment(gpus=(1,), slices=(2,)), None),
        (vgpu(), DeviceAssignment(gpus=(1,), slices=(4,)), "GPU 1 has no slot 4 at 1:4"),
        (vgpu(2), DeviceAssignment(gpus=(1,), slices=(0,)), "GPU 1 is sliced 1:4, not 1:2"),
        (
            vgpu(),
            DeviceAssignment(gpus=(2,), slices=(0,)),
            "GPU 2 is shared (700m of 1000m left), not sliced",
        ),
        (
            DeviceRequest(gpu=GpuRequest(count=1)),
            DeviceAssignment(gpus=(0,)),
            "GPU 0 is not free (0m of 1000m left)",
        ),
        (DeviceRequest(gpu=GpuRequest(count=1)), DeviceAssignment(gpus=(1,)), "GPU 1 is sliced 1:4"),
        (DeviceRequest(gpu=GpuRequest(count=1)), DeviceAssignment(gpus=(3,)), None),
        (DeviceRequest(gpu=GpuRequest(count=1)), DeviceAssignment(gpus=(4,)), "no GPU 4 (the node has 4)"),
        (SHARE, DeviceAssignment(gpus=(2,)), None),
        (
            DeviceRequest(gpu=GpuRequest(shared=1, milli=800)),
            DeviceAssignment(gpus=(2,)),
            "GPU 2 has 700m left, the share takes 800m",
        ),
        (
            DeviceRequest(gpu=GpuRequest(shared=1, memory_mib=9000)),
            DeviceAssignment(gpus=(2,)),
            "GPU 2 has 8192 MiB left, the share takes 9000 MiB",
        ),
        (SHARE, DeviceAssignment(gpus=(2, 3)), "2 GPUs assigned, the request takes 1"),
        (DeviceRequest(rdma=1), DeviceAssignment(nics=(0,)), "NIC 0 has 0 free virtual functions, 1 needed"),
        (DeviceRequest(npus=1), DeviceAssignment(npus=(0,)), "NPU 0 is taken"),
        (DeviceRequest(npus=1), DeviceAssignment(npus=(1,)), None),
    ],
    ids=[
        "slot-taken",
        "slot-free",
        "slot-beyond-ratio",
        "other-ratio",
        "shared-gpu-not-sliced",
        "whole-gpu-used",
        "whole-gpu-sliced",
        "whole-gpu-free",
        "no-such-gpu",
        "share-fits",
        "share-compute-too-big",
        "share-memory-too-big",
        "gpu-count-differs",
        "nic-without-vf",
        "npu-taken",
        "npu-free",
    ],
)
def test_an_explicit_assignment_that_would_double_book_is_refused_with_the_reason(
    req: DeviceRequest, got: DeviceAssignment, reason: str | None
) -> None:
    assert a_busy_node().conflict(req, got) == reason
