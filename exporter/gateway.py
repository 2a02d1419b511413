"""The simulated inference gateway: services whose requests arrive at a set rate in front of a Deployment's
replicas, the queue between them, and the series a real gateway exports.

Per service (set by `PUT /traffic`, a `TrafficRequest`):

- Requests arrive at `requestsPerSecond`, each with `promptTokens` and `generatedTokens`.
- One replica serves `replicaRequestsPerSecond`; without it, `1 / (promptTokens / prefillTokensPerSecond +
  generatedTokens / decodeTokensPerSecond)` — the capacity profile of the SLO trigger (8,000 prefill and
  1,500 decode tokens per second by default, `examples/policies/llm-inference.yaml`'s).
- The replicas are the Deployment's pods that hold GPUs (the caller counts them).
- Over a step of `dt` seconds the queue moves by `(arrivals − capacity × replicas) × dt`, never below 0 and
  never above `maxQueue` (requests beyond it are turned away, as a gateway answers 429).
- The counters count requests and their tokens as they arrive (as the trace replay's gateway counts them), so
  their rates are the offered load whatever the replicas do: `gateway_requests_total`,
  `gateway_prompt_tokens_total`, `gateway_generated_tokens_total`; the gauge `gateway_queue_depth` is the
  requests waiting. All carry `service="<name>"`; a service keeps its series (and its counters their values)
  once it has been set, so a rate over them reads 0, not nothing, when its traffic stops.
- The GPU load of the Deployment's pods at the end of a step: 1 while requests wait, else the arrivals over
  the replicas' capacity (at most 1); 0 without replicas.

Pure: values in, values out; time enters only as `dt`. No I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

# The capacity profile of `examples/policies/llm-inference.yaml` (one H100 serving a code model with vLLM).
DEFAULT_PREFILL_TOKENS_PER_S = 8000.0
DEFAULT_DECODE_TOKENS_PER_S = 1500.0
DEFAULT_MAX_QUEUE = 10_000

# (metric, HELP, the `Service` field it counts)
COUNTERS = (
    ("gateway_requests_total", "Requests received by the gateway.", "requests"),
    ("gateway_prompt_tokens_total", "Prompt tokens of the requests received.", "prompt_tokens"),
    ("gateway_generated_tokens_total", "Tokens to generate for the requests received.", "generated_tokens"),
)
QUEUE_DEPTH = ("gateway_queue_depth", "Requests waiting at the gateway for a replica.")


class BadTrafficRequest(ValueError):
    """The body is not a valid traffic request (HTTP 400)."""


class TrafficRequest(BaseModel):
    """A `PUT /traffic` body: one service's arrivals and the Deployment that serves them."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)

    service: str = Field(min_length=1)
    namespace: str = Field(min_length=1)
    deployment: str = Field(min_length=1)
    requests_per_second: Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
    prompt_tokens: int = Field(2048, ge=0)
    generated_tokens: int = Field(64, ge=0)
    prefill_tokens_per_second: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = (
        DEFAULT_PREFILL_TOKENS_PER_S
    )
    decode_tokens_per_second: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = (
        DEFAULT_DECODE_TOKENS_PER_S
    )
    replica_requests_per_second: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] | None = None
    max_queue: int = Field(DEFAULT_MAX_QUEUE, ge=0)


def parse_traffic_request(body: bytes) -> TrafficRequest:
    """Validate a JSON body; raise `BadTrafficRequest` with every problem on one line."""
    try:
        return TrafficRequest.model_validate_json(body)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"])
            reason = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{where}: {reason}" if where else reason)
        raise BadTrafficRequest("; ".join(problems)) from e


def replica_capacity(traffic: TrafficRequest) -> float:
    """Requests per second one replica serves: as given, else from the tokens and the capacity profile."""
    if traffic.replica_requests_per_second is not None:
        return traffic.replica_requests_per_second
    seconds = (
        traffic.prompt_tokens / traffic.prefill_tokens_per_second
        + traffic.generated_tokens / traffic.decode_tokens_per_second
    )
    return 1.0 / seconds if seconds > 0 else math.inf


