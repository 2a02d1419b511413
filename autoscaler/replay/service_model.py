"""The service model the trace replay runs on: what one replica does, how long things take, what is seen.

A replica serves one request at a time on its GPUs (a batching server at its sustained throughput): a
request with P prompt and G generated tokens occupies it for `P / prefill + G / decode` seconds, and its
latency — time to first token — is its wait for a replica plus `P / prefill`. A trace that measured each
request's service time (`Requests.service`, e.g. GenTD26's execution times) replaces the token model: the
request occupies a replica for its measured time and its latency is its queueing delay (`for_trace` also
makes the replica serve one request at a time, batch 1, for Knative's concurrency). Requests wait in one
FIFO at the gateway (a least-loaded router); the queue exists with zero replicas, which is what activation
reads. Concurrency (in-flight requests, what Knative scales on) counts `batch_size` per busy replica plus the
queue.

Timing: a new replica on a ready node serves after `cold_start_s` (image, weights, warm-up); a replica that
needs a new node waits `node_provisioning_s` first. Metrics that go through Prometheus are scraped every
`scrape_interval_s` and visible `metric_delay_s` after the scrape; Knative reads its own 1 s concurrency
buckets (../shared/reference/autoscaling.md §3); a trigger with `endpoint` and `pollSeconds` reads the
exporter directly at that interval.

The replay steps every `tick_s` seconds (`for_trace`: 1 s for a trace up to a day long, 5 s beyond, which
divides the scrape interval, KEDA's poll, the Cluster Autoscaler's scan and the lead times, so controllers see
the same samples; they act, and pods start, at multiples of it): requests are served exactly in between.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from autoscaler.replay.trace import Requests

# Traces longer than this replay in steps of LONG_TICK_S seconds (see the module's docstring).
LONG_TRACE_S = 86400.0
LONG_TICK_S = 5


@dataclass(frozen=True)
class ServiceModel:
    prefill_tokens_per_s: float = 8000.0
    decode_tokens_per_s: float = 1500.0
    gpus_per_replica: int = 1
    # Requests a replica runs at once; it serves them at the batch's throughput, which the replay models as
    # one after another, so concurrency signals (Knative's) count `batch_size` requests per busy replica.
    batch_size: int = 16
    gpus_per_node: int = 8
    cold_start_s: float = 60.0
    node_provisioning_s: float = 180.0
    scrape_interval_s: float = 15.0
    metric_delay_s: float = 5.0
    direct_delay_s: float = 1.0
    slo_ttft_s: float = 2.0
    slo_percentile: float = 99.0
    node_hourly_price: float = 0.0
    initial_nodes: int = 1
    max_nodes: int = 64
    # Used for a rate series (one row per interval, no tokens): every request costs the mean request.
    mean_prompt_tokens: float = 2048.0
    mean_generated_tokens: float = 28.0
    # The trace's mean measured service time when it has one per request (`for_trace`); 0: the token model.
    measured_service_s: float = 0.0
    # Seconds between the replay's steps; 0: `for_trace` chooses (1 s, or 5 s for a trace over a day).
    tick_s: int = 0

    def service_s(self, prompt: float, generated: float) -> float:
        return prompt / self.prefill_tokens_per_s + generated / self.decode_tokens_per_s

    def prefill_s(self, prompt: float) -> float:
        return prompt / self.prefill_tokens_per_s

    def times(self, requests: Requests) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Each request's service time and the part of it inside its latency (the prefill, up to the first
        token). A measured service time replaces the token model's, and then the latency is the wait alone."""
        prefill = np.asarray(requests.prompt / self.prefill_tokens_per_s, dtype=np.float64)
        if requests.service is not None:
            return np.asarray(requests.service, dtype=np.float64), np.zeros(len(requests))
        return prefill + requests.generated / self.decode_tokens_per_s, prefill

    def tick_for(self, duration_s: float) -> int:
        """The replay's step for a trace this long: `tick_s` when set, else 1 s up to a day, 5 s beyond."""
        if self.tick_s > 0:
            return self.tick_s
        return 1 if duration_s <= LONG_TRACE_S else LONG_TICK_S

    def for_trace(self, requests: Requests) -> ServiceModel:
        """This model for `requests`: its replay step chosen, and for measured service times their mean and a
        replica that serves one request at a time (batch 1)."""
        m = replace(self, tick_s=self.tick_for(requests.duration_s))
        if requests.service is not None and len(requests):
            m = replace(m, measured_service_s=float(np.mean(requests.service)), batch_size=1)
        return m

    @property
    def measured(self) -> bool:
        return self.measured_service_s > 0.0

    @property
    def requests_per_replica_s(self) -> float:
        """Sustained requests per second of one replica for the mean request."""
        if self.measured:
            return 1.0 / self.measured_service_s
        return 1.0 / self.service_s(self.mean_prompt_tokens, self.mean_generated_tokens)

    def with_(self, **changes: Any) -> ServiceModel:
        return replace(self, **changes)

    def render(self) -> dict[str, Any]:
        out = asdict(self)
        out["requests_per_replica_s"] = round(self.requests_per_replica_s, 3)
        return out

    def describe(self) -> list[str]:
        replica = (
            f"replica: {self.gpus_per_replica} GPU, one request at a time for its measured service time "
            f"(mean {self.measured_service_s:.1f} s ≈ {self.requests_per_replica_s:.3f} req/s)"
            if self.measured
            else f"replica: {self.gpus_per_replica} GPU, prefill {self.prefill_tokens_per_s:g} tok/s, "
            f"decode {self.decode_tokens_per_s:g} tok/s "
            f"(≈ {self.requests_per_replica_s:.2f} req/s for {self.mean_prompt_tokens:.0f}+"
            f"{self.mean_generated_tokens:.0f} tokens)"
        )
        latency = "queueing delay" if self.measured else "time to first token"
        tick = self.tick_s or 1
        return [
            replica,
            f"cold start {self.cold_start_s:g} s; node ({self.gpus_per_node} GPUs) provisioning "
            f"{self.node_provisioning_s:g} s; nodes at start {self.initial_nodes}",
            f"Prometheus scrape every {self.scrape_interval_s:g} s, visible {self.metric_delay_s:g} s later; "
            f"direct reads {self.direct_delay_s:g} s later",
            f"SLO: p{self.slo_percentile:g} {latency} ≤ {self.slo_ttft_s:g} s",
            f"replay step {tick} s (controllers act and pods start at its multiples; requests are served "
            "exactly in between)",
        ]
