"""Pipeline documents: the examples validate; every mistake is reported with its file, line, field and
reason; lookup-table files are read into the spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.errors import InvalidSpec
from streaming import pipeline_file, spec
from streaming.spec import duration_ms

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"

VALID = """\
apiVersion: tidescale.io/v1alpha1
kind: Pipeline
metadata: {name: p}
spec:
  source:
    topic: in
    group: g
    schema: {id: string, n: long, ts: long}
  transforms:
    - type: Filter
      condition: {field: n, op: ">", value: 0}
  sink: {topic: out, key: id}
  deadLetter: {topic: dlq}
"""


def with_change(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new)


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_pipeline_validates(example: str) -> None:
    assert pipeline_file.load(EXAMPLES / example).kind == "Pipeline"


@pytest.mark.parametrize(
    ("text", "line", "field", "reason"),
    [
        pytest.param(
            with_change("kind: Pipeline", "kind: Pipe"), 2, "kind", "Input should be 'Pipeline'", id="kind"
        ),
        pytest.param(
            with_change("n: long", "n: integer"), 8, "spec.source.schema", "unknown type 'integer'", id="type"
        ),
        pytest.param(
            with_change('op: ">"', 'op: "~"'),
            11,
            "spec.transforms[0].condition.op",
            "Input should be",
            id="operator",
        ),
        pytest.param(
            with_change("field: n,", "field: m,"),
            11,
            "spec.transforms[0].condition",
            "no field 'm'",
            id="field",
        ),
        pytest.param(
            with_change("key: id}", "key: nope}"), 12, "spec.sink.key", "no field 'nope'", id="sink-key"
        ),
        pytest.param(with_change("  deadLetter: {topic: dlq}\n", ""), 5, "spec", "deadLetter", id="no-dlq"),
        pytest.param(
            with_change("group: g", "group: g\n    extra: 1"),
            8,
            "spec.source.extra",
            "Extra inputs",
            id="extra",
        ),
        pytest.param(
            with_change(
                '    - type: Filter\n      condition: {field: n, op: ">", value: 0}',
                "    - type: Map\n      function: nope\n      args: [id]\n      output: x",
            ),
            11,
            "spec.transforms[0].function",
            "no function 'nope'",
            id="function",
        ),
        pytest.param(
            with_change(
                '    - type: Filter\n      condition: {field: n, op: ">", value: 0}',
                "    - type: Window\n      kind: tumbling\n      size: 10s\n"
                "      aggregates: [{name: c, fn: count}]",
            ),
            10,
            "spec.transforms[0].type",
            "needs spec.source.eventTime",
            id="window-without-event-time",
        ),
        pytest.param(
            with_change(
                '    - type: Filter\n      condition: {field: n, op: ">", value: 0}',
                "    - type: Dedupe\n      key: [id]\n"
                '    - type: Filter\n      condition: {field: n, op: ">", value: 0}',
            ),
            12,
            "spec.transforms[1].type",
            "stateless steps come first",
            id="order",
        ),
    ],
)
def test_a_mistake_is_reported_with_its_file_line_field_and_reason(
    text: str, line: int, field: str, reason: str
) -> None:
    with pytest.raises(InvalidSpec) as raised:
        pipeline_file.parse(text, "p.yaml")
    message = str(raised.value)
    assert f"p.yaml:{line}: {field}" in message, message
    assert reason in message


def test_a_lookup_table_file_is_read_into_the_spec_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "models.json").write_text('[{"model": "a", "tier": "small"}]')
    text = with_change(
        '    - type: Filter\n      condition: {field: n, op: ">", value: 0}',
        "    - type: Enrich\n      table: {file: models.json}\n      key: model\n      fields: [tier]",
    ).replace("schema: {id: string", "schema: {id: string, model: string")
    (tmp_path / "p.yaml").write_text(text)
    enrich = pipeline_file.load(tmp_path / "p.yaml").spec.transforms[0]
    assert isinstance(enrich, spec.Enrich)
    assert enrich.table.inline == [{"model": "a", "tier": "small"}]


def test_a_missing_lookup_file_names_its_line(tmp_path: Path) -> None:
    text = with_change(
        '    - type: Filter\n      condition: {field: n, op: ">", value: 0}',
        "    - type: Enrich\n      table: {file: gone.csv}\n      key: id\n      fields: [tier]",
    )
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(InvalidSpec, match=r"p.yaml:11: spec.transforms\[0\].table.file: cannot read"):
        pipeline_file.load(tmp_path / "p.yaml")


@pytest.mark.parametrize(
    ("text", "ms"),
    [("500ms", 500), ("10s", 10_000), ("5m", 300_000), ("1h", 3_600_000), (250, 250)],
    ids=["ms", "s", "m", "h", "int"],
)
def test_durations_are_read_in_milliseconds(text: str | int, ms: int) -> None:
    assert duration_ms(text) == ms


def test_invalid_yaml_is_an_invalid_spec_with_a_line() -> None:
    with pytest.raises(InvalidSpec, match=r"p.yaml:\d+: \(document\): not valid YAML"):
        pipeline_file.parse("a: [1, 2\nb: 3\n", "p.yaml")
