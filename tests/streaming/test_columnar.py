"""The batch form of the stateless prefix gives every record exactly what the reference gives it: the same
kind, topic, key and JSON text (and typed fields), in order, for records on the common path and for every
kind of record that leaves it."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from streaming import pipeline_file
from streaming.columnar import BatchProcessor, each
from streaming.plan import Plan, plan
from streaming.stateless import FIELD_PREFIX, RESULT_COLUMNS, Processor
from tests.streaming.test_stateless import a_limited_plan, a_plan
from tidescale.bench.streaming import EXAMPLE, llm_requests

FEATURES = EXAMPLE.parent / "feature-aggregator.yaml"


def expected(p: Plan, raws: list[Any]) -> dict[str, list[Any]]:
    """The reference, record by record, as columns."""
    reference = Processor(p)
    typed = [name for name, _ in p.fields] if p.stateful else []
    columns: dict[str, list[Any]] = {c: [] for c in (*RESULT_COLUMNS, *(FIELD_PREFIX + n for n in typed))}
    for raw in raws:
        result = reference.process(raw)
        for name, value in zip(RESULT_COLUMNS, result[:4], strict=True):
            columns[name].append(value)
        for name in typed:
            columns[FIELD_PREFIX + name].append((result.record or {}).get(name))
    return columns


def assert_as_reference(p: Plan, raws: list[Any]) -> dict[str, list[Any]]:
    got = BatchProcessor(Processor(p)).columns(raws)
    want = expected(p, raws)
    assert list(got) == list(want)
    for name in want:
        for i, (g, w) in enumerate(zip(got[name], want[name], strict=True)):
            assert (type(g), g) == (type(w), w), f"{name}[{i}] of {raws[i]!r}"
    return got


def encoded(records: list[Any]) -> list[Any]:
    return [r if isinstance(r, (bytes, type(None))) else json.dumps(r).encode() for r in records]


# Every way a record leaves the common path, and some that stay on it.
ODD_RECORDS: list[Any] = [
    None,
    b"",
    b"\xff\xfe",
    b"{not json",
    b'{"id": "a", "text": ',  # the scanner raises StopIteration, which ends a `map` silently
    b"[1, 2]",
    b' {"id": "a", "text": "x"}',
    b'{"id": "a", "text": "x"} ',
    b'{"id": "a", "text": "x"}{"id": "b"}',
    {"text": "x"},
    {"id": 3, "text": "x"},
    {"id": "a", "text": "x", "n": True},
    {"id": "a", "text": "x", "n": 1.5},
    {"id": "a", "text": "x", "n": 2**63},
    {"id": "a", "text": "x", "n": -(2**63)},
    {"id": "a", "text": None},
    {"id": "a", "text": "x", "n": None},
    {"id": "a", "text": "", "n": 0},
    {"id": "a", "text": "x", "extra": [1, {"deep": True}]},
]


def test_the_example_pipeline_gives_what_the_reference_gives_on_generated_and_odd_records() -> None:
    p = plan(pipeline_file.load(EXAMPLE))
    raws = llm_requests(3_000)
    odd = encoded(
        [
            *ODD_RECORDS,
            {"id": "r", "user": "u", "model": "m" * 300, "prompt": "too long a route", "ts": 1},
            {"id": "r", "user": "u", "model": "a/b c", "prompt": "a route to clean", "ts": 1},
            {"id": "r", "user": "u", "model": "llama-3-8b", "prompt": "", "ts": 1},
            {"id": "r", "user": "u", "model": "llama-3-8b", "prompt": "\u0130stanbul \x00 ok", "ts": 1},
        ]
    )
    for i, record in enumerate(odd):
        raws.insert(i * 97 % len(raws), record)
    got = assert_as_reference(p, raws)
    assert got["kind"].count("out") > 2_900 and "dead" in got["kind"]


def test_a_stateful_plan_gets_its_typed_fields_as_the_reference_gives_them() -> None:
    p = plan(pipeline_file.load(FEATURES))
    rng = random.Random(7)
    records: list[Any] = [
        {
            "user": f"u{rng.randrange(5)}",
            "model": "m",
            "promptTokens": rng.randrange(-2, 50),
            "latencyMs": rng.choice([1, 2.5, 1e3, 0]),
            "ts": 1_700_000_000_000 + i,
        }
        for i in range(500)
    ]
    records[3]["latencyMs"] = "slow"
    records[5]["promptTokens"] = None
    got = assert_as_reference(p, encoded(records))
    assert got[FIELD_PREFIX + "latencyMs"][0] is not None


@pytest.mark.parametrize(
    "condition",
    [
        pytest.param({"field": "n", "op": ">", "value": 2}, id="gt"),
        pytest.param({"field": "text", "op": ">", "value": 2}, id="str-against-int-raises"),
        pytest.param({"field": "n", "op": "is null"}, id="is-null"),
        pytest.param({"field": "n", "op": "not null"}, id="not-null"),
        pytest.param({"field": "text", "op": "in", "value": ["a", "b"]}, id="in"),
        pytest.param({"field": "text", "op": "startswith", "value": "a"}, id="startswith"),
        pytest.param(
            {"all": [{"field": "n", "op": ">", "value": 1}, {"field": "text", "op": "<", "value": 0}]},
            id="all-where-a-later-part-raises",
        ),
        pytest.param(
            {
                "any": [
                    {"field": "n", "op": "<", "value": 1},
                    {"not": {"field": "text", "op": "contains", "value": "b"}},
                ]
            },
            id="any-not",
        ),
    ],
)
def test_every_condition_keeps_and_fails_the_rows_the_reference_does(condition: dict[str, Any]) -> None:
    p = a_plan([{"type": "Filter", "condition": condition}])
    rng = random.Random(1)
    records = [
        {"id": str(i), "text": rng.choice(["a", "b", "ab", ""]), "n": rng.choice([None, 0, 1, 2, 3])}
        for i in range(200)
    ]
    assert_as_reference(p, encoded([*records, *ODD_RECORDS]))


def test_maps_projections_enrichment_routes_and_keys_follow_the_reference() -> None:
    p = a_plan(
        [
            {"type": "Map", "function": "normalise_text", "args": ["text"], "output": "text"},
            {"type": "Map", "function": "count_tokens", "args": ["text"], "output": "tokens"},
            {
                "type": "Map",
                "function": "truncate",
                "args": ["text"],
                "params": {"max_chars": 3},
                "output": "short",
            },
            {
                "type": "Project",
                "fields": {"id": "id", "text": "text", "tokens": "tokens", "short": "short", "n": "n"},
            },
            {
                "type": "Enrich",
                "table": {"inline": [{"short": "abc", "tier": "gold"}, {"short": "abc", "tier": "x"}]},
                "key": "short",
                "fields": ["tier"],
            },
        ],
        route_by="short",
        key="n",
    )
    rng = random.Random(3)
    records = [
        {
            "id": str(i),
            "text": rng.choice(["abc def", " abc\tx", "z" * 300, "", "été"]),
            "n": rng.choice([None, 1, -5]),
        }
        for i in range(300)
    ]
    got = assert_as_reference(p, encoded([*records, *ODD_RECORDS]))
    assert "out.abc" in got["topic"] and "dead" in got["kind"]  # routed, and routes too long


def test_a_function_that_raises_sends_only_its_rows_to_the_reference() -> None:
    p = a_plan(
        [
            {
                "type": "Map",
                "function": "truncate",
                "args": ["text"],
                "params": {"max_chars": -1},
                "output": "t",
            }
        ]
    )
    assert_as_reference(p, encoded([{"id": "a", "text": "xy"}, {"id": "b", "text": None}]))
    values, failed = each(lambda v: 1 // v, [1, 0, 2, 0])
    assert (values, failed) == ([1, None, 0, None], {1, 3})


def test_results_near_and_over_the_size_limit_are_the_references() -> None:
    p = a_limited_plan(2_048)
    records = [{"id": "k" * n, "text": "é" * (n * 3)} for n in (1, 100, 160, 170, 400, 600, 2_000)]
    got = assert_as_reference(p, encoded(records))
    assert got["kind"][:2] == ["out", "out"] and got["kind"][-1] == "dead"


def test_an_empty_batch_and_a_batch_with_nothing_kept_give_empty_and_null_columns() -> None:
    p = a_plan([{"type": "Filter", "condition": {"field": "n", "op": ">", "value": 100}}])
    assert BatchProcessor(Processor(p)).columns([]) == {c: [] for c in RESULT_COLUMNS}
    got = assert_as_reference(p, encoded([{"id": "a", "text": "x", "n": 1}] * 3))
    assert got == {c: [None] * 3 for c in RESULT_COLUMNS}


def test_only_the_records_off_the_common_path_go_through_the_reference() -> None:
    p = plan(pipeline_file.load(EXAMPLE))
    taken: list[Any] = []

    class Counted(Processor):
        def process(self, raw: Any) -> Any:
            taken.append(raw)
            return super().process(raw)

    odd = encoded([None, b"{not json", {"id": "r", "user": "u", "model": "m" * 300, "prompt": "p", "ts": 1}])
    batch = BatchProcessor(Counted(p))
    batch.columns([*llm_requests(2_000), *odd])
    assert taken == odd  # routes named in the batch, nothing else retried
    taken.clear()
    batch.columns(llm_requests(500))
    assert taken == []
