from __future__ import annotations

from pathlib import Path

import pytest

from exporter import model
from exporter.spec import load_spec, parse_spec
from kernel.errors import InvalidSpec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "exporter" / "simulate.yaml"

GOOD = """\
driverVersion: "550.127.05"
nodes:
  - name: node-1
    gpus:
      - model: NVIDIA L4
        memoryMiB: 23034
      - model: NVIDIA L4
        memoryMiB: 23034
        pod: {namespace: ml, name: llm-0, container: vllm}
"""


def test_the_example_spec_validates_with_two_nodes_of_four_gpus_and_two_deployments() -> None:
    spec = load_spec(EXAMPLE)
    devices = model.devices_from_spec(spec)

    assert [n.name for n in spec.nodes] == ["gpu-node-1", "gpu-node-2"]
    assert len(devices) == 8
    pods = {d.labels.pod.name.rsplit("-", 2)[0] for d in devices if d.labels.pod}
    assert pods == {"llm", "embed"}
    assert sum(d.labels.pod is None for d in devices) == 1


def test_omitted_uuids_and_bus_ids_are_generated_deterministically_and_distinct() -> None:
    first = model.devices_from_spec(parse_spec(GOOD))
    again = model.devices_from_spec(parse_spec(GOOD))

    assert [d.key for d in first] == [d.key for d in again]
    assert len({d.key for d in first}) == 2
    assert all(d.key.startswith("GPU-") for d in first)
    assert [d.labels.pci_bus_id for d in first] == ["00000000:18:00.0", "00000000:19:00.0"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            GOOD.replace("memoryMiB: 23034\n      - model", "memoryMiB: 0\n      - model"),
            "<spec>:6: nodes[0].gpus[0].memoryMiB: Input should be greater than 0",
            id="memory-must-be-positive",
        ),
        pytest.param(
            GOOD.replace("        memoryMiB: 23034\n      - model", "        memoryMB: 1\n      - model"),
            "<spec>:6: nodes[0].gpus[0].memoryMB: unknown field",
            id="unknown-field-is-named-at-its-line",
        ),
        pytest.param(
            GOOD.replace(
                "      - model: NVIDIA L4\n        memoryMiB: 23034\n      - model",
                "      - memoryMiB: 1\n      - model",
            ),
            "<spec>:5: nodes[0].gpus[0].model: Field required",
            id="missing-field-points-at-its-parent",
        ),
        pytest.param(
            GOOD.replace("driverVersion", "memoryMode: sometimes\ndriverVersion"),
            "<spec>:1: memoryMode: Input should be 'preallocated' or 'dynamic' (got 'sometimes')",
            id="memory-mode-is-one-of-two",
        ),
        pytest.param(
            GOOD.replace("namespace: ml", "namespace: ML"),
            "<spec>:9: nodes[0].gpus[1].pod.namespace: String should match pattern",
            id="namespace-is-a-dns-label",
        ),
        pytest.param(
            GOOD + "  - name: node-1\n    gpus: [{model: X, memoryMiB: 1}]\n",
            "<spec>:10: nodes[1].name: node node-1 is also nodes[0]",
            id="node-names-are-unique",
        ),
        pytest.param(
            GOOD.replace(
                "memoryMiB: 23034\n      - model", "memoryMiB: 23034\n        uuid: GPU-1\n      - model"
            )
            + "        uuid: GPU-1\n",
            "<spec>:11: nodes[0].gpus[1].uuid: UUID GPU-1 is also used at nodes[0].gpus[0].uuid",
            id="uuids-are-unique",
        ),
        pytest.param(
            GOOD
            + "        mig: [{profile: 4g.40gb, gpuInstanceId: 1}, {profile: 4g.40gb, gpuInstanceId: 2}]\n",
            "<spec>:10: nodes[0].gpus[1].mig: MIG instances use 8 slices; a GPU has 7",
            id="mig-instances-fit-seven-slices",
        ),
        pytest.param(
            GOOD + "        mig: [{profile: 1g.10gb, gpuInstanceId: 1}]\n",
            "<spec>:9: nodes[0].gpus[1].pod: a GPU in MIG mode is held through its instances",
            id="a-mig-gpu-has-no-pod-of-its-own",
        ),
        pytest.param(
            GOOD.replace(
                "memoryMiB: 23034\n        pod",
                "memoryMiB: 23034\n        mig: [{profile: 2gb}]\n        pod",
            ),
            "<spec>:9: nodes[0].gpus[1].mig[0].profile: String should match pattern",
            id="mig-profile-has-dcgms-shape",
        ),
        pytest.param(
            GOOD + "models:\n  NVIDIA L4: {idlePowerWatts: 80, maxPowerWatts: 72}\n",
            "<spec>:11: models.NVIDIA L4: maxPowerWatts (72) must be above idlePowerWatts (80)",
            id="max-power-above-idle",
        ),
        pytest.param(
            "nodes: [\n",
            "<spec>:2: not valid YAML",
            id="yaml-syntax-error-has-its-line",
        ),
        pytest.param(
            "- just a list\n",
            "<spec>:1: (document): Input should be a valid dictionary",
            id="document-must-be-a-mapping",
        ),
    ],
)
def test_an_invalid_spec_names_file_line_field_and_reason(text: str, expected: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_spec(text)

    assert expected in str(caught.value)


def test_a_missing_file_is_an_invalid_spec_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    with pytest.raises(InvalidSpec, match=r"nope\.yaml: cannot read"):
        load_spec(missing)


def test_an_invalid_only_node_is_reported_once_without_a_spurious_too_short() -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_spec(GOOD.replace("memoryMiB: 23034\n      - model", "memoryMiB: -1\n      - model"))

    assert caught.value.problems == ["6: nodes[0].gpus[0].memoryMiB: Input should be greater than 0"]
