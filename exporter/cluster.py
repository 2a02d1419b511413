"""The simulated exporter following a real cluster (`tidescale exporter --kubeconfig FILE`): the GPUs of
its nodes and the pods that hold them, kept current by watches, as the simulator's device set.

Two watches (nodes; pods not yet terminated) with the official `kubernetes` client keep caches of the
GPU nodes and GPU pods (`allocation.gpu_node`/`gpu_pod`); every event recomputes the pure allocation
(keeping each container's GPUs) and, when the devices differ, replaces the simulator's set atomically.
A watch that ends is resumed from its last resource version; one that expired (410 Gone) or failed
lists again after a short backoff. The initial lists happen in `start()`, so the exporter serves the
cluster's GPUs from its first scrape.

I/O: the Kubernetes API only. Time through the injected `Clock` (backoff waits use the stop event).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from exporter import allocation
from exporter.allocation import ClusterSettings, GpuNode, GpuPod, Holder, Slot
from exporter.simulator import Simulator
from kernel.clock import SYSTEM_CLOCK, Clock
from kernel.errors import TemporaryError

log = logging.getLogger(__name__)

# The API server ends each watch after this long; the watch is resumed from its last resource version.
WATCH_SECONDS = 30
# The client gives up on a silent connection a little after the server should have ended the watch.
REQUEST_TIMEOUT_S = WATCH_SECONDS + 15
RETRY_BACKOFF_S = 1.0
# Terminated pods hold no GPU; with this selector the watch reports a pod that finishes as DELETED.
LIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"
JOIN_TIMEOUT_S = 2.0

T = TypeVar("T")


class ClusterFollower:
    """Keeps `simulator`'s devices equal to the cluster's GPUs and their holders.

    `start()` lists nodes and pods (raising `TemporaryError` when the API server cannot be reached) and
    starts the watch threads; `refresh()` recomputes from the caches (the watches call it on each event);
    `stop()` ends the watches.
    """

    def __init__(
        self,
        api: client.ApiClient,
        simulator: Simulator,
        settings: ClusterSettings = allocation.DEFAULT_SETTINGS,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._simulator = simulator
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._claims: Mapping[Slot, Holder] = {}
        self._shortfalls: tuple[str, ...] = ()
        self._nodes = _Reflector[GpuNode](
            "nodes", self._core.list_node, allocation.gpu_node, self._changed, self._stop
        )
        self._pods = _Reflector[GpuPod](
            "pods",
            self._core.list_pod_for_all_namespaces,
            allocation.gpu_pod,
            self._changed,
            self._stop,
            field_selector=LIVE_PODS,
        )
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """1. list nodes and pods; 2. compute the devices; 3. watch for changes in the background."""
        for reflector in (self._nodes, self._pods):
            reflector.list_now()
        self.refresh()
        self._threads = [
            threading.Thread(target=r.run, name=f"exporter-watch-{r.kind}", daemon=True)
            for r in (self._nodes, self._pods)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for reflector in (self._nodes, self._pods):
            reflector.interrupt()
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT_S)

    def refresh(self) -> bool:
        """Allocate the cached pods onto the cached nodes and hand the devices to the simulator; returns
        whether the simulator's devices changed."""
        with self._lock:
            nodes = self._nodes.values()
            pods = self._pods.values()
            result = allocation.allocate(nodes, pods, self._claims)
            self._claims = result.holders
            if result.shortfalls != self._shortfalls:
                for problem in set(result.shortfalls) - set(self._shortfalls):
                    log.warning("GPU allocation: %s", problem)
                self._shortfalls = result.shortfalls
            changed = self._simulator.replace_devices(
                allocation.cluster_devices(nodes, pods, result, self._settings)
            )
        if changed:
            gpus = sum(n.gpus for n in nodes)
            log.info(
                "following the cluster: %d GPUs on %d nodes, %d held", gpus, len(nodes), len(result.holders)
            )
        return changed

    def _changed(self) -> None:
        self.refresh()


@dataclass
class _Cache(Generic[T]):
    items: dict[str, T]
    resource_version: str


