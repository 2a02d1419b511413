"""The stateless prefix of a plan as one plain Python function: raw Kafka value → output or dead letter.

`Processor.process(raw)` parses the JSON against the declared schema, runs Filter, Project, Map and
Enrich in order, and returns where the record goes: the sink (with its topic and key), the dead-letter
topic (with the reason, the step and the original record), or nowhere (filtered out). It is the reference:
the Python engine runs it record by record, and the JVM engines' vectorised UDFs run its batch form
(`streaming.columnar`), which gives every record what this gives it, so all engines agree record for record
and byte for byte.

Pure: no I/O, no engine, no clock; conditions are evaluated by walking the spec's condition tree —
never `eval`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from streaming import functions
from streaming.plan import Plan
from streaming.spec import (
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    Enrich,
    Filter,
    Map,
    NotOf,
    Project,
    field_type,
)

RESULT_COLUMNS = ("kind", "topic", "key", "value")
FIELD_PREFIX = "f_"  # typed field columns are prefixed so a field named `key` or `value` cannot clash
OUT = "out"
DEAD = "dead"
_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
MAX_TOPIC_LENGTH = 249  # Kafka refuses longer topic names
_JSON_ESCAPE_BYTES = 6  # the most one character can take in JSON (a control character as \\u00XX)
INT32 = (-(2**31), 2**31 - 1)


class Result(NamedTuple):
    """`kind` is `out`, `dead` or None (filtered out); `value` is the JSON text to write. A tuple: one is
    built per record, and a tuple is built several times faster than a frozen dataclass."""

    kind: str | None
    topic: str | None = None
    key: str | None = None
    value: str | None = None
    record: dict[str, Any] | None = None  # the output fields, typed (what stateful steps consume)


DROPPED = Result(None)


class StepFailed(Exception):
    """A record failed a step; becomes a dead letter naming the step and the reason."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason


