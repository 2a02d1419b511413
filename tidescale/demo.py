"""`tidescale demo`: the end-to-end path that exists today, on real components, with an embedded default.

1. the local environment: Kafka (KRaft), the simulated DCGM exporter, Prometheus scraping it;
2. synthetic LLM requests produced to Kafka;
3. a preprocessing job (PyFlink, or Spark) reading them and writing normalised records to another topic;
4. GPU load on the `llm` replicas following the request volume, seen through PromQL in Prometheus.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from kernel.clock import SYSTEM_CLOCK, Deadline
from kernel.errors import TidescaleError
from streaming.engines import flink, spark
from streaming.functions import builtin
from streaming.transform import KafkaJsonTransform
from tidescale.local import environment, exporter, prometheus

MODELS = ("llama-3-8b", "mistral-7b", "qwen-2-7b")
WORDS = [
    "the",
    "a",
    "GPU",
    "model",
    "token",
    "batch",
    "latency",
    "queue",
    "replica",
    "node",
    "stream",
    "kafka",
    "prompt",
    "answer",
    "fast",
    "slow",
]
UTIL_QUERY = 'avg(DCGM_FI_DEV_GPU_UTIL{namespace="demo", pod=~"llm-.*"})'
POWER_QUERY = 'sum(DCGM_FI_DEV_POWER_USAGE{namespace="demo", pod=~"llm-.*"})'


def add_commands(sub: Any) -> None:
    demo = sub.add_parser("demo", help="run the end-to-end demo on the embedded default")
    demo.add_argument("--engine", choices=("flink", "spark"), default="flink")
    demo.add_argument("--requests", type=int, default=2000, help="synthetic requests to produce")
    demo.add_argument("--state-dir", type=Path, default=Path(".tidescale/demo"))
    demo.add_argument("--keep", action="store_true", help="leave the environment running at the end")
    demo.set_defaults(func=run)


def synthetic_requests(count: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "id": i,
            "model": MODELS[i % len(MODELS)],
            "prompt": "  " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40))).title() + " ",
        }
        for i in range(count)
    ]


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir).absolute()
    try:
        return _run(args, state_dir)
    except TidescaleError as exc:
        print(f"tidescale demo: {exc}")
        return 1
    finally:
        if not args.keep:
            step(f"stopping the environment ({', '.join(environment.down(state_dir)) or 'nothing running'})")


def _run(args: argparse.Namespace, state_dir: Path) -> int:
    from confluent_kafka import Producer

    step(f"starting Kafka, the simulated DCGM exporter and Prometheus (state and logs in {state_dir})")
    env = environment.up(["kafka", "exporter", "prometheus"], state_dir)
    for key, value in env.endpoints().items():
        print(f"    {key:16} {value}")

    run_id = SYSTEM_CLOCK.now().strftime("%H%M%S")
    source, sink = f"llm-requests-{run_id}", f"llm-requests-clean-{run_id}"
    requests = synthetic_requests(args.requests)
    step(f"producing {len(requests)} synthetic LLM requests to Kafka topic {source}")
    producer = Producer({"bootstrap.servers": env.kafka_bootstrap, "linger.ms": 5})
    for record in requests:
        producer.produce(source, json.dumps(record).encode())
    producer.flush(30)

    job = KafkaJsonTransform(
        bootstrap=env.kafka_bootstrap,
        source_topic=source,
        sink_topic=sink,
        schema={"id": "long", "model": "string", "prompt": "string"},
        select={"id": "id", "model": "model", "prompt": "LOWER(TRIM(prompt))", "words": "word_count(prompt)"},
        group_id=f"demo-{run_id}",
        functions=(builtin("word_count"),),
    )
    step(f"running the preprocessing job on {args.engine}: {source} → {sink}")
    started = SYSTEM_CLOCK.monotonic()
    if args.engine == "flink":
        flink.run(job, timeout_s=300)
    else:
        spark.run(job, checkpoint_dir=state_dir / "spark-checkpoints" / run_id, timeout_s=300)
    print(f"    done in {SYSTEM_CLOCK.monotonic() - started:.1f} s (including engine start-up)")

    out = _read(env.kafka_bootstrap, sink, len(requests))
    print(f"    {len(out)} of {len(requests)} records arrived; first: {json.dumps(out[0]) if out else '-'}")

    step("setting the simulated GPU load of the 2 llm replicas; Prometheus scrapes the exporter every second")
    for fraction in (0.1, 0.4, 0.7, 0.95, 0.3):
        exporter.set_load(env.exporter_url, fraction, namespace="demo", deployment="llm")
        util, power = _wait_for(env.prometheus_url, fraction * 100)
        print(f"    load set to {fraction:4.0%}  →  Prometheus: GPU util {util:5.1f} %, power {power:6.0f} W")
    if args.keep:
        step(f"left running; stop with: tidescale local down --state-dir {state_dir}")
    return 0 if len(out) == len(requests) else 1


def _read(bootstrap: str, topic: str, count: int) -> list[dict[str, Any]]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"demo-read-{topic}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    values: list[dict[str, Any]] = []
    deadline = Deadline(30)
    try:
        while len(values) < count and not deadline.expired():
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                values.append(json.loads(message.value() or b"null"))
    finally:
        consumer.close()
    return values


def _wait_for(url: str, util: float, timeout: float = 15) -> tuple[float, float]:
    deadline = Deadline(timeout)
    seen, power = float("nan"), float("nan")
    while not deadline.expired():
        result = prometheus.query(url, UTIL_QUERY)
        if result:
            seen = float(result[0]["value"][1])  # type: ignore[index]
            if abs(seen - util) <= 2:
                break
        SYSTEM_CLOCK.sleep(0.5)
    power_result = prometheus.query(url, POWER_QUERY)
    if power_result:
        power = float(power_result[0]["value"][1])  # type: ignore[index]
    return seen, power
