"""Reading a `Pipeline` file: the YAML through `kernel.documents`, lookup tables inlined from files beside
it, the document validated against `streaming.spec` and then against what the planner checks across
transforms (types, order, functions), every problem reported as `file:LINE: field: reason`
(`kernel.errors.InvalidSpec`).

Reads the lookup-table files a spec names; no network, no engine, no clock.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kernel.documents import load_document, read_text
from kernel.errors import InvalidSpec
from streaming import plan
from streaming.spec import Pipeline


def _line_index(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines[(*path, key.value)] = key.start_mark.line + 1
            _line_index(value, (*path, key.value), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*path, i), lines)


def _locate(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> tuple[int, str]:
    """The deepest YAML line for a pydantic error location, skipping union tags the document lacks."""
    path: tuple[Any, ...] = ()
    for part in loc:
        if (*path, part) in lines:
            path = (*path, part)
    field = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")
    return lines.get(path, 1), field or "(document)"


def parse(text: str, file: str = "<string>", base_dir: Path | None = None) -> Pipeline:
    """Validate one Pipeline document; `InvalidSpec` lists `line N: field: reason` for each problem."""
    root, data = load_document(text, file)
    if not isinstance(data, dict):
        raise InvalidSpec(file, ["1: (document): expected a mapping with apiVersion, kind, metadata, spec"])
    lines: dict[tuple[Any, ...], int] = {}
    _line_index(root, (), lines)
    table_problems = _inline_tables(data, base_dir or Path.cwd())
    if table_problems:
        raise InvalidSpec(
            file, [f"{lines.get(p, 1)}: {_locate(p, lines)[1]}: {r}" for p, r in table_problems]
        )
    try:
        pipeline = Pipeline.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            line, field = _locate(tuple(error["loc"]), lines)
            if error["type"] == "missing" and error["loc"]:
                field = f"{field}.{error['loc'][-1]}" if field != "(document)" else str(error["loc"][-1])
            problems.append(f"{line}: {field}: {error['msg']}")
        raise InvalidSpec(file, problems) from exc
    # the planner checks what spans transforms (types, order, functions)
    problems = [
        f"{lines.get(p.path, 1)}: {_locate(p.path, lines)[1]}: {p.reason}" for p in plan.check(pipeline)
    ]
    if problems:
        raise InvalidSpec(file, problems)
    return pipeline


def _read_table(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".csv":
        with path.open(newline="") as handle:
            return [dict(row) for row in csv.DictReader(handle)]
    rows = json.loads(path.read_text())
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError("a JSON lookup table is a list of objects")
    return rows


def _inline_tables(data: dict[str, Any], base_dir: Path) -> list[tuple[tuple[Any, ...], str]]:
    """Replace each Enrich `table.file` by its rows (`inline`), so the plan and the rendered job carry
    the table itself; a file is read relative to the spec's directory."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    spec = data.get("spec")
    transforms = spec.get("transforms") if isinstance(spec, dict) else None
    for i, step in enumerate(transforms if isinstance(transforms, list) else []):
        table = step.get("table") if isinstance(step, dict) else None
        if not isinstance(table, dict) or not isinstance(table.get("file"), str) or "inline" in table:
            continue
        path = base_dir / table["file"]
        try:
            rows = _read_table(path)
        except (OSError, ValueError, csv.Error) as exc:
            problems.append((("spec", "transforms", i, "table", "file"), f"cannot read {path}: {exc}"))
            continue
        step["table"] = {"inline": rows}
    return problems


def load(path: Path | str) -> Pipeline:
    path = Path(path)
    return parse(read_text(path), str(path), path.parent)
