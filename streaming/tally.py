"""What a pipeline run delivered, counted against what its input asks for: every input record expected once,
in the output or in the dead-letter topic; what is missing (lost), what came more than once (duplicated),
what nobody asked for (unexpected), and what came out of order within an input key.

Pure: values in, counts out; no broker, no process, no clock. The fault runs (`tidescale.local.faults`) read
the topics and hand the records here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from streaming.plan import Plan
from streaming.stateless import Processor

Triple = tuple[str, str | None, str]  # topic, key, value: one output or dead-letter record
Placed = tuple[str, int, Triple]  # the output topic and partition it was read from, the record


def expected(plan: Plan, values: Iterable[bytes]) -> Counter[Triple]:
    """The records a stateless `plan` writes for `values`: each once, on its output or dead-letter topic."""
    processor = Processor(plan)
    results = (processor.process(v) for v in values)
    return Counter((r.topic, r.key, r.value) for r in results if r.topic is not None and r.value is not None)


def positions(plan: Plan, values: Sequence[bytes], keys: Sequence[str]) -> dict[Triple, tuple[str, int]]:
    """For each expected record, the input key and index of the record it came from (`keys[i]` is the key
    `values[i]` was written with)."""
    processor = Processor(plan)
    found: dict[Triple, tuple[str, int]] = {}
    for i, (value, key) in enumerate(zip(values, keys, strict=True)):
        r = processor.process(value)
        if r.topic is not None and r.value is not None:
            found.setdefault((r.topic, r.key, r.value), (key, i))
    return found


def reordered(delivered: Sequence[Placed], position: Mapping[Triple, tuple[str, int]]) -> int:
    """Records that arrived, in their output partition, after a later record of the same input key (first
    arrivals only: a duplicate written again later is counted as a duplicate, not as out of order).

    Records of one input key share an input partition, which a stateless pipeline reads in order; each
    output partition then holds them in input order, whatever partition the sink key sends them to."""
    latest: dict[tuple[str, int, str], int] = {}
    seen: set[Triple] = set()
    late = 0
    for topic, partition, record in delivered:
        if record in seen or record not in position:
            continue
        seen.add(record)
        key, index = position[record]
        group = (topic, partition, key)
        if index < latest.get(group, -1):
            late += 1
        else:
            latest[group] = index
    return late


@dataclass(frozen=True)
class Tally:
    """`want` against `got`: records expected; records missing; copies beyond the first; records not
    expected at all; first arrivals out of order within their input key."""

    expected: int
    delivered: int
    lost: int
    duplicated: int
    unexpected: int
    reordered: int

    @classmethod
    def of(
        cls, want: Counter[Triple], delivered: Sequence[Placed], position: Mapping[Triple, tuple[str, int]]
    ) -> Tally:
        got = Counter(record for _, _, record in delivered)
        extra = got - want
        strangers = sum(n for record, n in extra.items() if record not in want)
        return cls(
            expected=sum(want.values()),
            delivered=sum(got.values()),
            lost=sum((want - got).values()),
            duplicated=sum(extra.values()) - strangers,
            unexpected=strangers,
            reordered=reordered(delivered, position),
        )

    def complete(self, exactly: bool) -> bool:
        """Every record there: exactly once (`exactly`), or at least once."""
        return self.lost == 0 and (not exactly or (self.duplicated == 0 and self.unexpected == 0))
