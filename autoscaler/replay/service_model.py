"""The service model the trace replay runs on: what one replica does, how long things take, what is seen.

A replica serves one request at a time on its GPUs (a batching server at its sustained throughput): a
request with P prompt and G generated tokens occupies it for `P / prefill + G / decode` seconds, and its
latency — time to first token — is its wait for a replica plus `P / prefill`. Requests wait in one FIFO at
the gateway (a least-loaded router); the queue exists with zero replicas, which is what activation reads.
Concurrency (in-flight requests, what Knative scales on) counts `batch_size` per busy replica plus the queue.

Timing: a new replica on a ready node serves after `cold_start_s` (image, weights, warm-up); a replica that
needs a new node waits `node_provisioning_s` first. Metrics that go through Prometheus are scraped every
`scrape_interval_s` and visible `metric_delay_s` after the scrape; Knative reads its own 1 s concurrency
buckets (../shared/reference/autoscaling.md §3); a trigger with `endpoint` and `pollSeconds` reads the
exporter directly at that interval.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


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

    def service_s(self, prompt: float, generated: float) -> float:
        return prompt / self.prefill_tokens_per_s + generated / self.decode_tokens_per_s

    def prefill_s(self, prompt: float) -> float:
        return prompt / self.prefill_tokens_per_s

    @property
    def requests_per_replica_s(self) -> float:
        """Sustained requests per second of one replica for the mean request."""
        return 1.0 / self.service_s(self.mean_prompt_tokens, self.mean_generated_tokens)

    def with_(self, **changes: Any) -> ServiceModel:
        return replace(self, **changes)

    def render(self) -> dict[str, Any]:
        out = asdict(self)
        out["requests_per_replica_s"] = round(self.requests_per_replica_s, 3)
        return out

    def describe(self) -> list[str]:
        return [
            f"replica: {self.gpus_per_replica} GPU, prefill {self.prefill_tokens_per_s:g} tok/s, "
            f"decode {self.decode_tokens_per_s:g} tok/s "
            f"(≈ {self.requests_per_replica_s:.2f} req/s for {self.mean_prompt_tokens:.0f}+"
            f"{self.mean_generated_tokens:.0f} tokens)",
            f"cold start {self.cold_start_s:g} s; node ({self.gpus_per_node} GPUs) provisioning "
            f"{self.node_provisioning_s:g} s; nodes at start {self.initial_nodes}",
            f"Prometheus scrape every {self.scrape_interval_s:g} s, visible {self.metric_delay_s:g} s later; "
            f"direct reads {self.direct_delay_s:g} s later",
            f"SLO: p{self.slo_percentile:g} time to first token ≤ {self.slo_ttft_s:g} s",
        ]
