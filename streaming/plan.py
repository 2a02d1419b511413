"""The planner: a validated `Pipeline` → the `Plan` every engine executes the same way.

A plan has two halves. The stateless prefix (parse against the schema, Filter, Project, Map, Enrich)
becomes one plain Python function (`streaming.stateless`) that each engine runs as a vectorised UDF
over the raw Kafka value, so both engines give byte-identical records and dead letters. The stateful
suffix (at most one Dedupe, then at most one Window) is expressed in each engine's own SQL/DataFrame
API over the typed fields the prefix emits.

Pure: values in, values out; no I/O, no engine, no clock. `check` returns every problem that spans
transforms (unknown fields and functions, order, types) with its document path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streaming import functions
from streaming.spec import (
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    DeadLetter,
    Dedupe,
    Delivery,
    Enrich,
    Filter,
    Map,
    NotOf,
    Pipeline,
    Project,
    Resources,
    Scheduling,
    Sink,
    Source,
    Window,
    field_type,
)

Stateless = Filter | Project | Map | Enrich

# The fields a window adds to its output, beside the group-by keys and the aggregates.
WINDOW_START = "windowStart"
WINDOW_END = "windowEnd"


@dataclass(frozen=True)
class Problem:
    path: tuple[Any, ...]
    reason: str


@dataclass(frozen=True)
class Plan:
    """What an engine runs. `fields` are the (name, type) the stateless prefix emits, in order;
    `output_fields` what reaches the sink after the stateful steps."""

    name: str
    source: Source
    stateless: tuple[Stateless, ...]
    fields: tuple[tuple[str, str], ...]
    dedupe: Dedupe | None
    window: Window | None
    output_fields: tuple[tuple[str, str], ...]
    sink: Sink
    dead_letter: DeadLetter
    delivery: Delivery
    parallelism: int
    resources: Resources
    scheduling: Scheduling
    image: str | None
    namespace: str | None

    @property
    def stateful(self) -> bool:
        return self.dedupe is not None or self.window is not None

    def output_type(self, name: str) -> str:
        return dict(self.output_fields)[name]


def _condition_fields(condition: Condition) -> list[str]:
    if isinstance(condition, Comparison):
        return [condition.field]
    if isinstance(condition, AllOf):
        return [f for c in condition.all for f in _condition_fields(c)]
    if isinstance(condition, AnyOf):
        return [f for c in condition.any for f in _condition_fields(c)]
    assert isinstance(condition, NotOf)
    return _condition_fields(condition.not_)


def _aggregate_type(fn: str, input_type: str | None) -> str:
    if fn == "count":
        return "long"
    if fn == "avg":
        return "double"
    if fn == "sum":
        return "double" if input_type == "double" else "long"
    return input_type or "long"


def _walk(pipeline: Pipeline) -> tuple[list[Problem], list[tuple[str, str]], list[tuple[str, str]]]:
    """Follow the field types through the transforms; (problems, stateless fields, output fields)."""
    spec = pipeline.spec
    problems: list[Problem] = []
    fields: dict[str, str] = {n: field_type(t)[0] for n, t in spec.source.schema_.items()}
    stateless_fields: dict[str, str] | None = None
    event_field = spec.source.event_time.field if spec.source.event_time else None
    event_intact = event_field is not None
    seen_dedupe = seen_window = False

    def missing(path: tuple[Any, ...], names: list[str]) -> None:
        for name in names:
            if name not in fields:
                problems.append(Problem(path, f"no field {name!r} here (known: {', '.join(fields)})"))

    for i, step in enumerate(spec.transforms):
        path: tuple[Any, ...] = ("spec", "transforms", i)
        if isinstance(step, (Filter, Project, Map, Enrich)) and stateless_fields is not None:
            problems.append(
                Problem(
                    (*path, "type"), f"{step.type} cannot follow Dedupe or Window: stateless steps come first"
                )
            )
            continue
        if isinstance(step, Filter):
            missing((*path, "condition"), _condition_fields(step.condition))
        elif isinstance(step, Project):
            missing((*path, "fields"), list(step.fields.values()))
            if event_field is not None and step.fields.get(event_field) != event_field:
                event_intact = False
            fields = {out: fields.get(src, "string") for out, src in step.fields.items()}
        elif isinstance(step, Map):
            try:
                registered = functions.registered(step.function)
            except KeyError as exc:
                problems.append(Problem((*path, "function"), str(exc.args[0])))
                continue
            missing((*path, "args"), step.args)
            if len(step.args) != registered.arity:
                problems.append(
                    Problem(
                        (*path, "args"),
                        f"{step.function} takes {registered.arity} field(s), got {len(step.args)}",
                    )
                )
            if step.output == event_field:
                event_intact = False
            fields[step.output] = registered.result_type
        elif isinstance(step, Enrich):
            missing((*path, "key"), [step.key])
            rows = step.table.inline or []
            columns = {c for row in rows for c in row}
            for name in [step.key, *step.fields]:
                if rows and name not in columns:
                    problems.append(Problem((*path, "table"), f"lookup table has no column {name!r}"))
            for name in step.fields:
                sample = next((row[name] for row in rows if row.get(name) is not None), "")
                fields[name] = (
                    "boolean"
                    if isinstance(sample, bool)
                    else "long"
                    if isinstance(sample, int)
                    else "double"
                    if isinstance(sample, float)
                    else "string"
                )
        elif isinstance(step, Dedupe):
            if seen_dedupe or seen_window:
                problems.append(Problem((*path, "type"), "one stateful step (Dedupe or Window) per pipeline"))
            stateless_fields = stateless_fields or dict(fields)
            seen_dedupe = True
            missing((*path, "key"), step.key)
        elif isinstance(step, Window):
            if seen_dedupe or seen_window:
                problems.append(Problem((*path, "type"), "one stateful step (Dedupe or Window) per pipeline"))
            stateless_fields = stateless_fields or dict(fields)
            seen_window = True
            if event_field is None:
                problems.append(Problem((*path, "type"), "a Window needs spec.source.eventTime"))
            elif not event_intact or event_field not in fields:
                problems.append(
                    Problem(
                        (*path, "type"),
                        f"the eventTime field {event_field!r} must reach the Window unchanged",
                    )
                )
            missing((*path, "groupBy"), step.group_by)
            for j, aggregate in enumerate(step.aggregates):
                if aggregate.field is not None:
                    missing((*path, "aggregates", j, "field"), [aggregate.field])
                    kind = fields.get(aggregate.field)
                    if aggregate.fn in ("sum", "avg") and kind not in (None, "long", "int", "double"):
                        problems.append(
                            Problem(
                                (*path, "aggregates", j, "fn"),
                                f"{aggregate.fn} needs a number, {aggregate.field!r} is {kind}",
                            )
                        )
            out = {name: fields.get(name, "string") for name in step.group_by}
            out[WINDOW_START] = "long"
            out[WINDOW_END] = "long"
            for aggregate in step.aggregates:
                out[aggregate.name] = _aggregate_type(aggregate.fn, fields.get(aggregate.field or ""))
            fields = out
    sink = spec.sink
    for attr, sink_field in (("key", sink.key), ("routeBy", sink.route_by)):
        if sink_field is not None and sink_field not in fields:
            problems.append(
                Problem(
                    ("spec", "sink", attr),
                    f"no field {sink_field!r} in the output (known: {', '.join(fields)})",
                )
            )
    prefix = stateless_fields if stateless_fields is not None else fields
    return problems, list(prefix.items()), list(fields.items())


def check(pipeline: Pipeline) -> list[Problem]:
    return _walk(pipeline)[0]


def plan(pipeline: Pipeline) -> Plan:
    """The plan of a pipeline `check` accepts (raises `ValueError` listing the problems otherwise)."""
    problems, fields, output = _walk(pipeline)
    if problems:
        raise ValueError("; ".join(f"{'.'.join(map(str, p.path))}: {p.reason}" for p in problems))
    spec = pipeline.spec
    stateless = tuple(s for s in spec.transforms if isinstance(s, (Filter, Project, Map, Enrich)))
    return Plan(
        name=pipeline.metadata.name,
        source=spec.source,
        stateless=stateless,
        fields=tuple(fields),
        dedupe=next((s for s in spec.transforms if isinstance(s, Dedupe)), None),
        window=next((s for s in spec.transforms if isinstance(s, Window)), None),
        output_fields=tuple(output),
        sink=spec.sink,
        dead_letter=spec.dead_letter,
        delivery=spec.delivery,
        parallelism=spec.parallelism,
        resources=spec.resources,
        scheduling=spec.scheduling,
        image=spec.image,
        namespace=pipeline.metadata.namespace,
    )
