"""One informer: a resource's objects in memory from a list and then a watch, restarted (relisting) on any
error, with handlers called on every change. Shared by the autoscaler's controller and the scheduler.

Objects are kept as plain JSON dicts (`deserialize=False`): the generated models cost more to build than
anything the callers do with them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import watch

from kernel.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)


def object_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


Handler = Callable[[str, dict[str, Any]], None]  # (event type ADDED|MODIFIED|DELETED, object)


class Informer:
    """One resource's objects in memory, from a list and then a watch, restarted (relisting) on any error.

    `list_call(*args, **kwargs)` is a list method of the generated client (`list_pod_for_all_namespaces`,
    `list_cluster_custom_object` with its group/version/plural as `args`). Handlers run on the watch thread.
    """

    def __init__(
        self,
        name: str,
        list_call: Callable[..., Any],
        args: tuple[Any, ...] = (),
        handlers: tuple[Handler, ...] = (),
        clock: Clock = SYSTEM_CLOCK,
        label_selector: str | None = None,
    ) -> None:
        self.name = name
        self._list = list_call
        self._args = args
        self._handlers = list(handlers)
        self._clock = clock
        self._selector = label_selector
        self._objects: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread: threading.Thread | None = None

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def objects(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self._objects)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get(key)

    def start(self) -> Informer:
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait_synced(self, timeout: float) -> bool:
        return self.synced.wait(timeout)

    def _kwargs(self) -> dict[str, Any]:
        return {"label_selector": self._selector} if self._selector else {}

    def _relist(self) -> str:
        response = self._list(*self._args, _preload_content=False, **self._kwargs())
        body = json.loads(response.data)
        fresh = {object_key(o): o for o in body.get("items", [])}
        with self._lock:
            old, self._objects = self._objects, fresh
        for key, obj in fresh.items():
            self._dispatch("ADDED" if key not in old else "MODIFIED", obj)
        for key, obj in old.items():
            if key not in fresh:
                self._dispatch("DELETED", obj)
        self.synced.set()
        return str(body.get("metadata", {}).get("resourceVersion", ""))

    def _dispatch(self, kind: str, obj: dict[str, Any]) -> None:
        for handler in self._handlers:
            try:
                handler(kind, obj)
            except Exception:  # a handler's bug must not stop the watch
                log.exception("informer %s: handler failed on %s %s", self.name, kind, object_key(obj))

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                version = self._relist()
                self._watch = watch.Watch()
                for event in self._watch.stream(
                    self._list,
                    *self._args,
                    resource_version=version,
                    timeout_seconds=300,
                    deserialize=False,
                    allow_watch_bookmarks=False,
                    **self._kwargs(),
                ):
                    if self._stop.is_set():
                        break
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        break  # 410 Gone and friends: relist
                    key = object_key(obj)
                    with self._lock:
                        if kind == "DELETED":
                            self._objects.pop(key, None)
                        else:
                            self._objects[key] = obj
                    self._dispatch(str(kind), obj)
                backoff = 0.5
            except Exception as e:  # the API server went away, a timeout: relist after a pause
                if self._stop.is_set():
                    break
                log.warning("informer %s: %s; relisting in %.1f s", self.name, e, backoff)
                self._clock.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
