"""The `Pipeline` document (`tidescale.io/v1alpha1`): a Kafka source with a declared JSON schema, an
ordered list of transforms, a Kafka sink, a dead-letter topic, the delivery guarantee and the resources.

Pure: the pydantic models (reading a pipeline file, with every problem reported by file, line, field and
reason, is `streaming.pipeline_file`). No I/O, no engine, no clock.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

API_VERSION = "tidescale.io/v1alpha1"
KIND = "Pipeline"

# Field types a schema may declare; a trailing `?` makes the field optional (null when absent).
FIELD_TYPES = ("string", "long", "int", "double", "boolean")
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h)\s*$")
_DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_TOPIC = r"^[A-Za-z0-9._-]{1,200}$"


def duration_ms(value: Any) -> int:
    """`"10s"`, `"500ms"`, `"5m"`, `"1h"` (or a number of milliseconds) → milliseconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a string like '10s', '500ms', '5m' or '1h'")
    if isinstance(value, int):
        return value
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration (like '10s', '500ms', '5m' or '1h')")
    return int(match.group(1)) * _DURATION_MS[match.group(2)]


Duration = Annotated[int, BeforeValidator(duration_ms)]
FieldName = Annotated[str, Field(pattern=_NAME)]
Topic = Annotated[str, Field(pattern=_TOPIC)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


def field_type(declared: str) -> tuple[str, bool]:
    """`"long?"` → `("long", True)`: the base type and whether the field may be missing or null."""
    optional = declared.endswith("?")
    return declared.rstrip("?"), optional


class EventTime(Model):
    """Event time: a `long` field holding epoch milliseconds, and how late records may arrive."""

    field: FieldName
    watermark_delay: Duration = 5000


class Source(Model):
    topic: Topic
    group: Annotated[str, Field(min_length=1)]
    format: Literal["json"] = "json"
    schema_: dict[FieldName, str] = Field(alias="schema", min_length=1)
    start_from: Literal["earliest", "latest"] = "earliest"
    event_time: EventTime | None = None

    @field_validator("schema_")
    @classmethod
    def _known_types(cls, schema: dict[str, str]) -> dict[str, str]:
        for name, declared in schema.items():
            if field_type(declared)[0] not in FIELD_TYPES:
                raise ValueError(
                    f"field {name!r}: unknown type {declared!r} (known: {', '.join(FIELD_TYPES)}, "
                    "each optionally ending in '?')"
                )
        return schema

    @model_validator(mode="after")
    def _event_time_is_a_long(self) -> Source:
        if self.event_time is not None:
            declared = self.schema_.get(self.event_time.field)
            if declared is None:
                raise ValueError(f"eventTime.field {self.event_time.field!r} is not in the schema")
            if field_type(declared)[0] != "long":
                raise ValueError(
                    f"eventTime.field {self.event_time.field!r} must be a long (epoch milliseconds), "
                    f"not {declared!r}"
                )
        return self


Scalar = str | int | float | bool | None
Operator = Literal[
    "==", "!=", ">", ">=", "<", "<=", "in", "not in", "contains", "startswith", "is null", "not null"
]


class Comparison(Model):
    """`{field: tokens, op: ">", value: 0}`; `value` is a list for `in`/`not in`, absent for null tests."""

    field: FieldName
    op: Operator
    value: Scalar | list[Scalar] = None

    @model_validator(mode="after")
    def _value_fits_the_operator(self) -> Comparison:
        if self.op in ("in", "not in") and not isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} needs a list value")
        if self.op not in ("in", "not in") and isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} takes a single value, not a list")
        return self


class AllOf(Model):
    all: list[Condition] = Field(min_length=1)


class AnyOf(Model):
    any: list[Condition] = Field(min_length=1)


class NotOf(Model):
    not_: Condition = Field(alias="not")


def _condition_kind(value: Any) -> str:
    if isinstance(value, dict):
        return next((k for k in ("all", "any", "not") if k in value), "compare")
    return next(
        (k for k, cls in (("all", AllOf), ("any", AnyOf), ("not", NotOf)) if isinstance(value, cls)),
        "compare",
    )


# Told apart by their key, so a mistake is reported against the one form it was meant to be.
Condition = Annotated[
    Annotated[Comparison, Tag("compare")]
    | Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[NotOf, Tag("not")],
    Discriminator(_condition_kind),
]
for _model in (AllOf, AnyOf, NotOf):
    _model.model_rebuild()


class Filter(Model):
    """Keeps the records for which `condition` holds; the others are dropped (not dead letters)."""

    type: Literal["Filter"]
    name: str | None = None
    condition: Condition


class Project(Model):
    """Keeps only `fields`: output name → input field (so it also renames)."""

    type: Literal["Project"]
    name: str | None = None
    fields: dict[FieldName, FieldName] = Field(min_length=1)


class Map(Model):
    """Sets `output` to a registered Python function (`streaming.functions`) of `args` (field names)."""

    type: Literal["Map"]
    name: str | None = None
    function: str
    args: list[FieldName] = Field(default_factory=list)
    params: dict[str, Scalar] = Field(default_factory=dict)
    output: FieldName


