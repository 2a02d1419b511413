import pytest

from jobs.workload import GangSpec, TopologySpec, parse_pod_group
from kernel.errors import InvalidSpec

GROUP = """\
apiVersion: tidescale.io/v1alpha1
kind: PodGroup
metadata: {name: train, namespace: ml}
spec:
  queue: research
  priority: 10
  placement:
    type: Gang
    minMember: 3
    inner: {type: Topology, key: rack, mode: hard}
  tasks:
    - name: worker
      replicas: 4
      requests: {cpu: "8", memory: 32Gi, nvidia.com/gpu: 2}
      tolerations: [{key: gpu, operator: Exists}]
      nodeSelector: {pool: a100}
"""


def test_a_pod_group_expands_tasks_into_named_pods_with_their_requests() -> None:
    g = parse_pod_group(GROUP)
    assert (g.name, g.namespace, g.queue, g.priority) == ("train", "ml", "research", 10)
    assert [p.name for p in g.pods] == [f"train-worker-{i}" for i in range(4)]
    pod = g.pods[0]
    assert pod.request.devices.gpu is not None and pod.request.devices.gpu.count == 2
    assert pod.node_selector == {"pool": "a100"}
    assert pod.tolerations[0].operator == "Exists"


def test_placement_specs_nest_and_default_their_inner_policy() -> None:
    placement = parse_pod_group(GROUP).placement
    assert isinstance(placement, GangSpec) and placement.min_member == 3
    assert isinstance(placement.inner, TopologySpec) and placement.inner.inner.type == "Binpack"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("type: Gang", "type: Gangs"),
            "group.yaml:8: spec.placement: Input tag 'Gangs' found using 'type' does not match",
        ),
        (
            ("mode: hard", "mode: strict"),
            "group.yaml:10: spec.placement.inner.mode: Input should be 'hard' or 'soft'",
        ),
        (
            ("replicas: 4", "replicas: 0"),
            "group.yaml:13: spec.tasks.0.replicas: Input should be greater than or equal to 1",
        ),
        (
            ("nvidia.com/gpu: 2}", "nvidia.com/gpucores: 200}"),
            "group.yaml:12: spec.tasks.0: Value error, nvidia.com/gpucores:",
        ),
        (
            ("priority: 10", "priority: 10\n  colour: blue"),
            "group.yaml:7: spec.colour: Extra inputs are not permitted",
        ),
    ],
    ids=["unknown-placement-type", "bad-mode", "no-replicas", "untranslatable-request", "unknown-field"],
)
def test_pod_group_errors_name_file_line_field_and_reason(edit: tuple[str, str], expected: str) -> None:
    with pytest.raises(InvalidSpec) as e:
        parse_pod_group(GROUP.replace(*edit), "group.yaml")
    assert str(e.value).startswith(expected), str(e.value)


def test_task_names_must_be_unique() -> None:
    text = GROUP + '    - {name: worker, requests: {cpu: "1"}}\n'
    with pytest.raises(InvalidSpec, match="task names must be unique: worker"):
        parse_pod_group(text, "group.yaml")
