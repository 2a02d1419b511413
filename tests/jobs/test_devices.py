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
