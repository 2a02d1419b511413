"""Waiting in integration tests: poll until something holds, with a deadline that fails the test saying what
was awaited; and a fresh Kubernetes namespace ready for pods."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from kernel.clock import SYSTEM_CLOCK, Deadline


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll `predicate` until it returns something truthy (returned); fail with `what` at the deadline."""
    deadline = Deadline(timeout)
    while True:
        value = predicate()
        if value:
            return value
        if deadline.expired():
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        SYSTEM_CLOCK.sleep(interval)


def new_namespace(core: Any, prefix: str = "t") -> str:
    """Create a namespace (a `CoreV1Api` client) and wait for its default ServiceAccount (pods need it)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_for(
        lambda: any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items),
        30,
        f"default ServiceAccount in {name}",
    )
    return name
