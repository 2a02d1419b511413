"""Loading YAML or JSON documents into pydantic models, with errors that name file, line, field, reason.

Shared by every package that reads a document (pod groups, snapshots, node specs, …).

Validation happens once, here, at the edge; a failure raises `kernel.errors.InvalidSpec` whose lines
read `file:LINE: field.path: reason`. The base `Spec` model is what every edge model derives from:
frozen, unknown fields rejected, camelCase aliases.

Pure apart from `read_text` and `read_document`, which read one file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from kernel.errors import InvalidSpec

M = TypeVar("M", bound=BaseModel)


class Spec(BaseModel):
    """Base of the edge models: frozen, strict about unknown fields, camelCase in documents."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


def load_documents(text: str, source: str) -> list[tuple[yaml.Node, Any]]:
    """Every non-empty document of a (multi-document) YAML text with its composed node, for line numbers;
    InvalidSpec when the text is not YAML or holds no document."""
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        datas = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise InvalidSpec(
            source, [f"{line}: (document): not valid YAML: {getattr(e, 'problem', e)}"]
        ) from None
    docs = [(n, d) for n, d in zip(nodes, datas, strict=True) if d is not None]
    if not docs:
        raise InvalidSpec(source, ["1: (document): empty"])
    return docs


def documents_by_kind(
    docs: Sequence[tuple[yaml.Node, Any]],
    models: Mapping[str, type[M]],
    problems: list[str],
    known: Sequence[str] | None = None,
) -> Iterator[tuple[int, yaml.Node, dict[str, Any], str, type[M]]]:
    """Each document of `docs` (from `load_documents`) that is a mapping of a kind in `models`, as
    (index, node, data, the prefix its problems carry, its model); a document that is not a mapping, or of a
    kind not in `models`, adds its problem to `problems` instead. `known`: the kinds the message lists
    (default: `models`' keys)."""
    names = ", ".join(known if known is not None else models)
    for k, (node, data) in enumerate(docs):
        prefix = f"[document {k + 1}] " if len(docs) > 1 else ""
        if not isinstance(data, dict):
            problems.append(
                f"{node.start_mark.line + 1}: {prefix}(document): a mapping with apiVersion and kind, "
                f"not {type(data).__name__}"
            )
            continue
        kind = data.get("kind")
        model = models.get(str(kind))
        if model is None:
            problems.append(f"{line_of(node, ('kind',))}: {prefix}kind: no kind {kind!r} (known: {names})")
            continue
        yield k, node, data, prefix, model


def line_of(node: yaml.Node | None, path: tuple[str | int, ...]) -> int:
    """The 1-based line of the deepest node along `path` that exists in the composed document."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in path:
        if isinstance(node, yaml.MappingNode):
            nxt = next(
                (v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None
            )
            if nxt is None:
                # a missing field: point at the mapping that should hold it
                return line
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return line
        line = node.start_mark.line + 1
    return line


def _is_union_tag(part: str) -> bool:
    return part[:1].isupper() or "[" in part


def document_path(
    loc: Sequence[str | int], data: Any, is_tag: Callable[[str], bool] = _is_union_tag
) -> tuple[str | int, ...]:
    """The error location as a path in the document, without the union tags pydantic inserts."""
    out: list[str | int] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and part < len(cur):
            cur = cur[part]  # the index types differ, so mypy wants two branches
        elif isinstance(cur, dict) and isinstance(part, str) and is_tag(part):
            continue  # a discriminated-union tag such as `Gang`, not a key of the document
        else:
            cur = None
        out.append(part)
    return tuple(out)


def load_document(text: str, source: str) -> tuple[yaml.Node, Any]:
    """One YAML (or JSON) document with its composed node, for line numbers; InvalidSpec when the text is not
    YAML or holds nothing."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise InvalidSpec(
            source, [f"{line}: (document): not valid YAML: {getattr(e, 'problem', e)}"]
        ) from None
    if data is None or node is None:
        raise InvalidSpec(source, ["1: (document): empty"])
    return node, data


def parse_document(text: str, model: type[M], source: str) -> M:
    """Parse YAML (JSON is YAML) into `model`, or raise InvalidSpec naming line, field and reason."""
    node, data = load_document(text, source)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = document_path(err["loc"], data)
            field = ".".join(str(p) for p in loc) or "(document)"
            problems.append(f"{line_of(node, loc)}: {field}: {err['msg']}")
        raise InvalidSpec(source, problems) from None


def read_text(path: Path) -> str:
    """A document file's text; InvalidSpec naming the file when it is missing or cannot be read as UTF-8."""
    if not path.is_file():
        raise InvalidSpec(str(path), ["0: (document): file not found"])
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidSpec(str(path), [f"0: (document): cannot read: {e}"]) from None


def read_document(path: Path, model: type[M]) -> M:
    return parse_document(read_text(path), model, str(path))


def locate(text: str, path: tuple[str | int, ...]) -> int:
    """The 1-based line of `path` in a YAML document (0 when the text does not parse)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return 0
    return line_of(node, path)
