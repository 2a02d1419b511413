"""Explicit wiring of the scheduler process: API clients, informers -> cache -> loop, the binder's writer,
the Event recorder, `/metrics` and `/healthz`, and leader election (only the Lease holder binds).

Informers: nodes, every pod (bound by anyone: they count against capacity and devices), Volcano PodGroups
and Queues when the API server serves `scheduling.volcano.sh` (without those CRDs the scheduler still
places plain pods and coscheduling-labelled gangs).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from jobs.scheduler.cache import SchedulerCache
from jobs.scheduler.config import SchedulerConfig
from jobs.scheduler.kube import VOLCANO, ClusterWriter
from jobs.scheduler.loop import Scheduler
from jobs.scheduler.metrics import SchedulerMetrics
from kernel.clock import SYSTEM_CLOCK, Clock
from kernel.errors import PermanentError
from kernel.http_endpoint import HttpEndpoint
from kernel.informer import Informer
from kernel.kube_events import EventRecorder
from kernel.kubeclient import api_client
from kernel.leader import LeaderElector
from kernel.ratelimit import TokenBucket

log = logging.getLogger(__name__)

REPORTING_CONTROLLER = "tidescale.io/scheduler"


@dataclass(frozen=True)
class Options:
    kubeconfig: str | None = None
    config: SchedulerConfig = field(default_factory=SchedulerConfig)
    leader_elect: bool = False
    lease_namespace: str = "default"
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    metrics_address: str = "127.0.0.1"
    metrics_port: int = 0


def _serves_volcano(api: Any) -> bool:
    try:
        groups = client.ApisApi(api).get_api_versions()
    except Exception as e:  # the API server is unreachable: the informers will say so and retry
        log.warning("discovery failed: %s", e)
        return False
    return any(g.name == VOLCANO[0] for g in groups.groups or [])


class Running:
    """The scheduler process's parts, started and stopped together."""

    def __init__(self, options: Options, clock: Clock = SYSTEM_CLOCK) -> None:
        cfg = options.config
        self.options = options
        self.watch_api = api_client(options.kubeconfig, pool=8)
        self.write_api = api_client(options.kubeconfig, pool=cfg.bind_workers + 4)
        self.events_api = api_client(options.kubeconfig, pool=4)
        self.cache = SchedulerCache(cfg.scheduler_name, cfg.node_selector)
        self.metrics = SchedulerMetrics()
        self.leading = threading.Event()
        self.writer = ClusterWriter(self.write_api, TokenBucket(cfg.qps, cfg.burst, clock))
        self.events = EventRecorder(self.events_api, REPORTING_CONTROLLER, clock, asynchronous=True)
        self.scheduler = Scheduler(
            self.cache,
            self.writer,
            self.events,
            cfg,
            self.metrics,
            clock,
            is_leader=self.leading.is_set,
        )
        core = client.CoreV1Api(self.watch_api)
        custom = client.CustomObjectsApi(self.watch_api)
        wake = self.scheduler.on_change
        self.informers = [
            Informer(
                "nodes", core.list_node, handlers=(lambda k, o: wake(self.cache.on_node(k, o)),), clock=clock
            ),
            Informer(
                "pods",
                core.list_pod_for_all_namespaces,
                handlers=(lambda k, o: wake(self.cache.on_pod(k, o)),),
                clock=clock,
            ),
        ]
        if _serves_volcano(self.watch_api):
            self.cache.queues_served = True
            group, version = VOLCANO
            self.informers += [
                Informer(
                    "podgroups",
                    custom.list_cluster_custom_object,
                    (group, version, "podgroups"),
                    handlers=(lambda k, o: wake(self.cache.on_group(k, o)),),
                    clock=clock,
                ),
                Informer(
                    "queues",
                    custom.list_cluster_custom_object,
                    (group, version, "queues"),
                    handlers=(lambda k, o: wake(self.cache.on_queue(k, o)),),
                    clock=clock,
                ),
            ]
        else:
            log.warning(
                "scheduling.volcano.sh is not served: no PodGroups or Queues (plain pods still scheduled)"
            )
        self.http = HttpEndpoint(
            options.metrics_address, options.metrics_port, self.metrics.render, self.leading.is_set
        )
        self.stop_event = threading.Event()
        self.elector = (
            LeaderElector(
                self.write_api,
                options.lease_namespace,
                f"{cfg.scheduler_name}-scheduler",
                options.identity,
                clock=clock,
            )
            if options.leader_elect
            else None
        )
        self._loop_stop: threading.Event | None = None
        self._loop: threading.Thread | None = None

    def start(self, timeout: float = 60) -> Running:
        self.http.start()
        for informer in self.informers:
            informer.start()
        for informer in self.informers:
            if not informer.wait_synced(timeout):
                raise PermanentError(f"informer {informer.name} did not sync within {timeout:.0f} s")
        if self.elector is None:
            self._start_loop()
        else:
            self.elector.start(self._start_loop, self._stop_loop, self.stop_event)
        return self

    def _start_loop(self) -> None:
        if self._loop is not None:
            return
        log.info("leading: scheduling pods with schedulerName %s", self.options.config.scheduler_name)
        self.leading.set()
        self.metrics.leader.set(1)
        self._loop_stop = threading.Event()
        self._loop = threading.Thread(
            target=self.scheduler.run, args=(self._loop_stop,), name="schedule", daemon=True
        )
        self._loop.start()
        self.scheduler.wake()

    def _stop_loop(self) -> None:
        self.leading.clear()
        self.metrics.leader.set(0)
        if self._loop_stop is not None:
            self._loop_stop.set()
            self.scheduler.wake()
        if self._loop is not None:
            self._loop.join(timeout=15)
        self._loop = self._loop_stop = None

    def stop(self) -> None:
        self.stop_event.set()
        self._stop_loop()
        for informer in self.informers:
            informer.stop()
        self.scheduler.close()
        self.http.stop()
