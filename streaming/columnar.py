"""The stateless prefix over a batch of records, one step at a time over the whole batch: what the engines'
vectorised UDFs (Flink's pandas UDF, Spark's Arrow batches) run.

`stateless.Processor.process` is the reference: one record through every step, with every failure named.
Per record it spends about half its time on the calls that carry the record from step to step (closures,
`try` frames, the result tuple). Here each step runs once per batch as one comprehension over its column,
so a record costs its steps' own work and little else.

Only the common path is taken here: a record that does anything else at any step (it is not UTF-8 text, not
one JSON object, a field has another type, a comparison or a function raises, the output cannot be written
as JSON, a route is missing or too long, the result may be over the size limit) leaves the batch and goes
through `Processor.process`, which decides what becomes of it (a dead letter with its reason, or whatever
else the reference does). So every record gets exactly what the reference gives it, byte for byte; the
tests compare the two on generated records and on every kind of failure.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import Any

from streaming import functions
from streaming.spec import AllOf, AnyOf, Comparison, Condition, Enrich, Filter, Map, NotOf, Project
from streaming.stateless import (
    COMPARE,
    FIELD_PREFIX,
    INT32,
    OUT,
    RESULT_COLUMNS,
    ROUTES_CACHED,
    SCAN_OBJECT,
    Processor,
    StepFailed,
    route_topic,
)

Columns = dict[str, list[Any]]
# A step over the batch: the columns it leaves, which rows it keeps (None: all) and the rows it could not
# take (they go through the reference).
Outcome = tuple[Columns, list[bool] | None, set[int]]
ColumnStep = Callable[[Columns, int], Outcome]

_LONG = (-(2**63), 2**63)


def each(function: Callable[[Any], Any], column: Iterable[Any]) -> tuple[list[Any], set[int]]:
    """`function` over `column`, and the positions where it raised (their value is None). One `map` when
    nothing raises, which is the common case; element by element only when something did."""
    values = column if isinstance(column, list) else list(column)
    try:
        out = list(map(function, values))
    except Exception:  # whatever it is, the reference decides what becomes of the record
        out = []
    if len(out) == len(values):  # shorter: a StopIteration `function` raised ended `map` early
        return out, set()
    out, failed = [], set()
    for i, v in enumerate(values):
        try:
            out.append(function(v))
        except Exception:
            out.append(None)
            failed.add(i)
    return out, failed


def _text(raw: Any) -> str:
    if type(raw) is bytes:
        return raw.decode("utf-8")
    if type(raw) is str:
        return raw
    raise TypeError(type(raw).__name__)  # None, bytearray, memoryview: the reference's own handling


def _document(text: str) -> dict[str, Any]:
    """One JSON object filling the text exactly (the scanner `stateless._parsed` tries first), or raise."""
    if text[:1] != "{":
        raise ValueError("not an object")
    document, end = SCAN_OBJECT(text, 0)
    if end != len(text):
        raise ValueError("trailing text")
    return document  # type: ignore[no-any-return]  # the scanner returns an object for "{"


def _types(kind: str, optional: bool) -> frozenset[type]:
    """The types a column of `kind` may hold as they are (`_typed` says which values)."""
    kinds: dict[str, tuple[type, ...]] = {
        "string": (str,),
        "long": (int,),
        "int": (int,),
        "double": (float, int),
        "boolean": (bool,),
    }
    return frozenset((*kinds[kind], *((type(None),) if optional else ())))


def _bounds(kind: str) -> tuple[int, int]:
    """The least integer a `long` or `int` column takes and the first it does not."""
    return (INT32[0], INT32[1] + 1) if kind == "int" else _LONG


def _fits(kind: str, optional: bool) -> Callable[[list[Any]], bool]:
    """Whether every value of a column fits (`_typed`), in C where it can be: the set of the column's types,
    and for integers their least and greatest."""
    types = _types(kind, optional)
    if kind not in ("long", "int"):
        return lambda column: set(map(type, column)) <= types
    low, high = _bounds(kind)

    def integers(column: list[Any]) -> bool:
        if not set(map(type, column)) <= types:
            return False
        values = [v for v in column if v is not None] if optional else column
        return not values or (low <= min(values) and max(values) < high)

    return integers


def _typed(kind: str, optional: bool) -> Callable[[Any], bool]:
    """Whether `stateless._coerce` takes a value as it is (an int for a `double` is made a float after)."""
    types = _types(kind, optional)
    if kind not in ("long", "int"):
        return lambda v: type(v) in types
    low, high = _bounds(kind)
    return lambda v: type(v) in types and (v is None or low <= v < high)


Mask = Callable[[Columns, int], tuple[list[bool], set[int]]]


def _mask(condition: Condition) -> Mask:
    """The condition over the batch: whether each row meets it, and the rows where evaluating it raised.
    Every part is evaluated for every row (the reference stops at the first part that decides), so a row
    that raises anywhere goes through the reference, which may never reach that part."""
    if isinstance(condition, (AllOf, AnyOf)):
        parts = [_mask(c) for c in (condition.all if isinstance(condition, AllOf) else condition.any)]
        combine = all if isinstance(condition, AllOf) else any

        def combined(columns: Columns, rows: int) -> tuple[list[bool], set[int]]:
            masks, failed = [], set()
            for part in parts:
                mask, bad = part(columns, rows)
                masks.append(mask)
                failed |= bad
            return [combine(row) for row in zip(*masks, strict=True)], failed

        return combined
    if isinstance(condition, NotOf):
        inner = _mask(condition.not_)

        def negated(columns: Columns, rows: int) -> tuple[list[bool], set[int]]:
            mask, failed = inner(columns, rows)
            return [not m for m in mask], failed

        return negated
    assert isinstance(condition, Comparison)
    field, op, operand = condition.field, condition.op, condition.value
    if op in ("is null", "not null"):
        null = op == "is null"

        def nulls(columns: Columns, rows: int) -> tuple[list[bool], set[int]]:
            column = columns.get(field)
            return ([null] * rows if column is None else [(v is None) is null for v in column]), set()

        return nulls
    compare = COMPARE[op]

    def compared(columns: Columns, rows: int) -> tuple[list[bool], set[int]]:
        column = columns.get(field)
        if column is None:
            return [False] * rows, set()
        # SQL-like: a comparison with a null is false
        return each(lambda v: v is not None and compare(v, operand), column)

    return compared


def _step(step: Filter | Project | Map | Enrich) -> ColumnStep:
    if isinstance(step, Filter):
        mask = _mask(step.condition)

        def filtered(columns: Columns, rows: int) -> Outcome:
            kept, failed = mask(columns, rows)
            return columns, kept, failed

        return filtered
    if isinstance(step, Project):
        pairs = tuple(step.fields.items())

        def projected(columns: Columns, rows: int) -> Outcome:
            return {out: columns[src] if src in columns else [None] * rows for out, src in pairs}, None, set()

        return projected
    if isinstance(step, Map):
        function = functions.registered(step.function).function
        args, params, output = tuple(step.args), dict(step.params), step.output

        def mapped(columns: Columns, rows: int) -> Outcome:
            inputs = [columns[a] if a in columns else [None] * rows for a in args]
            if len(inputs) == 1 and not params:
                values, failed = each(function, inputs[0])
            else:
                arguments = zip(*inputs, strict=True) if inputs else [()] * rows
                values, failed = each(lambda row: function(*row, **params), arguments)
            return {**columns, output: values}, None, failed

        return mapped
    table: dict[Any, dict[str, Any]] = {}
    for row in step.table.inline or []:
        table.setdefault(row.get(step.key), row)
    key, fields = step.key, tuple(step.fields)

    def enriched(columns: Columns, rows: int) -> Outcome:
        keys = columns[key] if key in columns else [None] * rows
        found, failed = each(table.get, keys)  # an unhashable key raises here as in the reference
        added = {f: [r.get(f) if r is not None else None for r in found] for f in fields}
        return {**columns, **added}, None, failed

    return enriched


def _keep(columns: Columns, positions: list[int], kept: list[bool]) -> tuple[Columns, list[int]]:
    """The rows where `kept` is true: each column compressed, and their positions in the batch."""
    return {name: [v for v, k in zip(column, kept, strict=True) if k] for name, column in columns.items()}, [
        p for p, k in zip(positions, kept, strict=True) if k
    ]


class BatchProcessor:
    """`Processor.process` over a batch, column by column (module docstring); built once per worker."""

    def __init__(self, processor: Processor) -> None:
        self.reference = processor
        plan = processor.plan
        self._schema = [
            (name, kind, _fits(kind, optional), _typed(kind, optional))
            for name, kind, optional in processor.schema
        ]
        self._steps = [_step(step) for step in plan.stateless]
        self._fields = [name for name, _ in plan.fields]
        self._typed = self._fields if plan.stateful else []

    def columns(self, raws: Sequence[Any]) -> dict[str, list[Any]]:
        """`kind`, `topic`, `key`, `value` and, for a stateful plan, one typed column per field of
        `plan.fields` (null unless `out`): what `Processor.process` gives each record, in order. A filtered
        record is null in every column."""
        n = len(raws)
        slow: set[int] = set()  # positions in the batch the reference takes
        positions = list(range(n))  # the batch position of each row still here

        def leave(failed: set[int], kept: list[bool] | None) -> list[bool] | None:
            """The rows that failed (by row) leave for the reference: `kept` without them."""
            if not failed:
                return kept
            slow.update(positions[i] for i in failed)
            mask = [True] * len(positions) if kept is None else list(kept)
            for i in failed:
                mask[i] = False
            return mask

        texts, failed = each(_text, raws)
        documents, misread = each(_document, texts)
        kept = leave(failed | misread, None)
        if kept is not None:
            documents = [d if d is not None else {} for d in documents]
        columns: Columns = {}
        for name, kind, fits_all, fits in self._schema:
            column = list(map(dict.get, documents, repeat(name)))
            if not fits_all(column):
                kept = leave({i for i, v in enumerate(column) if not fits(v)}, kept)
            if kind == "double" and int in set(map(type, column)):
                column = [float(v) if type(v) is int else v for v in column]
            columns[name] = column
        if kept is not None and not all(kept):
            columns, positions = _keep(columns, positions, kept)
        for step in self._steps:
            columns, kept, failed = step(columns, len(positions))
            kept = leave(failed, kept)
            if kept is not None and not all(kept):  # a filtered row stays null in every column
                columns, positions = _keep(columns, positions, kept)
        rows = len(positions)
        topics, keys, values, failed = self._written(columns, rows)
        written = dict(zip(RESULT_COLUMNS, ([OUT] * rows, topics, keys, values), strict=True))
        written |= {FIELD_PREFIX + f: columns.get(f, [None] * rows) for f in self._typed}
        if not slow and not failed and rows == n:  # the common batch: every record written, in order
            return written
        for i in failed:
            slow.add(positions[i])
        result: dict[str, list[Any]] = {name: [None] * n for name in written}  # a filtered record: all null
        for name, column in written.items():
            target = result[name]
            for i, at in enumerate(positions):
                if i not in failed:
                    target[at] = column[i]
        for at in sorted(slow):
            reference = self.reference.process(raws[at])
            for name, value in zip(RESULT_COLUMNS, reference[:4], strict=True):
                result[name][at] = value
            record = reference.record or {}
            for name in self._typed:
                result[FIELD_PREFIX + name][at] = record.get(name)
        return result

    def _written(self, columns: Columns, rows: int) -> tuple[list[Any], list[Any], list[Any], set[int]]:
        """Each row's topic, key and JSON text, and the rows the reference must take: a value that is not
        JSON, a route that is not a string or names no topic, a result that may be over the size limit."""
        p = self.reference
        fields = self._fields
        missing = [None] * rows
        inputs = [columns.get(f, missing) for f in fields]
        outputs = list(map(dict, map(zip, repeat(fields), zip(*inputs, strict=True))))
        if not fields:
            outputs = [{} for _ in range(rows)]
        encode, markers = p.encode, p.markers

        def written(output: dict[str, Any]) -> str:
            try:
                return "".join(encode(output, 0))
            except Exception:
                markers.clear()  # what the failed call left, as `Processor._process` clears it
                raise

        try:
            values = list(map("".join, map(encode, outputs, repeat(0))))
        except Exception:  # a value that is not JSON: row by row below, the failed ones to the reference
            markers.clear()
            values = []
        failed: set[int] = set()
        if len(values) != rows:
            values, failed = each(written, outputs)
        topic = p.plan.sink.topic
        topics: list[str | None] = [topic] * rows
        if p.route_by is not None:
            routes = columns.get(p.route_by, missing)
            named = p.topics
            # a route the processor has not named yet is named (and kept) here; one that is not a string, or
            # whose topic cannot be named, goes through the reference
            for route in {r for r in routes if type(r) is str} - named.keys():
                try:
                    name = route_topic(topic, route)
                except StepFailed:
                    continue
                if len(named) < ROUTES_CACHED:
                    named[route] = name
            if set(map(type, routes)) <= {str}:
                topics = list(map(named.get, routes))
            else:
                topics = [named.get(r) if type(r) is str else None for r in routes]
            if None in topics:
                failed |= {i for i, t in enumerate(topics) if t is None}
        keys: list[Any] = missing
        if p.key_field is not None:
            keys = columns.get(p.key_field, missing)
            if not set(map(type, keys)) <= {str}:
                keys = [None if k is None else str(k) for k in keys]
        # characters take at most 4 UTF-8 bytes: the reference measures a row that might be over the limit
        limit = p.limit
        failed |= {
            i
            for i, (v, k) in enumerate(zip(values, keys, strict=True))
            if v is not None and (len(v) + (len(k) if k else 0)) * 4 > limit
        }
        return topics, keys, values, failed
