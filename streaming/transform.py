"""A JSON-to-JSON Kafka transform both engines run the same way: a declared schema, SQL expressions
over it, and optional Python scalar functions. Pure values; the engines turn it into jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kernel.errors import PermanentError

# Field types a schema may declare, with their SQL spelling (the same in Flink SQL and Spark SQL).
SQL_TYPES = {"string": "STRING", "long": "BIGINT", "int": "INT", "double": "DOUBLE", "boolean": "BOOLEAN"}


@dataclass(frozen=True)
class PythonFunction:
    """A Python scalar function callable from the expressions by `name`."""

    name: str
    function: Callable[..., Any]
    result_type: str  # one of SQL_TYPES


@dataclass(frozen=True)
class KafkaJsonTransform:
    """Read JSON records of `schema` from `source_topic`, write `select` (name → SQL expression) as JSON
    records to `sink_topic`. `bounded` stops at the offsets that were the latest when the job started."""

    bootstrap: str
    source_topic: str
    sink_topic: str
    schema: dict[str, str]
    select: dict[str, str]
    group_id: str
    functions: tuple[PythonFunction, ...] = field(default_factory=tuple)
    bounded: bool = True
    parallelism: int = 1

    def __post_init__(self) -> None:
        for name, kind in self.schema.items():
            if kind not in SQL_TYPES:
                raise PermanentError(
                    f"schema field {name!r}: unknown type {kind!r} (known: {', '.join(SQL_TYPES)})"
                )
        for fn in self.functions:
            if fn.result_type not in SQL_TYPES:
                raise PermanentError(f"function {fn.name!r}: unknown result type {fn.result_type!r}")
        if not self.select:
            raise PermanentError("select: at least one output field is required")

    def schema_ddl(self) -> str:
        return ", ".join(f"`{name}` {SQL_TYPES[kind]}" for name, kind in self.schema.items())

    def select_sql(self) -> str:
        return ", ".join(f"{expression} AS `{name}`" for name, expression in self.select.items())
