"""Guard tests for the chart: its values validate against its schema and every value is documented."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "tidescale"


def test_the_default_values_validate_against_the_values_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.validate(values, schema)


def test_every_top_level_value_is_documented_by_a_comment_starting_with_its_name() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    keys = [(i, m.group(1)) for i, line in enumerate(lines) if (m := re.match(r"^([a-zA-Z]\w*):", line))]
    assert keys
    for index, key in keys:
        assert index > 0
        assert lines[index - 1].startswith(f"# {key} "), (
            f"values.yaml: {key} has no comment starting with its name"
        )


def test_an_unknown_value_is_refused_by_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text()) | {"replicas": 2}
    try:
        jsonschema.validate(values, schema)
    except jsonschema.ValidationError as error:
        assert "replicas" in error.message
    else:
        raise AssertionError("an unknown top-level value passed the schema")