def route_topic(base: str, value: Any) -> str:
    """`<base>.<value>`, with characters Kafka refuses in topic names replaced by `_`; StepFailed when the
    name would be longer than Kafka allows."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    topic = f"{base}.{_TOPIC_UNSAFE.sub('_', text)}"
    if len(topic) > MAX_TOPIC_LENGTH:
        raise StepFailed(
            "route", f"topic {topic[:60]}… would be {len(topic)} characters (Kafka allows {MAX_TOPIC_LENGTH})"
        )
    return topic


def _coerce(name: str, kind: str, optional: bool, value: Any) -> Any:
    if value is None:
        if optional:
            return None
        raise StepFailed("parse", f"field {name!r} is missing or null")
    if kind == "string" and isinstance(value, str):
        return value
    if kind in ("long", "int") and isinstance(value, int) and not isinstance(value, bool):
        if kind == "int" and not INT32[0] <= value <= INT32[1]:
            raise StepFailed("parse", f"field {name!r}: {value} does not fit an int")
        if not -(2**63) <= value < 2**63:
            raise StepFailed("parse", f"field {name!r}: {value} does not fit a long")
        return value
    if kind == "double" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "boolean" and isinstance(value, bool):
        return value
    raise StepFailed("parse", f"field {name!r}: expected {kind}, got {type(value).__name__} {value!r:.40}")


COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: bool(a == b),
    "!=": lambda a, b: bool(a != b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
    "in": lambda a, b: a in b,
    "not in": lambda a, b: a not in b,
    "contains": lambda a, b: str(b) in str(a),
    "startswith": lambda a, b: str(a).startswith(str(b)),
}


Predicate = Callable[[dict[str, Any]], bool]


def predicate(condition: Condition) -> Predicate:
    """The condition as a function of the record, built once per plan (the tree is walked here, not per
    record). SQL-like: a comparison with a null field is false (only `is null` / `not null` test nulls)."""
    if isinstance(condition, AllOf):
        every = tuple(predicate(c) for c in condition.all)
        return lambda record: all(p(record) for p in every)
    if isinstance(condition, AnyOf):
        some = tuple(predicate(c) for c in condition.any)
        return lambda record: any(p(record) for p in some)
    if isinstance(condition, NotOf):
        inner = predicate(condition.not_)
        return lambda record: not inner(record)
    assert isinstance(condition, Comparison)
    field, op, operand = condition.field, condition.op, condition.value
    if op == "is null":
        return lambda record: record.get(field) is None
    if op == "not null":
        return lambda record: record.get(field) is not None
    compare = COMPARE[op]

    def compared(record: dict[str, Any]) -> bool:
        value = record.get(field)
        if value is None:
            return False
        try:
            return compare(value, operand)
        except TypeError as exc:
            raise StepFailed("Filter", f"cannot compare {field!r} {op} {operand!r}: {exc}") from exc

    return compared


def holds(condition: Condition, record: dict[str, Any]) -> bool:
    """Whether `record` meets `condition` (`predicate`, once)."""
    return predicate(condition)(record)


def _step_name(index: int, step: Filter | Project | Map | Enrich) -> str:
    label = step.name or (step.function if isinstance(step, Map) else None)
    return f"{step.type}[{index}]" + (f" {label}" if label else "")


Step = Callable[[dict[str, Any]], "dict[str, Any] | None"]
# One encoder for every record (json.dumps with options builds a new one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _compiled(index: int, step: Filter | Project | Map | Enrich) -> Step:
    """One transform as a function of the record: the record it leaves (None: filtered out), or
    `StepFailed` naming the step. Built once per plan, so the per-record path does no dispatch."""
    name = _step_name(index, step)
    if isinstance(step, Filter):
        kept = predicate(step.condition)

        def filtered(record: dict[str, Any]) -> dict[str, Any] | None:
            try:
                return record if kept(record) else None
            except StepFailed as failure:
                raise StepFailed(name, failure.reason) from None

        return filtered
    if isinstance(step, Project):
        pairs = tuple(step.fields.items())

        def projected(record: dict[str, Any]) -> dict[str, Any]:
            return {out: record.get(src) for out, src in pairs}

        return projected
    if isinstance(step, Map):
        function = functions.registered(step.function).function
        args, params, output = tuple(step.args), dict(step.params), step.output
        if len(args) == 1 and not params:
            (arg,) = args

            # The usual shape (one field, no keyword parameters), called without building arguments.
            def mapped_one(record: dict[str, Any]) -> dict[str, Any]:
                try:
                    record[output] = function(record.get(arg))
                except Exception as exc:  # a user function may fail in any way: that record is a dead letter
                    raise StepFailed(name, f"{type(exc).__name__}: {exc}") from exc
                return record

            return mapped_one

        def mapped(record: dict[str, Any]) -> dict[str, Any]:
            try:
                record[output] = function(*[record.get(a) for a in args], **params)
            except Exception as exc:  # a user function may fail in any way: that record is a dead letter
                raise StepFailed(name, f"{type(exc).__name__}: {exc}") from exc
            return record

        return mapped
    # The first row wins for a repeated key, as a dict built in order would keep the last.
    table: dict[Any, dict[str, Any]] = {}
    for row in step.table.inline or []:
        table.setdefault(row.get(step.key), row)
    key, fields = step.key, tuple(step.fields)

    def enriched(record: dict[str, Any]) -> dict[str, Any]:
        row = table.get(record.get(key))
        for field in fields:
            record[field] = row.get(field) if row is not None else None
        return record

    return enriched


ROUTES_CACHED = 4096  # the most routeBy values a processor keeps the topic of
# The C scanner `json.loads` ends in, called without its Python layers (bytes sniffing, two whitespace
# matches, an error-wrapping frame): ≈ 2 µs of the ≈ 28 µs a record takes in the example pipeline.
SCAN_OBJECT: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _parsed(text: str) -> Any:
    """`json.loads(text)`, or StepFailed: a text that is one JSON object exactly, as every record of a JSON
    source is, goes straight to the scanner; anything else (surrounding whitespace, an error) through
    `json.loads` itself, so values and messages are its own."""
    if text[:1] == "{":
        try:
            document, end = SCAN_OBJECT(text, 0)
        except (ValueError, StopIteration, RecursionError):
            pass
        else:
            if end == len(text):
                return document
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise StepFailed("parse", f"not JSON: {exc}") from exc


def _encoder(markers: dict[int, Any]) -> Callable[[Any, int], Sequence[str]]:
    """`_ENCODER`'s one-shot C encoder (what its `encode` builds per call), kept: called with a value and 0 it
    returns the chunks of `_ENCODER.encode(value)`. `markers` finds circular references."""
    make = json.encoder.c_make_encoder  # type: ignore[attr-defined]
    if make is None:  # an interpreter without the C accelerator
        return lambda value, _level: (_ENCODER.encode(value),)
    e = _ENCODER
    return make(  # type: ignore[no-any-return]
        markers,
        e.default,
        json.encoder.encode_basestring,
        e.indent,
        e.key_separator,
        e.item_separator,
        e.sort_keys,
        e.skipkeys,
        e.allow_nan,
    )


class Processor:
    """The compiled stateless prefix of one plan."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.schema = [(name, *field_type(declared)) for name, declared in plan.source.schema_.items()]
        self._fields = [name for name, _ in plan.fields]
        self._steps = [_compiled(i, step) for i, step in enumerate(plan.stateless)]
        # Routing and keys apply here only when nothing stateful follows; otherwise the engine applies
        # them to what the Window/Dedupe emits.
        self.route_by = None if plan.stateful else plan.sink.route_by
        self.key_field = None if plan.stateful else plan.sink.key
        self.limit = plan.delivery.max_record_bytes
        self.topics: dict[str, str] = {}
        # `_ENCODER.encode` without building its C encoder anew for every record (≈ 1 µs of ≈ 3).
        self.markers: dict[int, Any] = {}
        self.encode = _encoder(self.markers)

    def process(self, raw: bytes | str | None) -> Result:
        try:
            return self._process(raw)
        except StepFailed as failure:
            return self.dead_letter(raw, failure.step, failure.reason)

    def _process(self, raw: bytes | str | None) -> Result:
        if raw is None:
            raise StepFailed("parse", "record has no value")
        try:
            text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray, memoryview)) else raw
        except UnicodeDecodeError as exc:
            raise StepFailed("parse", f"not UTF-8: {exc.reason} at byte {exc.start}") from exc
        document = _parsed(text)
        if not isinstance(document, dict):
            raise StepFailed("parse", f"not a JSON object but {type(document).__name__}")
        record = {}
        for name, kind, optional in self.schema:
            value = document.get(name)
            # The common case first: a string where a string is declared needs no checks.
            record[name] = (
                value if kind == "string" and type(value) is str else _coerce(name, kind, optional, value)
            )
        for step in self._steps:
            stepped = step(record)
            if stepped is None:
                return DROPPED
            record = stepped
        output = {name: record.get(name) for name in self._fields}
        try:
            value = "".join(self.encode(output, 0))
        except (TypeError, ValueError) as exc:
            self.markers.clear()  # what the failed call left (`json` starts each call with new ones)
            raise StepFailed("serialise", f"output is not JSON: {exc}") from exc
        topic = self.plan.sink.topic
        if self.route_by is not None:
            route = output.get(self.route_by)
            if route is None:
                raise StepFailed("route", f"routeBy field {self.route_by!r} is null")
            # A route's topic is cached by its text (only a str: 1 and True are equal keys but other topics).
            cached = self.topics.get(route) if type(route) is str else None
            if cached is None:
                cached = route_topic(topic, route)
                if type(route) is str and len(self.topics) < ROUTES_CACHED:
                    self.topics[route] = cached
            topic = cached
        raw_key = output.get(self.key_field) if self.key_field is not None else None
        key = None if raw_key is None else str(raw_key)
        size = len(value) + (len(key) if key else 0)
        # characters are at most 4 UTF-8 bytes: only a record that might be over the limit is encoded
        if size * 4 > self.limit:
            size = len(value.encode("utf-8")) + (len(key.encode("utf-8")) if key else 0)
            if size > self.limit:
                raise StepFailed("size", f"result of {size} bytes is over the limit of {self.limit}")
        return Result(OUT, topic, key, value, output)

    def dead_letter(self, raw: bytes | str | None, step: str, reason: str) -> Result:
        """The original record (as text, or base64 when it is not UTF-8), the step and the reason."""
        letter: dict[str, Any] = {"pipeline": self.plan.name, "step": step, "reason": reason}
        if isinstance(raw, (bytes, bytearray, memoryview)):
            data = bytes(raw)
            try:
                letter["record"] = data.decode("utf-8")
            except UnicodeDecodeError:
                letter["recordBase64"] = base64.b64encode(data).decode("ascii")
        else:
            letter["record"] = raw
        text = json.dumps(letter, ensure_ascii=False)
        if len(text) * 4 > self.limit and len(text.encode("utf-8")) > self.limit:
            text = self._shortened(letter, raw)
        return Result(DEAD, self.plan.dead_letter.topic, None, text)

    def _shortened(self, letter: dict[str, Any], raw: bytes | str | None) -> str:
        """A dead letter within the size limit: the record's prefix, its size and its SHA-256 (the whole
        record cannot be written to Kafka)."""
        data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw or b"")
        field = "record" if "record" in letter else "recordBase64"
        room = (self.limit - 1024) // _JSON_ESCAPE_BYTES  # characters that fit, whatever they are
        short = {k: v for k, v in letter.items() if k not in ("record", "recordBase64")}
        short[field] = str(letter[field])[:room]
        digest = hashlib.sha256(data).hexdigest()
        short |= {"truncated": True, "recordBytes": len(data), "recordSha256": digest}
        return json.dumps(short, ensure_ascii=False)


def processor(plan: Plan) -> Processor:
    return Processor(plan)


def process_all(plan: Plan, raws: Sequence[bytes | str | None]) -> list[Result]:
    compiled = Processor(plan)
    return [compiled.process(raw) for raw in raws]
