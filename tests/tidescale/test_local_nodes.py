"""KWOK node specs: validation that names the file and field, and the Node objects they become."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.errors import InvalidSpec
from tidescale.local import nodes

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "local" / "nodes.yaml"


def test_the_example_node_pools_validate() -> None:
    spec = nodes.load(EXAMPLE)
    assert [p.name for p in spec.pools] == ["h100", "l40s-shared", "ascend", "fpga"]


def test_a_node_carries_the_kwok_annotation_pool_zone_rack_and_gpu_labels() -> None:
    pool = nodes.load(EXAMPLE).pools[0]
    node = nodes.node_manifest(pool, 3)
    labels = node["metadata"]["labels"]
    assert node["metadata"]["name"] == "h100-3"
    assert node["metadata"]["annotations"][nodes.KWOK_ANNOTATION] == "fake"
    assert labels[nodes.POOL_LABEL] == "h100"
    assert labels[nodes.ZONE_LABEL] == "zone-a"
    assert labels[nodes.RACK_LABEL] == "rack-2"  # round-robin over two racks
    assert labels[nodes.GPU_PRODUCT_LABEL] == "NVIDIA-H100-80GB-HBM3"
    assert node["status"]["allocatable"] == node["status"]["capacity"]
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "8"
    assert node["status"]["capacity"]["pods"] == "110"  # defaults fill what the pool leaves out


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("pools:\n  - name: GPU_pool\n", "2: pools.0.name: Value error, must be a DNS label"),
        (
            "pools:\n  - name: a\n    count: -1\n",
            "3: pools.0.count: Input should be greater than or equal to 0",
        ),
        (
            "pools:\n  - name: a\n    taints:\n      - {key: k, effect: Sometimes}\n",
            "4: pools.0.taints.0.effect: ",
        ),
        ("pools:\n  - name: a\n    gpus: 8\n", "3: pools.0.gpus: Extra inputs are not permitted"),
        ("kind: Nodes\npools: []\n", "1: kind: Input should be 'LocalNodes'"),
    ],
    ids=["bad-name", "negative-count", "bad-effect", "unknown-field", "wrong-kind"],
)
def test_an_invalid_spec_names_the_file_line_and_field(tmp_path: Path, document: str, expected: str) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text(document)
    with pytest.raises(InvalidSpec) as error:
        nodes.load(path)
    assert str(error.value).startswith(f"{path}:{expected}")
