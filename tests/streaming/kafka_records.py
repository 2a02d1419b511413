"""Test helpers for the streaming integration tests: realistic inputs with a share of malformed ones,
and reading (topic, key, value) triples back from a real broker."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from kernel.clock import Deadline
from streaming import pipeline_file, spec
from streaming.plan import Plan, plan
from tidescale.local import kafka

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"
MODELS = ("llama-3-8b", "llama-3-70b", "mistral-7b", "mixtral-8x22b")
PROMPTS = (
    "  What is the   capital of France?  ",
    "Wie spät ist es und wo ist der Bahnhof?",
    "Quelle est la meilleure façon de faire du pain ?",
    "東京で一番おいしいラーメンはどこですか",
    "Объясни, как работает трансформер",
    "¿Cómo se dice 'hello' en francés?",
    "\u00a0Summarise\tthis\n\ndocument, please.",
)


def llm_requests(n: int, malformed_every: int = 100, seed: int = 7) -> tuple[list[bytes], set[int]]:
    """`n` requests; every `malformed_every`-th is broken in one of several ways. Returns (values,
    indices of the malformed ones)."""
    rng = random.Random(seed)
    values: list[bytes] = []
    broken: set[int] = set()
    for i in range(n):
        record: dict[str, Any] = {
            "id": f"r{i}",
            "user": f"u{i % 17}",
            "model": MODELS[i % len(MODELS)],
            "prompt": PROMPTS[rng.randrange(len(PROMPTS))] + f" #{i}",
            "ts": 1_700_000_000_000 + i * 250,
        }
        if i % 5 == 0:
            record["maxTokens"] = 256
        if malformed_every and i % malformed_every == malformed_every - 1:
            broken.add(i)
            kind = (i // malformed_every) % 4
            if kind == 0:
                values.append(b'{"id": "r' + str(i).encode() + b'", "prompt": ')  # truncated JSON
            elif kind == 1:
                values.append(b"\xff\xfe not utf-8 " + str(i).encode())
            elif kind == 2:
                record["ts"] = "yesterday"  # wrong type
                values.append(json.dumps(record).encode())
            else:
                del record["user"]  # missing field
                values.append(json.dumps(record).encode())
            continue
        values.append(json.dumps(record, ensure_ascii=False).encode())
    return values, broken


def feature_events(n: int, users: int = 5, seed: int = 11) -> list[bytes]:
    """In event-time order (no late records), so every engine fires the same windows."""
    rng = random.Random(seed)
    return [
        json.dumps(
            {
                "user": f"u{i % users}",
                "model": MODELS[i % len(MODELS)],
                "promptTokens": rng.randrange(0, 40),
                "latencyMs": rng.randrange(1, 400) / 4,
                "ts": 1_700_000_000_000 + i * 700,
            }
        ).encode()
        for i in range(n)
    ]


def example_plan(name: str, suffix: str, **spec_changes: Any) -> Plan:
    """An example pipeline with its topics and group made unique by `suffix`."""
    pipeline = pipeline_file.load(EXAMPLES / f"{name}.yaml")
    data = pipeline.model_dump(by_alias=True, exclude_none=True)
    body = data["spec"]
    body["source"]["topic"] = f"{body['source']['topic']}-{suffix}"
    body["source"]["group"] = f"{body['source']['group']}-{suffix}"
    body["sink"]["topic"] = f"{body['sink']['topic']}-{suffix}"
    body["deadLetter"]["topic"] = f"{body['deadLetter']['topic']}-{suffix}"
    body.update(spec_changes)
    return plan(spec.Pipeline.model_validate(data))


def unique() -> str:
    return uuid.uuid4().hex[:8]


def read_all(
    bootstrap: str, topics: list[str], count: int, timeout: float = 30
) -> list[tuple[str, str | None, str]]:
    """Up to `count` (topic, key, value) from the start of `topics`, committed records only."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{unique()}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "isolation.level": "read_committed",
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    consumer.subscribe(topics)
    found: list[tuple[str, str | None, str]] = []
    deadline = Deadline(timeout)
    try:
        while len(found) < count and not deadline.expired():
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                if message.error() is None:
                    key, value = message.key(), message.value() or b""
                    found.append((str(message.topic()), key.decode() if key else None, value.decode()))
    finally:
        consumer.close()
    return found


def read_to_end(bootstrap: str, topics: list[str], timeout: float = 60) -> list[tuple[str, str | None, str]]:
    """Every committed (topic, key, value) of `topics` as they stand (each partition read to its end): for
    output whose writer has finished, so that seeing that nothing more came needs no wait."""
    return [
        (topic, key.decode() if key else None, value.decode())
        for topic, key, value in kafka.read_to_end(bootstrap, topics, timeout)
    ]
