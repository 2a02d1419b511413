import json
from pathlib import Path

import pytest

from jobs.explain import describe, explain
from jobs.snapshot import parse_snapshot
from jobs.workload import parse_pod_group
from tests.jobs.jobs_builders import SNAPSHOT
from tidescale.cli import main

GROUP = """\
metadata: {name: infer}
spec:
  placement: {type: Gang, inner: {type: Topology, key: zone, mode: soft, inner: {type: FGD}}}
  tasks:
    - name: server
      replicas: {replicas}
      requests: {cpu: "4", memory: 8Gi, nvidia.com/gpu: 1}
      tolerations: [{key: gpu, value: reserved, effect: NoSchedule}]
"""


def group(replicas: int) -> str:
    return GROUP.replace("{replicas}", str(replicas))


def test_explain_lists_where_each_pod_goes_with_devices_and_score() -> None:
    result = explain(parse_pod_group(group(2)), parse_snapshot(SNAPSHOT))
    lines = result.lines()
    assert lines[0] == (
        "pod group default/infer: 2 pods, queue default, priority 0,"
        " placement Gang(Topology(zone, soft, FGD))"
    )
    assert lines[1] == "  placed 2 of 2 pods"
    assert lines[2].startswith("  infer-server-0 -> a100-0 (gpu ")
    assert result.complete


def test_explain_says_why_not_with_counted_reasons() -> None:
    result = explain(parse_pod_group(group(9)), parse_snapshot(SNAPSHOT))
    assert not result.complete
    assert result.lines()[1].startswith(
        "  unschedulable: gang infer needs 9 of 9 pods placed together, only 8 fit"
    )
    assert "1 node: insufficient nvidia.com/gpu" in result.lines()[1]


def test_explain_leaves_the_snapshot_untouched() -> None:
    state = parse_snapshot(SNAPSHOT)
    explain(parse_pod_group(group(2)), state)
    assert len(state.bound) == 2


def test_describe_renders_nested_placements() -> None:
    assert describe(parse_pod_group(group(1)).placement) == "Gang(Topology(zone, soft, FGD))"


@pytest.mark.parametrize(("replicas", "code"), [(2, 0), (9, 1)], ids=["fits", "does-not-fit"])
def test_the_explain_command_prints_and_exits_by_outcome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], replicas: int, code: int
) -> None:
    (tmp_path / "g.yaml").write_text(group(replicas), encoding="utf-8")
    (tmp_path / "s.yaml").write_text(SNAPSHOT, encoding="utf-8")
    assert (
        main(["jobs", "explain", str(tmp_path / "g.yaml"), "--snapshot", str(tmp_path / "s.yaml"), "--json"])
        == code
    )
    out = json.loads(capsys.readouterr().out)
    assert out["group"] == "default/infer" and out["pods"] == replicas


def test_the_explain_command_reports_invalid_input_by_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "g.yaml").write_text(
        group(1).replace("key: zone", "key: zone\n      spin: 3"), encoding="utf-8"
    )
    (tmp_path / "s.yaml").write_text(SNAPSHOT, encoding="utf-8")
    assert main(["jobs", "explain", str(tmp_path / "g.yaml"), "--snapshot", str(tmp_path / "s.yaml")]) == 2
    assert "g.yaml:" in capsys.readouterr().err
