"""The console's live state, shared by the threads that feed it and the HTTP threads that read it: one row per
ScalingPolicy, the recent scaling events, a bounded chart series per policy, and the subscribers of the event
stream, each with its own bounded queue.

Fed by: the ScalingPolicy informer (`on_policy`), the controller's event fan-out (`emit`: it is an
`EventSink`, called on the reconcile loop's thread, so it only formats and enqueues), the controller's last
decisions sampled for the chart (`observe`), or, in the standalone console, the records read back from
Kubernetes Events (`on_record`). Subscribers get every live event as one server-sent-event frame, and a
notice (`policies`, `cluster`) when the rows or the cluster views changed; a subscriber that does not keep up
loses its oldest frames, never blocks the controller.

No network, no Kubernetes client; the clock is injected.
"""

from __future__ import annotations

import json
import queue
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from autoscaler.console import model
from autoscaler.controller.ports import ScalingEvent
from autoscaler.controller.sinks.kube_events import blocked_nodes, event_type, reason_of
from autoscaler.core.decide import Decision
from autoscaler.core.events import record as record_of
from kernel.clock import SYSTEM_CLOCK, Clock

EVENTS_KEPT = 500  # recent events a new subscriber can be sent (the page shows the last 50)
BACKLOG = 50
QUEUE_FRAMES = 1000


def frame(name: str, data: Mapping[str, Any], seq: int | None = None) -> bytes:
    """One server-sent-event frame (`id:` only for scaling events, so a reconnect resumes after the last)."""
    head = f"id: {seq}\n" if seq is not None else ""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"{head}event: {name}\ndata: {body}\n\n".encode()


@dataclass(eq=False)  # one per client, kept in a set by identity
class Subscription:
    """One event-stream client: the frames it has not been sent yet (None: the console is closing)."""

    frames: queue.Queue[bytes | None] = field(default_factory=lambda: queue.Queue(QUEUE_FRAMES))
    dropped: int = 0

    def put(self, data: bytes | None) -> None:
        while True:
            try:
                self.frames.put_nowait(data)
                return
            except queue.Full:
                try:
                    self.frames.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass


class ConsoleHub:
    def __init__(
        self, clock: Clock = SYSTEM_CLOCK, events_kept: int = EVENTS_KEPT, chart_points: int = 720
    ) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._rows: dict[str, model.PolicyRow] = {}
        self._series: dict[str, model.Series] = {}
        self._events: deque[tuple[int, dict[str, Any], bytes]] = deque(maxlen=events_kept)
        self._seq = 0
        self._subscribers: set[Subscription] = set()
        self._sampled: dict[str, object] = {}  # policy -> the time of the last decision sampled
        self._chart_points = chart_points
        self.rows_changed = threading.Event()  # set by every row change; the shell's ticker clears it
        self.events_seen = 0

    # --- feeds -------------------------------------------------------------------------------------------

    def on_policy(self, kind: str, obj: dict[str, Any]) -> None:
        """An informer handler: a ScalingPolicy added, changed or deleted."""
        key = model.policy_key(obj)
        with self._lock:
            if kind == "DELETED":
                self._rows.pop(key, None)
                self._series.pop(key, None)
                self._sampled.pop(key, None)
            else:
                self._rows[key] = model.row_of(obj, self._rows.get(key))
        self.rows_changed.set()

    def emit(self, event: ScalingEvent) -> None:
        """The controller's `EventSink`: each scaling event as it is emitted, on the loop's thread."""
        rec = dict(event.record)
        rec.setdefault("eventReason", reason_of(rec) if not model.is_problem(rec) else rec.get("rule", ""))
        if "eventType" not in rec:
            failure = event.failure is not None
            blocked = bool(blocked_nodes(rec, event.extra))
            rec["eventType"] = "Warning" if failure else event_type(str(rec.get("rule", "")), blocked)
        self.on_record(rec)

    def on_record(self, record: Mapping[str, Any], live: bool = True) -> None:
        """A scaling-event record: the policy's row and chart, and, `live`, the event list and stream."""
        key = str(record.get("policy") or "")
        point = model.point_of(record)
        with self._lock:
            row = self._rows.get(key) or model.PolicyRow(key)
            updated = self._rows[key] = model.with_record(row, record)
            # a sampled decision that says what the row said already (only its time moved) is no news
            news = live or replace(updated, decided=row.decided) != row
            if point is not None:
                self._series_of(key).add(point)
            subscribers: list[Subscription] = []
            if live:
                self._seq += 1
                seq = self._seq
                event = model.event_of(record, seq)
                data = frame("scaling", event, seq)
                self._events.append((seq, event, data))
                subscribers = list(self._subscribers)
                self.events_seen += 1
        if news:
            self.rows_changed.set()
        for s in subscribers:
            s.put(data)

    def observe(self, decisions: Iterable[Decision]) -> int:
        """The controller's last decision of each policy, sampled: rows and charts between events (a decision
        already seen is skipped). Returns how many were new."""
        fresh = 0
        for d in decisions:
            with self._lock:
                if self._sampled.get(d.policy) == d.at:
                    continue
                self._sampled[d.policy] = d.at
            self.on_record(record_of(d), live=False)
            fresh += 1
        return fresh

    def _series_of(self, key: str) -> model.Series:
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = model.Series(self._chart_points)
        return s

    # --- reads ---------------------------------------------------------------------------------------------

    def rows(self) -> list[model.PolicyRow]:
        with self._lock:
            return list(self._rows.values())

    def chart(self, key: str, seconds: float = model.HOUR) -> dict[str, Any] | None:
        now = self.clock.now().timestamp()
        with self._lock:
            if key not in self._rows:
                return None
            points = list(self._series[key].points) if key in self._series else []
        return model.chart(key, points, now, seconds)

    def recent(self, limit: int = BACKLOG) -> list[dict[str, Any]]:
        """The last `limit` events, oldest first."""
        with self._lock:
            return [event for _, event, _ in list(self._events)[-limit:]]

    # --- the event stream ---------------------------------------------------------------------------------

    def subscribe(self, after: int | None = None) -> tuple[Subscription, list[bytes]]:
        """A new subscriber and what it missed: the events after `after` (a reconnecting EventSource's
        Last-Event-ID), else the last `BACKLOG` events."""
        s = Subscription()
        with self._lock:
            if after is None:
                backlog = [data for _, _, data in list(self._events)[-BACKLOG:]]
            else:
                backlog = [data for seq, _, data in self._events if seq > after]
            self._subscribers.add(s)
        return s, backlog

    def unsubscribe(self, s: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(s)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def notify(self, name: str, data: Mapping[str, Any]) -> None:
        """A notice to every subscriber (`policies`: rows changed; `cluster`: the cluster views changed)."""
        with self._lock:
            subscribers = list(self._subscribers)
        payload = frame(name, data)
        for s in subscribers:
            s.put(payload)

    def close(self) -> None:
        """End every subscriber's stream."""
        with self._lock:
            subscribers, self._subscribers = list(self._subscribers), set()
        for s in subscribers:
            s.put(None)