@dataclass(frozen=True)
class Service:
    """One service's traffic and what the gateway has counted for it."""

    traffic: TrafficRequest
    requests: float = 0.0
    prompt_tokens: float = 0.0
    generated_tokens: float = 0.0
    queue: float = 0.0
    replicas: int = 0  # at the end of the last step
    load: float = 0.0  # the GPU load of its pods at the end of the last step

    @property
    def busy(self) -> bool:
        """Whether requests arrive or wait: the gateway then sets its Deployment's GPU load."""
        return self.traffic.requests_per_second > 0 or self.queue > 0


GatewayState = Mapping[str, Service]  # by service name


def with_traffic(state: GatewayState, traffic: TrafficRequest) -> dict[str, Service]:
    """The gateway after `traffic` is set: a new service starts at zero; a known one keeps its counters and
    queue (what is queued for it is now served by the Deployment named)."""
    old = state.get(traffic.service)
    service = Service(traffic) if old is None else replace(old, traffic=traffic)
    return {**state, traffic.service: replace(service, load=gpu_load(service, service.replicas))}


def step(service: Service, replicas: int, dt: float) -> Service:
    """`service` `dt` seconds later, served by `replicas` replicas over the step."""
    t = service.traffic
    dt = max(0.0, dt)
    arrived = t.requests_per_second * dt
    # what the replicas could serve in the step (infinite for requests of no tokens: they take no time)
    served = replica_capacity(t) * replicas * dt if replicas > 0 and dt > 0 else 0.0
    queue = min(float(t.max_queue), max(0.0, service.queue + arrived - served))
    after = replace(
        service,
        requests=service.requests + arrived,
        prompt_tokens=service.prompt_tokens + arrived * t.prompt_tokens,
        generated_tokens=service.generated_tokens + arrived * t.generated_tokens,
        queue=queue,
        replicas=max(0, replicas),
    )
    return replace(after, load=gpu_load(after, after.replicas))


def advance(state: GatewayState, replicas: Mapping[str, int], dt: float) -> dict[str, Service]:
    """Every service `dt` seconds later; `replicas` by service name (a missing one has none)."""
    return {name: step(s, replicas.get(name, 0), dt) for name, s in state.items()}


def gpu_load(service: Service, replicas: int) -> float:
    """The load (0–1) of each of the service's replicas: 1 while requests wait, else the arrivals over the
    replicas' capacity; 0 without replicas."""
    if replicas <= 0:
        return 0.0
    if service.queue > 0:
        return 1.0
    return min(1.0, service.traffic.requests_per_second / (replica_capacity(service.traffic) * replicas))


def describe(service: Service) -> dict[str, Any]:
    """A service as `GET /traffic` and `PUT /traffic` answer: its settings, then what the gateway sees."""
    return {
        **service.traffic.model_dump(by_alias=True, exclude_none=True),
        "replicaCapacity": round(replica_capacity(service.traffic), 6),
        "replicas": service.replicas,
        "queue": math.floor(service.queue),
        "load": round(service.load, 6),
        "requests": math.floor(service.requests),
    }


def render(state: GatewayState) -> str:
    """Prometheus text (0.0.4) of every service's series, services in name order; empty without services.
    Counts are whole (`floor`): a gateway counts requests and tokens, not fractions of them."""
    if not state:
        return ""
    names = sorted(state)
    lines: list[str] = []
    for metric, help_text, field in COUNTERS:
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
        lines += [f'{metric}{{service="{_escape(n)}"}} {math.floor(getattr(state[n], field))}' for n in names]
    metric, help_text = QUEUE_DEPTH
    lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
    lines += [f'{metric}{{service="{_escape(n)}"}} {math.floor(state[n].queue)}' for n in names]
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
