"""`tidescale controller run` put together: every part of the controller built and connected in one place.

Informers (ScalingPolicies, NodePools, Deployments, StatefulSets, Pods) feed the loop and wake it; metric
sources (Prometheus, Kafka lag) read in batches; node-pool providers (KWOK, Cluster API); event sinks
(Kubernetes Events, a Kafka topic, metrics) behind a queue; the HTTP endpoint (Alertmanager webhook,
/metrics, and the web console unless `console` is off: its hub is one more event sink, fed on the loop's
thread so that the page shows each decision as it is emitted); and leader election, so that of two replicas
only the leader reconciles.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from autoscaler.console.server import Console
from autoscaler.controller.kube import api as kube
from autoscaler.controller.kube.targets import ClusterTargets
from autoscaler.controller.loop import Controller, ControllerConfig, CycleReport, QueuedSink
from autoscaler.controller.pools import providers
from autoscaler.controller.ports import EventSink, MetricRequest, ReadingKey
from autoscaler.controller.sinks.http import ControllerHTTP
from autoscaler.controller.sinks.kube_events import KubernetesEventSink
from autoscaler.controller.sinks.metrics import ControllerMetrics, MetricsEventSink
from autoscaler.controller.sources import registry as sources
from autoscaler.controller.sources.kafka_events import KafkaEventSink
from autoscaler.controller.sources.kafka_lag import KafkaLagSource
from autoscaler.controller.sources.prometheus import PrometheusSource
from autoscaler.core.decide import Decision
from autoscaler.core.triggers import Reading, TriggerRegistry, register_builtins
from kernel.clock import SYSTEM_CLOCK, Clock
from kernel.informer import Informer, object_key
from kernel.kubeclient import api_client
from kernel.leader import LeaderElector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    kubeconfig: str | None = None  # None: in-cluster config
    prometheus_url: str | None = None
    kafka_bootstrap: str | None = None
    events_topic: str | None = "tidescale.scaling-events"
    kubernetes_events: bool = True
    host: str = "127.0.0.1"
    webhook_port: int = (
        0  # the Alertmanager webhook (and /metrics unless metrics_port is set); 0: a free port
    )
    metrics_port: int | None = None
    leader_elect: bool = False
    lease_namespace: str = "default"
    lease_name: str = "tidescale-controller"
    identity: str = field(default_factory=lambda: f"{platform.node()}-{os.getpid()}")
    sync_seconds: float = 15.0
    prometheus_scrape_seconds: float = 15.0
    console: bool = True  # the web console on the webhook's endpoint (its host: loopback unless told)


class Running:
    """A started controller: `stop()` ends every thread it started and flushes its sinks."""

    def __init__(self, options: Options, clock: Clock = SYSTEM_CLOCK) -> None:
        self.options = options
        self.stop_event = threading.Event()
        self.api = api_client(options.kubeconfig)
        # 0. the trigger types, once: policies are compiled against them, sources read them
        self.triggers = register_builtins(TriggerRegistry())
        # 1. metric sources, one registry (trigger type → source)
        self.sources = sources.MetricSourceRegistry(self.triggers)
        if options.prometheus_url:
            self.sources.register(
                PrometheusSource(
                    options.prometheus_url,
                    self.triggers,
                    scrape_interval_s=options.prometheus_scrape_seconds,
                )
            )
        if options.kafka_bootstrap:
            self.sources.register(KafkaLagSource(options.kafka_bootstrap))
        self.metrics = ControllerMetrics()
        # 2. sinks: metrics at once; Kubernetes Events and Kafka records off the loop's thread
        slow: list[EventSink] = []
        if options.kubernetes_events:
            slow.append(KubernetesEventSink(self.api, clock=clock))
        self.kafka_sink = (
            KafkaEventSink(options.kafka_bootstrap, options.events_topic)
            if options.kafka_bootstrap and options.events_topic
            else None
        )
        if self.kafka_sink is not None:
            slow.append(self.kafka_sink)
        self.queued = QueuedSink(slow)
        # the console: its hub takes each event at once (it only enqueues), and samples the last decisions
        self.console = (
            Console(self.api, options.prometheus_url, clock, decisions=self._decisions)
            if options.console
            else None
        )
        # 3. the cluster: targets and node pools
        self.scale = kube.ScaleClient(self.api)
        self.targets = ClusterTargets(self.api, self.scale)
        self.providers = providers.NodePoolProviderRegistry()
        providers.register_builtins(self.providers, self.api)
        self.controller = Controller(
            self.targets,
            self.scale,
            self._read,
            sinks=[MetricsEventSink(self.metrics), self.queued, *([self.console] if self.console else [])],
            status=kube.StatusWriter(self.api),
            providers=self.providers.as_mapping(),
            config=ControllerConfig(sync_seconds=options.sync_seconds),
            clock=clock,
            on_cycle=self._on_cycle,
            registry=self.triggers,
        )
        custom = client.CustomObjectsApi(self.api)
        self.policies = Informer(
            "scalingpolicies",
            custom.list_cluster_custom_object,
            (kube.GROUP, kube.VERSION, kube.POLICIES),
            handlers=(self._on_policy,),
        )
        self.pools = Informer(
            "nodepools",
            custom.list_cluster_custom_object,
            (kube.GROUP, kube.VERSION, kube.POOLS),
            handlers=(self._on_pool,),
        )
        if self.console is not None:
            self.policies.add_handler(self.console.on_policy)
        self.targets.on_pending_gpu_pod(self._on_pending)
        self.http = ControllerHTTP(
            options.host,
            options.webhook_port,
            self.controller.find,
            self.controller.wake,
            self.metrics.render,
            get=self.console.handle if self.console is not None else None,
        )
        self.metrics_http = (
            ControllerHTTP(
                options.host,
                options.metrics_port,
                self.controller.find,
                self.controller.wake,
                self.metrics.render,
            )
            if options.metrics_port is not None and options.metrics_port != options.webhook_port
            else None
        )
        self.leading = threading.Event()
        self.elector = (
            LeaderElector(
                self.api, options.lease_namespace, options.lease_name, options.identity, clock=clock
            )
            if options.leader_elect
            else None
        )
        for server in (self.http, self.metrics_http):
            if server is not None:
                server.ready = self.leading.is_set
        self._loop_stop: threading.Event | None = None
        self._loop_thread: threading.Thread | None = None

    def _read(self, requests: Sequence[MetricRequest], now: float) -> Mapping[ReadingKey, Reading]:
        readings = self.sources.read_all(requests, now)
        for req in requests:
            got = readings.get((req.policy, req.trigger))
            if got is not None and got.error:
                self.metrics.metric_error(req.spec.type)
        return readings

    def _decisions(self) -> list[Decision]:
        """Each policy's last decision (the console's chart samples them between events)."""
        return [e.last for e in list(self.controller.entries.values()) if e.last is not None]

    def _on_cycle(self, report: CycleReport, sweep: bool) -> None:
        self.metrics.observe_reconcile(report.seconds)
        for kind, count in report.failures.items():
            self.metrics.scale_failure(kind, count)
        if sweep:
            self.metrics.observe_sweep(report.seconds)
            log.info(
                "sweep: %d policies, %d decided, %d scaled, %d metric requests in %.3f s",
                report.reconciled,
                report.decided,
                report.scaled,
                report.requests,
                report.seconds,
            )

    def _on_policy(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            key = object_key(obj)
            self.controller.remove(key)
            self.metrics.forget(key)
            return
        entry = self.controller.upsert(obj)
        self.metrics.set_ready(entry.key, entry.error is None)

    def _on_pool(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            self.controller.remove_pool(str(obj.get("metadata", {}).get("name")))
        else:
            self.controller.upsert_pool(obj)

    def _on_pending(self, namespace: str, pod: dict[str, Any]) -> None:
        keys = [
            k
            for k, e in list(self.controller.entries.items())
            if e.namespace == namespace and e.policy is not None and e.policy.spec.node_pool
        ]
        if keys:
            self.controller.wake(keys, f"pending GPU pod {pod.get('metadata', {}).get('name')}")

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> Running:
        if self.console is not None:
            self.console.start()
        self.http.start()
        if self.metrics_http is not None:
            self.metrics_http.start()
        self.targets.start(timeout)
        self.pools.start().wait_synced(timeout)
        self.policies.start().wait_synced(timeout)
        if self.elector is None:
            self._start_loop()
        else:
            self.elector.start(self._start_loop, self._stop_loop, self.stop_event)
        return self

    def _start_loop(self) -> None:
        if self._loop_thread is not None:
            return
        log.info("leading: reconciling %d policies", len(self.controller.entries))
        self.leading.set()
        self.metrics.set_leader(True)
        self._loop_stop = threading.Event()
        self._loop_thread = threading.Thread(
            target=self.controller.run, args=(self._loop_stop,), name="reconcile", daemon=True
        )
        self._loop_thread.start()

    def _stop_loop(self) -> None:
        self.leading.clear()
        self.metrics.set_leader(False)
        if self._loop_stop is not None:
            self._loop_stop.set()
        if self._loop_thread is not None:
            self._loop_thread.join(timeout=15)
        self._loop_thread = self._loop_stop = None

    def stop(self) -> None:
        self.stop_event.set()
        self._stop_loop()
        for informer in (self.policies, self.pools):
            informer.stop()
        self.targets.stop()
        if self.console is not None:
            self.console.stop()  # ends the event streams, so that the endpoint's threads end too
        self.http.stop()
        if self.metrics_http is not None:
            self.metrics_http.stop()
        self.queued.close()
        if self.kafka_sink is not None:
            self.kafka_sink.close()
        self.sources.close()  # the Kafka admin clients' threads, the Prometheus HTTP client