class _Reflector(Generic[T]):
    """One kind's list-then-watch loop into a cache of parsed values (objects that parse to None are
    kept out), calling `on_change` after each event that changes the cache."""

    def __init__(
        self,
        kind: str,
        list_fn: Callable[..., Any],
        parse: Callable[[Mapping[str, Any]], T | None],
        on_change: Callable[[], None],
        stop: threading.Event,
        **selectors: str,
    ) -> None:
        self.kind = kind
        self._list_fn = list_fn
        self._parse = parse
        self._on_change = on_change
        self._stop = stop
        self._selectors = selectors
        self._lock = threading.Lock()
        self._cache = _Cache[T]({}, "")
        self._watch: watch.Watch | None = None

    def values(self) -> list[T]:
        with self._lock:
            return list(self._cache.items.values())

    def list_now(self) -> None:
        """Replace the cache with a fresh list; `TemporaryError` when the API server does not answer."""
        try:
            response = self._list_fn(
                _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S, **self._selectors
            )
            body = json.loads(response.data)
        except (ApiException, HTTPError, OSError, ValueError) as e:
            raise TemporaryError(f"cannot list {self.kind}: {_describe(e)}") from e
        items: dict[str, T] = {}
        for obj in body.get("items") or []:
            parsed = self._parse(obj)
            if parsed is not None:
                items[_key(obj)] = parsed
        with self._lock:
            self._cache = _Cache(items, str((body.get("metadata") or {}).get("resourceVersion", "")))

    def run(self) -> None:
        """Watch until stopped: resume after a watch ends, list again after it expires or fails."""
        while not self._stop.is_set():
            try:
                for event in self._events():
                    if self._apply(event):
                        self._on_change()
            except ApiException as e:
                if e.status != 410:  # 410 Gone: the resource version expired; list again at once
                    log.warning("watching %s failed (%s); listing again", self.kind, _describe(e))
                    self._stop.wait(RETRY_BACKOFF_S)
                self._relist()
            except (HTTPError, OSError, ValueError) as e:
                if self._stop.is_set():
                    return
                log.warning("watching %s failed (%s); listing again", self.kind, _describe(e))
                self._stop.wait(RETRY_BACKOFF_S)
                self._relist()
            except Exception:  # unexpected: log it, keep following the cluster
                log.exception("watching %s failed unexpectedly; listing again", self.kind)
                self._stop.wait(RETRY_BACKOFF_S)
                self._relist()

    def interrupt(self) -> None:
        """Make a watch in progress end at its next event (the stop event ends the loop)."""
        current = self._watch
        if current is not None:
            current.stop()

    def _events(self) -> Iterator[Mapping[str, Any]]:
        with self._lock:
            version = self._cache.resource_version
        list_fn = self._list_fn

        # No docstring on purpose: the client then finds no return type and yields the objects as
        # plain JSON mappings (what `parse` reads), and still turns an ERROR event into `ApiException`.
        def raw(**kwargs: Any) -> Any:
            return list_fn(**kwargs)

        self._watch = watch.Watch()
        stream = self._watch.stream(
            raw,
            resource_version=version,
            timeout_seconds=WATCH_SECONDS,
            allow_watch_bookmarks=True,
            _request_timeout=REQUEST_TIMEOUT_S,
            **self._selectors,
        )
        for event in stream:
            if self._stop.is_set():
                return
            yield event

    def _apply(self, event: Mapping[str, Any]) -> bool:
        """Update the cache and its resource version; returns whether a cached value changed."""
        obj = event.get("object") or {}
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        kind = event.get("type")
        with self._lock:
            if version:
                self._cache.resource_version = version
            if kind == "BOOKMARK":
                return False
            key = _key(obj)
            parsed = None if kind == "DELETED" else self._parse(obj)
            before = self._cache.items.get(key)
            if parsed is None:
                self._cache.items.pop(key, None)
            else:
                self._cache.items[key] = parsed
            return parsed != before

    def _relist(self) -> None:
        while not self._stop.is_set():
            try:
                self.list_now()
            except TemporaryError as e:
                log.warning("%s; retrying", e)
                self._stop.wait(RETRY_BACKOFF_S)
                continue
            self._on_change()
            return


def _key(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("uid") or f"{metadata.get('namespace', '')}/{metadata.get('name', '')}")


def _describe(e: BaseException) -> str:
    if isinstance(e, ApiException):
        return f"HTTP {e.status} {e.reason}".strip()
    return str(e) or type(e).__name__
