"""The stateless prefix as one function: parsing against the schema, each transform, routing, keys, and
a dead letter (with the step, the reason and the original record) for every record that fails."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from streaming import functions, spec
from streaming.plan import Plan, plan
from streaming.stateless import Processor, holds


def a_plan(transforms: list[dict[str, Any]], schema: dict[str, str] | None = None, **sink: Any) -> Plan:
    document = {
        "apiVersion": "tidescale.io/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": "p"},
        "spec": {
            "source": {
                "topic": "in",
                "group": "g",
                "schema": schema or {"id": "string", "text": "string", "n": "long?"},
            },
            "transforms": transforms,
            "sink": {"topic": "out", **sink},
            "deadLetter": {"topic": "dlq"},
        },
    }
    return plan(spec.Pipeline.model_validate(document))


def run(p: Plan, record: Any) -> tuple[str | None, Any]:
    raw = record if isinstance(record, bytes) else json.dumps(record).encode()
    result = Processor(p).process(raw)
    return result.kind, json.loads(result.value) if result.value else None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b"{not json", "not JSON", id="json"),
        pytest.param(b"\xff\xfe", "not UTF-8", id="utf8"),
        pytest.param(b"[1, 2]", "not a JSON object", id="array"),
        pytest.param(b'{"text": "x"}', "field 'id' is missing or null", id="missing"),
        pytest.param(b'{"id": 3, "text": "x"}', "field 'id': expected string", id="type"),
        pytest.param(
            b'{"id": "a", "text": "x", "n": true}', "field 'n': expected long", id="bool-is-not-long"
        ),
        pytest.param(
            b'{"id": "a", "text": "x", "n": 1.5}', "field 'n': expected long", id="float-is-not-long"
        ),
    ],
)
def test_a_record_that_does_not_parse_becomes_a_dead_letter_with_the_original_and_the_reason(
    raw: bytes, reason: str
) -> None:
    p = a_plan([])
    result = Processor(p).process(raw)
    letter = json.loads(result.value or "")
    assert (result.kind, result.topic) == ("dead", "dlq")
    assert reason in letter["reason"] and letter["step"] == "parse"
    original = letter.get("record") or base64.b64decode(letter["recordBase64"]).decode("latin-1")
    assert (
        original == raw.decode("utf-8", errors="strict")
        if "record" in letter
        else raw == base64.b64decode(letter["recordBase64"])
    )


@pytest.mark.parametrize(
    ("condition", "record", "kept"),
    [
        pytest.param({"field": "n", "op": ">", "value": 2}, {"n": 3}, True, id="gt"),
        pytest.param({"field": "n", "op": ">", "value": 2}, {"n": None}, False, id="null-compares-false"),
        pytest.param({"field": "n", "op": "is null"}, {"n": None}, True, id="is-null"),
        pytest.param({"field": "text", "op": "in", "value": ["a", "b"]}, {"text": "b"}, True, id="in"),
        pytest.param(
            {"field": "text", "op": "contains", "value": "ell"}, {"text": "hello"}, True, id="contains"
        ),
        pytest.param(
            {"all": [{"field": "n", "op": ">=", "value": 1}, {"field": "n", "op": "<", "value": 2}]},
            {"n": 1},
            True,
            id="all",
        ),
        pytest.param(
            {
                "any": [
                    {"field": "n", "op": "==", "value": 5},
                    {"field": "text", "op": "startswith", "value": "h"},
                ]
            },
            {"n": 1, "text": "hi"},
            True,
            id="any",
        ),
        pytest.param({"not": {"field": "text", "op": "==", "value": "x"}}, {"text": "x"}, False, id="not"),
    ],
)
def test_filter_conditions_are_evaluated_without_eval(
    condition: dict[str, Any], record: dict[str, Any], kept: bool
) -> None:
    p = a_plan([{"type": "Filter", "condition": condition}])
    step = p.stateless[0]
    assert isinstance(step, spec.Filter)
    assert holds(step.condition, record) is kept


def test_a_filtered_out_record_goes_nowhere() -> None:
    p = a_plan([{"type": "Filter", "condition": {"field": "n", "op": ">", "value": 0}}])
    assert run(p, {"id": "a", "text": "x", "n": 0}) == (None, None)


def test_map_project_and_enrich_run_in_order_and_the_output_keeps_the_declared_field_order() -> None:
    p = a_plan(
        [
            {"type": "Map", "function": "normalise_text", "args": ["text"], "output": "text"},
            {"type": "Map", "function": "count_tokens", "args": ["text"], "output": "tokens"},
            {
                "type": "Enrich",
                "table": {"inline": [{"id": "a", "tier": "gold"}]},
                "key": "id",
                "fields": ["tier"],
            },
            {
                "type": "Project",
                "fields": {"request": "id", "tokens": "tokens", "tier": "tier", "text": "text"},
            },
        ],
        key="request",
    )
    result = Processor(p).process(b'{"id": "a", "text": "  Hello,\\tworld!  "}')
    assert result.kind == "out" and result.key == "a"
    assert result.value == '{"request":"a","tokens":4,"tier":"gold","text":"Hello, world!"}'


def test_an_enrichment_miss_gives_null_fields() -> None:
    p = a_plan(
        [
            {
                "type": "Enrich",
                "table": {"inline": [{"id": "a", "tier": "gold"}]},
                "key": "id",
                "fields": ["tier"],
            }
        ]
    )
    assert run(p, {"id": "b", "text": "x"})[1]["tier"] is None


@pytest.mark.parametrize(
    ("model", "topic"),
    [("llama-3-8b", "out.llama-3-8b"), ("org/model:v1", "out.org_model_v1")],
    ids=["plain", "unsafe-characters"],
)
def test_route_by_sends_each_record_to_the_topic_of_its_value(model: str, topic: str) -> None:
    p = a_plan([], schema={"id": "string", "model": "string"}, routeBy="model")
    assert Processor(p).process(json.dumps({"id": "a", "model": model}).encode()).topic == topic


def test_a_failing_function_makes_a_dead_letter_naming_its_step() -> None:
    p = a_plan(
        [
            {
                "type": "Map",
                "function": "truncate",
                "args": ["text"],
                "params": {"max_chars": "x"},
                "output": "t",
            }
        ]
    )
    kind, letter = run(p, {"id": "a", "text": "hello"})
    assert kind == "dead" and letter["step"] == "Map[0] truncate" and "TypeError" in letter["reason"]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("What is the weather like today?", "en"),
        ("Wie ist das Wetter und was ist los?", "de"),
        ("Quelle est la météo et comment vas-tu ?", "fr"),
        ("¿Qué tiempo hace en la ciudad?", "es"),
        ("東京で一番おいしいラーメンはどこですか", "ja"),
        ("Объясни, как работает трансформер", "ru"),
        ("12345", "und"),
        ("THE Cat AND the Dog", "en"),
        ("DER Hund UND die Katze", "de"),
        # Latin with a dotted capital I: lowered it is two characters, so words are lowered one by one.
        ("İstanbul ist schön und der Bosporus", "de"),
        ("Le café est chaud", "fr"),
        ("de la", "es"),  # a tie (Spanish and French stop words alike) goes to the first alphabetically
        ("xyz qqq", "und"),
    ],
    ids=[
        "en",
        "de",
        "fr",
        "es",
        "ja",
        "ru",
        "digits",
        "en-upper",
        "de-upper",
        "dotted-i",
        "fr-latin",
        "tie",
        "none",
    ],
)
def test_the_language_heuristic_tells_common_languages_apart(text: str, language: str) -> None:
    assert functions.detect_language(text) == language


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Hello, world!", 4),
        ("", 0),
        (None, 0),
        ("don't stop", 4),
        ("a\x1cb\x1fc", 3),  # Unicode counts \x1c-\x1f as spaces, in ASCII text too
        ("snake_case 42x", 2),
        ("Grüße, Welt!", 4),
    ],
    ids=["punct", "empty", "none", "apostrophe", "separators", "underscore-digits", "beyond-ascii"],
)
def test_the_tokenizer_counts_words_and_punctuation(text: str | None, tokens: int) -> None:
    assert functions.count_tokens(text) == tokens


def a_limited_plan(max_record_bytes: int) -> Plan:
    document = {
        "apiVersion": "tidescale.io/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": "p"},
        "spec": {
            "source": {"topic": "in", "group": "g", "schema": {"id": "string", "text": "string"}},
            "transforms": [],
            "sink": {"topic": "out", "key": "id"},
            "deadLetter": {"topic": "dlq"},
            "delivery": {"maxRecordBytes": max_record_bytes},
        },
    }
    return plan(spec.Pipeline.model_validate(document))


@pytest.mark.parametrize(
    ("record", "step", "reason"),
    [
        pytest.param(
            {"id": "a", "model": "m", "n": 2**63}, "parse", "does not fit a long", id="a-long-past-64-bits"
        ),
        pytest.param(
            {"id": "a", "model": "m" * 300, "n": 1}, "route", "Kafka allows 249", id="topic-too-long"
        ),
    ],
)
def test_a_poison_record_of_valid_json_with_impossible_values_is_a_dead_letter(
    record: dict[str, Any], step: str, reason: str
) -> None:
    p = a_plan([], schema={"id": "string", "model": "string", "n": "long"}, routeBy="model")
    result = Processor(p).process(json.dumps(record).encode())
    letter = json.loads(result.value)
    assert (result.kind, result.topic, letter["step"]) == ("dead", "dlq", step)
    assert reason in letter["reason"]
    assert json.loads(letter["record"]) == record  # the original, whole


@pytest.mark.parametrize("character", ["x", "東"], ids=["ascii", "three-byte-utf8"])
def test_a_record_over_the_size_limit_is_a_shortened_dead_letter_within_it(character: str) -> None:
    raw = json.dumps({"id": "big", "text": character * 5000}, ensure_ascii=False).encode()
    result = Processor(a_limited_plan(4096)).process(raw)
    assert (result.kind, result.topic) == ("dead", "dlq")
    assert len(result.value.encode()) <= 4096
    letter = json.loads(result.value)
    assert letter["step"] == "size" and "over the limit of 4096" in letter["reason"]
    assert letter["truncated"] is True and letter["recordBytes"] == len(raw)
    assert letter["recordSha256"] == hashlib.sha256(raw).hexdigest()
    assert raw.decode().startswith(letter["record"])


def test_a_record_within_the_size_limit_is_written_whole() -> None:
    raw = json.dumps({"id": "ok", "text": "x" * 3000}).encode()
    result = Processor(a_limited_plan(4096)).process(raw)
    assert (result.kind, result.key, json.loads(result.value)["text"]) == ("out", "ok", "x" * 3000)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"id": "a", "text": "x"}', id="one-object"),
        pytest.param(b' \n{"id": "a", "text": "x"}\t', id="surrounded-by-whitespace"),
        pytest.param(b'{"id": "a", "text": "x"} {"id": "b"}', id="extra-data"),
        pytest.param(b'{"id": "a", "text": "x"', id="cut-short"),
        pytest.param(b'{"id": "a", "text": "x", "id": "b"}', id="a-repeated-key"),
        pytest.param(b'{"id": "a", "text": "\\ud83d\\ude00 \\u00e9"}', id="escapes"),
        pytest.param("\ufeff".encode() + b'{"id": "a", "text": "x"}', id="byte-order-mark"),
        pytest.param(b"{" * 100_000, id="too-deep"),
    ],
)
def test_a_record_is_parsed_as_json_loads_parses_it_with_its_own_messages(raw: bytes) -> None:
    p = a_plan([])
    result = Processor(p).process(raw)
    try:
        document = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, RecursionError) as exc:
        assert result.kind == "dead"
        assert json.loads(result.value or "")["reason"] == f"not JSON: {exc}"
    else:
        assert result.kind == "out"
        assert json.loads(result.value or "") == {"id": document["id"], "text": document["text"], "n": None}


def test_an_output_that_is_not_json_is_a_dead_letter_and_the_next_record_is_written() -> None:
    p = a_plan([], schema={"id": "string", "x": "double"})
    processor = Processor(p)
    bad = processor.process(b'{"id": "a", "x": NaN}')
    good = processor.process(b'{"id": "b", "x": 1.5}')
    letter = json.loads(bad.value or "")
    assert (bad.kind, letter["step"]) == ("dead", "serialise")
    assert "Out of range float values are not JSON compliant" in letter["reason"]
    assert (good.kind, good.value) == ("out", '{"id":"b","x":1.5}')