class Aggregate(Model):
    name: FieldName
    fn: Literal["count", "sum", "avg", "min", "max"]
    field: FieldName | None = None

    @model_validator(mode="after")
    def _field_unless_count(self) -> Aggregate:
        if self.fn != "count" and self.field is None:
            raise ValueError(f"aggregate {self.name!r}: {self.fn} needs a field")
        return self


class Window(Model):
    """Event-time window per `groupBy` key; emits `groupBy`, `windowStart`, `windowEnd` (epoch ms) and
    the aggregates when the watermark passes the window's end."""

    type: Literal["Window"]
    name: str | None = None
    kind: Literal["tumbling", "sliding"]
    size: Duration
    slide: Duration | None = None
    group_by: list[FieldName] = Field(default_factory=list)
    aggregates: list[Aggregate] = Field(min_length=1)

    @model_validator(mode="after")
    def _slide_fits_the_kind(self) -> Window:
        if self.size <= 0 or self.size % 1000:
            raise ValueError("size must be a positive whole number of seconds")
        if self.kind == "sliding":
            if self.slide is None:
                raise ValueError("a sliding window needs a slide")
            if self.slide <= 0 or self.slide % 1000 or self.size % self.slide:
                raise ValueError("slide must be whole seconds and divide size")
        elif self.slide is not None:
            raise ValueError("a tumbling window takes no slide")
        return self


class Dedupe(Model):
    """Drops every record whose `key` fields were seen before (keeps the first)."""

    type: Literal["Dedupe"]
    name: str | None = None
    key: list[FieldName] = Field(min_length=1)


class LookupTable(Model):
    """Rows given inline, or a CSV (with a header) or JSON (a list of objects) file beside the spec."""

    inline: list[dict[str, Scalar]] | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> LookupTable:
        if (self.inline is None) == (self.file is None):
            raise ValueError("give exactly one of inline or file")
        return self


class Enrich(Model):
    """Adds `fields` from the `table` row whose `key` column equals the record's `key` field (null when
    no row matches)."""

    type: Literal["Enrich"]
    name: str | None = None
    table: LookupTable
    key: FieldName
    fields: list[FieldName] = Field(min_length=1)


Transform = Annotated[Filter | Project | Map | Window | Dedupe | Enrich, Field(discriminator="type")]


class Sink(Model):
    topic: Topic
    key: FieldName | None = None
    route_by: FieldName | None = None


class DeadLetter(Model):
    topic: Topic


class Delivery(Model):
    guarantee: Literal["at-least-once", "exactly-once"] = "at-least-once"
    checkpoint_interval: Duration = 10_000
    checkpoint_dir: str | None = None
    # The largest record (key and value, UTF-8) written to the sink or the dead-letter topic. A bigger one
    # would be refused by Kafka (the producer's default message.max.bytes is 1,000,000) and, retried,
    # stall the job: a result over it goes to the dead letters instead, and a dead letter over it keeps a
    # prefix of the record with its size and SHA-256.
    max_record_bytes: Annotated[int, Field(ge=1024, le=100_000_000)] = 1_000_000


class Resources(Model):
    cpu: Annotated[str, Field(pattern=r"^\d+(\.\d+)?m?$")] = "1"
    memory: Annotated[str, Field(pattern=r"^\d+(Ki|Mi|Gi|Ti|k|M|G|T)?$")] = "2Gi"
    gpus: Annotated[int, Field(ge=0)] = 0
    gpu_resource: str = "nvidia.com/gpu"


class Scheduling(Model):
    scheduler_name: str | None = None
    queue: str | None = None


class PipelineSpec(Model):
    source: Source
    transforms: list[Transform] = Field(default_factory=list)
    sink: Sink
    dead_letter: DeadLetter
    delivery: Delivery = Delivery()
    parallelism: Annotated[int, Field(ge=1, le=1024)] = 1
    resources: Resources = Resources()
    scheduling: Scheduling = Scheduling()
    image: str | None = None

    @model_validator(mode="after")
    def _topics_differ(self) -> PipelineSpec:
        if self.dead_letter.topic in (self.source.topic, self.sink.topic):
            raise ValueError("deadLetter.topic must differ from the source and sink topics")
        if self.sink.topic == self.source.topic:
            raise ValueError("sink.topic must differ from source.topic")
        return self


class Metadata(Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$")]
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class Pipeline(Model):
    api_version: Literal["tidescale.io/v1alpha1"]
    kind: Literal["Pipeline"]
    metadata: Metadata
    spec: PipelineSpec


def retarget(
    pipeline: Pipeline,
    *,
    source: str,
    group: str,
    sink: str,
    dead_letter: str,
    parallelism: int | None = None,
) -> Pipeline:
    """The same pipeline reading and writing other topics (demos, benchmarks, tests on shared brokers)."""
    data = pipeline.model_dump(by_alias=True, exclude_none=True)
    body = data["spec"]
    body["source"]["topic"] = source
    body["source"]["group"] = group
    body["sink"]["topic"] = sink
    body["deadLetter"]["topic"] = dead_letter
    if parallelism is not None:
        body["parallelism"] = parallelism
    return Pipeline.model_validate(data)
