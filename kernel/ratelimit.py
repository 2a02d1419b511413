"""A token bucket, as client-go's `flowcontrol` limits a client: `qps` tokens a second, at most `burst` saved.

Shells that must not flood an API server take one token per request; the scheduler benchmark gives it and
kube-scheduler the same QPS and burst so that their throughput is compared on equal terms.
"""

from __future__ import annotations

import threading

from kernel.clock import SYSTEM_CLOCK, Clock


class TokenBucket:
    def __init__(self, qps: float, burst: int, clock: Clock = SYSTEM_CLOCK) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs qps > 0 and burst >= 1, got qps={qps}, burst={burst}")
        self.qps = float(qps)
        self.burst = int(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock.monotonic()
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        """Take a token (possibly going into debt) and return how long to wait before using it."""
        with self._lock:
            now = self._clock.monotonic()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def take(self) -> None:
        """Block until a request may go."""
        wait = self._reserve()
        if wait > 0:
            self._clock.sleep(wait)
