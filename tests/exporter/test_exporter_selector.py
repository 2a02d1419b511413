from __future__ import annotations

import pytest

from exporter import model
from exporter.model import SimDevice
from exporter.selector import BadLoadRequest, LoadRequest, NoMatch, parse_load_request, select
from exporter.spec import parse_spec

FLEET = """\
driverVersion: "550.127.05"
nodes:
  - name: n1
    gpus:
      - {model: NVIDIA L4, memoryMiB: 23034, uuid: GPU-a, pod: {namespace: ml, name: llm-0, container: c}}
      - {model: NVIDIA L4, memoryMiB: 23034, uuid: GPU-b, pod: {namespace: ml, name: llm-1, container: c}}
      - {model: NVIDIA L4, memoryMiB: 23034, uuid: GPU-c, pod: {namespace: ml, name: llm-big-0, container: c}}
  - name: n2
    gpus:
      - {model: NVIDIA L4, memoryMiB: 1, uuid: GPU-d, pod: {namespace: search, name: embed-0, container: c}}
      - {model: NVIDIA L4, memoryMiB: 23034, uuid: GPU-e}
      - model: NVIDIA A100-SXM4-40GB
        memoryMiB: 40960
        uuid: GPU-f
        mig:
          - {profile: 3g.20gb, gpuInstanceId: 1, uuid: MIG-f1,
             pod: {namespace: ml, name: llm-2, container: c}}
          - {profile: 3g.20gb, gpuInstanceId: 2, uuid: MIG-f2}
"""


@pytest.fixture(scope="module")
def devices() -> tuple[SimDevice, ...]:
    return model.devices_from_spec(parse_spec(FLEET))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {}, ["GPU-a", "GPU-b", "GPU-c", "GPU-d", "GPU-e", "MIG-f1", "MIG-f2"], id="no-selector-is-all"
        ),
        pytest.param({"node": "n1"}, ["GPU-a", "GPU-b", "GPU-c"], id="node"),
        pytest.param({"uuid": "GPU-d"}, ["GPU-d"], id="gpu-uuid"),
        pytest.param({"uuid": "GPU-f"}, ["MIG-f1", "MIG-f2"], id="gpu-uuid-covers-its-mig-instances"),
        pytest.param({"uuid": "MIG-f2"}, ["MIG-f2"], id="one-mig-instance"),
        pytest.param({"namespace": "ml", "pod": "llm-1"}, ["GPU-b"], id="pod"),
        pytest.param({"namespace": "ml", "pod": "llm-2"}, ["MIG-f1"], id="pod-on-a-mig-instance"),
        pytest.param(
            {"namespace": "ml", "deployment": "llm"},
            ["GPU-a", "GPU-b", "GPU-c", "MIG-f1"],
            id="deployment-is-a-pod-name-prefix",
        ),
        pytest.param({"namespace": "ml", "deployment": "llm-big"}, ["GPU-c"], id="longer-deployment-name"),
        pytest.param({"namespace": "ml", "node": "n2"}, ["MIG-f1"], id="criteria-combine-with-and"),
        pytest.param({"namespace": "search"}, ["GPU-d"], id="namespace-alone"),
    ],
)
def test_a_selector_picks_the_devices_it_names(
    devices: tuple[SimDevice, ...], body: dict[str, str], expected: list[str]
) -> None:
    assert list(select(devices, LoadRequest(load=0.5, **body))) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"node": "n9"}, "no GPU matches node 'n9' (nodes: n1, n2)", id="unknown-node"),
        pytest.param({"uuid": "GPU-zz"}, "no GPU matches uuid 'GPU-zz' (7 devices", id="unknown-uuid"),
        pytest.param(
            {"namespace": "ml", "pod": "llm-9"},
            "no GPU matches pod 'llm-9' (pods: ml/llm-0, ml/llm-1, ml/llm-2, ml/llm-big-0, search/embed-0)",
            id="unknown-pod-lists-pods",
        ),
        pytest.param(
            {"namespace": "ml", "deployment": "chat"},
            "no GPU matches deployment 'chat' (pods:",
            id="unknown-deployment",
        ),
        pytest.param(
            {"namespace": "prod"}, "no GPU matches namespace 'prod' (namespaces: ml, search)", id="namespace"
        ),
        pytest.param(
            {"namespace": "search", "pod": "llm-0"},
            "no GPU matches namespace 'search' and pod 'llm-0' together",
            id="each-matches-but-not-together",
        ),
    ],
)
def test_a_selector_that_matches_nothing_says_what_and_what_exists(
    devices: tuple[SimDevice, ...], body: dict[str, str], message: str
) -> None:
    with pytest.raises(NoMatch) as caught:
        select(devices, LoadRequest(load=0.5, **body))

    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"{", "Invalid JSON", id="not-json"),
        pytest.param(b"", "Invalid JSON", id="empty"),
        pytest.param(b"[0.5]", "Input should be an object", id="not-an-object"),
        pytest.param(b"{}", "load: Field required", id="load-missing"),
        pytest.param(b'{"load": 1.5}', "load: Input should be less than or equal to 1", id="load-above-one"),
        pytest.param(b'{"load": -1}', "load: Input should be greater than or equal to 0", id="load-negative"),
        pytest.param(b'{"load": "0.5"}', "load: Input should be a valid number", id="load-as-string"),
        pytest.param(b'{"load": 0.5, "gpu": 1}', "gpu: unknown field", id="unknown-key"),
        pytest.param(
            b'{"load": 0.5, "pod": "llm-0"}', "pod and deployment need a namespace", id="pod-sans-namespace"
        ),
        pytest.param(
            b'{"load": 0.5, "namespace": "ml", "pod": "a", "deployment": "b"}',
            "give pod or deployment, not both",
            id="pod-and-deployment",
        ),
    ],
)
def test_a_bad_load_request_is_refused_with_its_reason(body: bytes, message: str) -> None:
    with pytest.raises(BadLoadRequest) as caught:
        parse_load_request(body)

    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("body", "load"),
    [
        pytest.param(b'{"load": 0}', 0.0, id="integer-zero"),
        pytest.param(b'{"load": 1}', 1.0, id="integer-one"),
        pytest.param(b'{"load": 0.8, "namespace": "ml", "deployment": "llm"}', 0.8, id="with-selector"),
    ],
)
def test_a_good_load_request_parses(body: bytes, load: float) -> None:
    assert parse_load_request(body).load == load
