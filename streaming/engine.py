"""The engine extension point: the `StreamEngine` protocol, what a run is told and reports, and the
registry of engines, filled by `streaming.engines.register_builtins()` where a run is wired (the job's entry,
the CLI, the benchmark, the demo) and passed to what runs the pipeline.

Pure: declarations only; the engines themselves (shells that start JVMs or Kafka clients) live in
`streaming.engines.*` and are imported by `register_builtins`, not at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kernel.errors import PermanentError
from streaming.plan import Plan

TARGETS = ("kubernetes",)

# How every engine's Kafka producer batches (the Python engine's clients too): up to 5 ms and 256 KiB per
# batch. The Java client's defaults (send at once, 16 KiB) cost the broker twice the CPU per record and,
# on two cores, the JVM engines 5-14 % of their throughput (docs/benchmarks.md, stop 26).
PRODUCER_LINGER_MS = 5
PRODUCER_BATCH_BYTES = 262_144


@dataclass(frozen=True)
class RunOptions:
    """`bounded`: stop at the offsets that were the latest when the run started. `max_records`: stop
    after that many input records (exact on the python engine; flink and spark treat it as bounded)."""

    bootstrap: str
    bounded: bool = False
    max_records: int | None = None
    checkpoint_dir: Path | None = None
    restore_from: Path | None = None  # flink: a retained checkpoint or savepoint to resume from
    timeout_s: float | None = None


@dataclass
class RunReport:
    engine: str
    seconds: float
    records_in: int | None = None
    records_out: int | None = None
    dead_letters: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rendered:
    """What `render` produced: Kubernetes objects, or a command line (`spark-submit`)."""

    objects: tuple[dict[str, Any], ...] = ()
    command: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


class StreamEngine(Protocol):
    name: str
    delivery: tuple[str, ...]  # the guarantees it can keep

    def run(self, plan: Plan, options: RunOptions) -> RunReport: ...

    def render(self, plan: Plan, target: str = "kubernetes", *, spark_submit: bool = False) -> Rendered: ...


class EngineRegistry:
    """Engines by their CLI key (`flink`, `spark`, `python`)."""

    def __init__(self) -> None:
        self._engines: dict[str, StreamEngine] = {}

    def register(self, engine: StreamEngine) -> None:
        self._engines[engine.name] = engine

    def get(self, name: str) -> StreamEngine:
        try:
            return self._engines[name]
        except KeyError:
            raise PermanentError(f"no engine {name!r} (known: {', '.join(sorted(self._engines))})") from None

    def names(self) -> list[str]:
        return sorted(self._engines)


def delivery_note(engine: StreamEngine, plan: Plan) -> str | None:
    """A sentence when the engine keeps a weaker guarantee than the spec asks for (it then runs with
    the strongest it has: Spark's Kafka sink is at-least-once only)."""
    if plan.delivery.guarantee in engine.delivery:
        return None
    return (
        f"{engine.name} cannot keep {plan.delivery.guarantee} delivery to Kafka; "
        f"it runs {engine.delivery[-1]} (deduplicate downstream by key)"
    )
