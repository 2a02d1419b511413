"""The documents in examples/jobs validate, and the pod groups there fit the example cluster."""

from pathlib import Path

import pytest

from jobs.explain import explain
from jobs.queues import QueuesSpec, default_registry
from jobs.snapshot import read_snapshot
from jobs.workload import read_pod_group
from kernel.documents import read_document

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "jobs"
GROUPS = sorted(
    p.name for p in EXAMPLES.glob("*.yaml") if p.name not in ("cluster-snapshot.yaml", "queues.yaml")
)


@pytest.mark.parametrize("name", GROUPS)
def test_each_example_pod_group_is_placed_whole_on_the_example_cluster(name: str) -> None:
    result = explain(read_pod_group(EXAMPLES / name), read_snapshot(EXAMPLES / "cluster-snapshot.yaml"))
    assert result.complete, "\n".join(result.lines())


def test_the_example_queue_config_builds() -> None:
    spec = read_document(EXAMPLES / "queues.yaml", QueuesSpec)
    assert [q.build().name for q in spec.queues] == ["research", "serve"]
    assert default_registry().build(spec.policy).name == "Capacity"
