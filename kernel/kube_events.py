"""A recorder of events.k8s.io/v1 Events on any object, with client-go's aggregation into series.

The first occurrence creates an Event; a repeat (same object, reason, type and note within 10 minutes)
does not create a new object: the first repeat patches `series` at once, later ones at most every
`series_patch_seconds`, and `flush()` writes any pending count. Failures are logged and counted, never
raised: an Event must never stop the loop that reports it. With `asynchronous=True` occurrences go through a
bounded queue to one writer thread (a hot loop never waits on the API server; when the queue is full an
occurrence is dropped and counted in `dropped`).
"""

from __future__ import annotations

import logging
import platform
import queue
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kernel.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

AGGREGATE_SECONDS = 600.0
REQUEST_TIMEOUT = 5.0
NOTE_LIMIT = 1024


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str = ""

    def body(self) -> dict[str, str]:
        out = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        if self.uid:
            out["uid"] = self.uid
        return out


@dataclass
class _Series:
    namespace: str
    name: str
    count: int
    written: int
    last_seen: datetime
    last_written: datetime
    annotations: dict[str, str]  # the latest occurrence's (written with the series count)


@dataclass(frozen=True)
class _Occurrence:
    regarding: ObjectRef
    reason: str
    note: str
    type_: str
    action: str
    related: ObjectRef | None
    annotations: Mapping[str, str] | None


def micro_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EventRecorder:
    def __init__(
        self,
        api_client: Any,
        controller: str,
        clock: Clock = SYSTEM_CLOCK,
        *,
        instance: str | None = None,
        series_patch_seconds: float = 30.0,
        cache_size: int = 4096,
        asynchronous: bool = False,
        queue_size: int = 10_000,
    ) -> None:
        self._api = client.EventsV1Api(api_client)
        self._queue: queue.Queue[_Occurrence | None] | None = (
            queue.Queue(maxsize=queue_size) if asynchronous else None
        )
        self._writer: threading.Thread | None = None
        self.dropped = 0
        self.controller = controller
        self.instance = (instance or f"{controller.rpartition('/')[2]}-{platform.node()}")[:128]
        self._clock = clock
        self._patch_every = series_patch_seconds
        self._cache: OrderedDict[tuple[str, ...], _Series] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.created = 0
        self.patched = 0
        self.errors = 0

    def record(
        self,
        regarding: ObjectRef,
        reason: str,
        note: str,
        *,
        type_: str = "Normal",
        action: str = "",
        related: ObjectRef | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        occurrence = _Occurrence(regarding, reason, note, type_, action or reason, related, annotations)
        if self._queue is not None:
            if self._writer is None:
                self._writer = threading.Thread(target=self._drain, name="events", daemon=True)
                self._writer.start()
            try:
                self._queue.put_nowait(occurrence)
            except queue.Full:
                self.dropped += 1
            return
        self._write(occurrence)

    def _drain(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._write(item)

    def close(self) -> None:
        """Write what is queued (asynchronous mode), stop the writer, flush the series counts."""
        if self._queue is not None and self._writer is not None:
            self._queue.put(None)
            self._writer.join(timeout=30)
            self._writer = None
        self.flush()

    def _write(self, o: _Occurrence) -> None:
        try:
            self._send(o)
        except Exception as e:
            self.errors += 1
            status = f"{e.status} {e.reason}" if isinstance(e, ApiException) else type(e).__name__
            log.warning(
                "event %s on %s %s/%s not written: %s",
                o.reason,
                o.regarding.kind,
                o.regarding.namespace,
                o.regarding.name,
                status,
                exc_info=not isinstance(e, ApiException),
            )

    def _send(self, o: _Occurrence) -> None:
        regarding, reason, type_, action = o.regarding, o.reason, o.type_, o.action
        related, annotations, note = o.related, o.annotations, o.note
        note = note if len(note) <= NOTE_LIMIT else note[: NOTE_LIMIT - 1] + "…"
        namespace = regarding.namespace or "default"
        key = (regarding.api_version, regarding.kind, namespace, regarding.name, reason, type_, note)
        now = self._clock.now()
        with self._lock:
            s = self._cache.get(key)
            if s is not None and (now - s.last_seen).total_seconds() > AGGREGATE_SECONDS:
                del self._cache[key]
                s = None
            if s is not None:
                s.count += 1
                s.last_seen = now
                s.annotations = dict(annotations or {})
                self._cache.move_to_end(key)
                due = s.written == 1 or (now - s.last_written).total_seconds() >= self._patch_every
        if s is not None:
            if due:
                self._patch(s)
            return
        name = f"{regarding.name}.{int(now.timestamp() * 1e9):x}"
        body: dict[str, Any] = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace, "annotations": dict(annotations or {})},
            "eventTime": micro_time(now),
            "reportingController": self.controller,
            "reportingInstance": self.instance,
            "action": action,
            "reason": reason,
            "note": note,
            "type": type_,
            "regarding": regarding.body(),
        }
        if related is not None:
            body["related"] = related.body()
        self._api.create_namespaced_event(namespace, body, _request_timeout=REQUEST_TIMEOUT)
        self.created += 1
        with self._lock:
            self._cache[key] = _Series(namespace, name, 1, 1, now, now, dict(annotations or {}))
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def flush(self) -> None:
        """Write the series counts that repeats have raised since the last write."""
        with self._lock:
            pending = [s for s in self._cache.values() if s.count > s.written]
        for s in pending:
            try:
                self._patch(s)
            except Exception:
                self.errors += 1
                log.warning("event %s/%s: series not updated", s.namespace, s.name, exc_info=True)

    def _patch(self, s: _Series) -> None:
        with self._lock:
            count, seen, annotations = s.count, s.last_seen, dict(s.annotations)
        body: dict[str, Any] = {"series": {"count": count, "lastObservedTime": micro_time(seen)}}
        if annotations:
            body["metadata"] = {"annotations": annotations}
        try:
            self._api.patch_namespaced_event(
                s.name,
                s.namespace,
                body,
                _content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as e:
            if e.status == 404:
                with self._lock:
                    for k, v in list(self._cache.items()):
                        if v is s:
                            del self._cache[k]
            raise
        self.patched += 1
        with self._lock:
            s.written = max(s.written, count)
            s.last_written = self._clock.now()
