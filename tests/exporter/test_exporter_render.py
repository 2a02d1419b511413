from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import reading as f
from exporter.reading import DeviceLabels, Field, PodRef, Reading
from exporter.render import COLLECTION_TIMESTAMP, HostnameLabel, format_value, label_text, render


def a_gpu(**overrides: object) -> DeviceLabels:
    base: dict[str, object] = {
        "gpu": 0,
        "uuid": "GPU-0000",
        "pci_bus_id": "00000000:18:00.0",
        "model_name": "NVIDIA H100 80GB HBM3",
        "hostname": "node-1",
        "driver_version": "550.127.05",
    }
    return DeviceLabels(**{**base, **overrides})  # type: ignore[arg-type]


LLM_POD = PodRef(namespace="ml", name="llm-0", container="vllm")


@pytest.mark.parametrize(
    ("labels", "hostname_label", "expected"),
    [
        pytest.param(
            a_gpu(),
            "hostname",
            'gpu="0",UUID="GPU-0000",pci_bus_id="00000000:18:00.0",device="nvidia0",'
            'modelName="NVIDIA H100 80GB HBM3",hostname="node-1",DCGM_FI_DRIVER_VERSION="550.127.05"',
            id="unassigned-gpu-has-no-pod-labels",
        ),
        pytest.param(
            a_gpu(gpu=3, pod=LLM_POD),
            "hostname",
            'gpu="3",UUID="GPU-0000",pci_bus_id="00000000:18:00.0",device="nvidia3",'
            'modelName="NVIDIA H100 80GB HBM3",hostname="node-1",DCGM_FI_DRIVER_VERSION="550.127.05",'
            'container="vllm",namespace="ml",pod="llm-0"',
            id="assigned-gpu-ends-with-container-namespace-pod",
        ),
        pytest.param(
            a_gpu(mig_profile="3g.40gb", gpu_instance_id=2, pod=LLM_POD),
            "hostname",
            'gpu="0",UUID="GPU-0000",pci_bus_id="00000000:18:00.0",device="nvidia0",'
            'modelName="NVIDIA H100 80GB HBM3",GPU_I_PROFILE="3g.40gb",GPU_I_ID="2",hostname="node-1",'
            'DCGM_FI_DRIVER_VERSION="550.127.05",container="vllm",namespace="ml",pod="llm-0"',
            id="mig-instance-carries-profile-and-instance-id-before-hostname",
        ),
        pytest.param(
            a_gpu(),
            "Hostname",
            'gpu="0",UUID="GPU-0000",pci_bus_id="00000000:18:00.0",device="nvidia0",'
            'modelName="NVIDIA H100 80GB HBM3",Hostname="node-1",DCGM_FI_DRIVER_VERSION="550.127.05"',
            id="old-hostname-label",
        ),
        pytest.param(
            a_gpu(model_name='odd "name"\\x'),
            "hostname",
            'gpu="0",UUID="GPU-0000",pci_bus_id="00000000:18:00.0",device="nvidia0",'
            'modelName="odd \\"name\\"\\\\x",hostname="node-1",DCGM_FI_DRIVER_VERSION="550.127.05"',
            id="quotes-and-backslashes-are-escaped",
        ),
    ],
)
def test_labels_come_in_dcgm_exporters_order(
    labels: DeviceLabels, hostname_label: HostnameLabel, expected: str
) -> None:
    assert label_text(labels, hostname_label) == expected


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        pytest.param(f.GPU_UTIL, 87.0, "87", id="integer-field-as-integer"),
        pytest.param(f.FB_USED, 73402.4, "73402", id="integer-field-rounds"),
        pytest.param(f.TOTAL_ENERGY_CONSUMPTION, 48287135, "48287135", id="energy-counter-in-mJ"),
        pytest.param(f.POWER_USAGE, 14.512, "14.512000", id="double-field-with-six-decimals"),
        pytest.param(f.GR_ENGINE_ACTIVE, 0.0, "0.000000", id="zero-ratio"),
        pytest.param(f.SM_ACTIVE, math.nan, "NaN", id="nan"),
    ],
)
def test_values_are_formatted_as_dcgm_formats_them(field: Field, value: float, expected: str) -> None:
    assert format_value(field, value) == expected


def test_a_reading_renders_help_type_and_one_sample_per_field_in_catalog_order() -> None:
    text = render([Reading(a_gpu(pod=LLM_POD), {f.POWER_USAGE: 350.5, f.GPU_UTIL: 50})])

    labels = label_text(a_gpu(pod=LLM_POD))
    assert text == (
        "# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).\n"
        "# TYPE DCGM_FI_DEV_POWER_USAGE gauge\n"
        f"DCGM_FI_DEV_POWER_USAGE{{{labels}}} 350.500000\n"
        "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).\n"
        "# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n"
        f"DCGM_FI_DEV_GPU_UTIL{{{labels}}} 50\n"
    )


@pytest.mark.parametrize(
    ("readings", "expected_families"),
    [
        pytest.param([], [], id="no-devices-no-text"),
        pytest.param(
            [Reading(a_gpu(), {f.GPU_UTIL: 10}), Reading(a_gpu(gpu=1, uuid="GPU-1"), {f.GPU_UTIL: 20})],
            [("DCGM_FI_DEV_GPU_UTIL", "gauge", 2)],
            id="one-family-for-many-devices",
        ),
        pytest.param(
            [
                Reading(
                    a_gpu(mig_profile="1g.10gb", gpu_instance_id=9), {f.GPU_UTIL: 10, f.GR_ENGINE_ACTIVE: 0.1}
                )
            ],
            [("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", 1)],
            id="gpu-util-is-never-emitted-for-a-mig-instance",
        ),
        pytest.param(
            [Reading(a_gpu(), {f.TOTAL_ENERGY_CONSUMPTION: 5, f.SM_CLOCK: 1980})],
            [("DCGM_FI_DEV_SM_CLOCK", "gauge", 1), ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", 1)],
            id="energy-is-a-counter-and-catalog-order-holds",
        ),
        pytest.param(
            [Reading(a_gpu(), {}), Reading(a_gpu(gpu=1, uuid="GPU-1"), {f.FB_FREE: 1})],
            [("DCGM_FI_DEV_FB_FREE", "gauge", 1)],
            id="fields-a-device-lacks-are-skipped",
        ),
    ],
)
def test_families_parse_back_with_their_types_and_sample_counts(
    readings: list[Reading], expected_families: list[tuple[str, str, int]]
) -> None:
    families = list(text_string_to_metric_families(render(readings)))

    assert [(fam.name, fam.type, len(fam.samples)) for fam in families] == expected_families


def test_the_collection_time_is_served_as_a_freshness_gauge() -> None:
    text = render([Reading(a_gpu(), {f.GPU_UTIL: 1})], collected_at=1767225600.25)

    families = {fam.name: fam for fam in text_string_to_metric_families(text)}
    assert families[COLLECTION_TIMESTAMP].samples[0].value == 1767225600.25
