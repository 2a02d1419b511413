"""The Prometheus metric source: every trigger of every policy whose type is read from Prometheus
(GPUUtilization, DCGM, Prometheus, QueueDepth, SLO among the built-in ones), with one batched instant query
per trigger kind (`autoscaler.controller.sources.promql`), not one per policy.

What each kind asks and how the answers become a `Reading` is the trigger type's own knowledge
(`TriggerType.queries` and `TriggerType.reading`, in `autoscaler.core.triggers.<type>`): this source only
collects the expressions of a kind's requests, asks each distinct one once, and hands every request's answers
back to its type. The replay's simulated Prometheus evaluates the same expressions and forms readings with the
same functions.

Failures: Prometheus unreachable, a timeout, an HTTP error or an answer that is not JSON → every request of
that kind gets `Reading(error=…)` naming the URL and the reason. A query Prometheus rejects fails only the
requests that use it: the batch is halved until the bad expression is alone (a syntax error is remembered, so
later reads skip it without asking). `read` never raises for one bad request.

Prometheus going down is logged once (WARNING) and coming back once (INFO), not once per query.

I/O: HTTP to Prometheus (httpx, injectable). No clock: `now` is an argument.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from autoscaler.controller.ports import MetricRequest, ReadingKey
from autoscaler.controller.sources import promql
from autoscaler.core.promql import Result
from autoscaler.core.triggers import PROMETHEUS, FormReading, Queries, Reading, Scope, TriggerRegistry
from kernel.logs import Outage

log = logging.getLogger(__name__)

# Remembered rejected expressions (syntax errors); a spec change changes the text, so they never go stale.
MAX_REMEMBERED = 10_000


class _Unreachable(Exception):
    """Prometheus did not answer usefully (connection, timeout, HTTP error, not JSON): the kind fails."""


class _Rejected(Exception):
    """Prometheus refused the query (a bad expression, an execution error): only its expressions fail."""

    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass(frozen=True, slots=True)
class _Kind:
    """What a trigger kind read from Prometheus asks, and how its answers become a reading."""

    queries: Queries
    reading: FormReading


class PrometheusSource:
    """Reads the trigger kinds of `triggers` whose source is Prometheus, one batched query per kind per read
    (`queries` counts the HTTP queries made, for tests and benchmarks)."""

    def __init__(
        self,
        url: str,
        triggers: TriggerRegistry,
        *,
        timeout_s: float = 5.0,
        client: httpx.Client | None = None,
        scrape_interval_s: float = 15.0,
        max_expressions: int = promql.MAX_EXPRESSIONS,
        max_bytes: int = promql.MAX_BYTES,
    ) -> None:
        self.url = url.rstrip("/")
        self._kinds: dict[str, _Kind] = {}
        for kind in sorted(triggers.read_by(PROMETHEUS)):
            t = triggers.get(kind)
            assert t.queries is not None and t.reading is not None  # checked by TriggerType
            self._kinds[kind] = _Kind(t.queries, t.reading)
        self.kinds = frozenset(self._kinds)
        self.timeout_s = timeout_s
        self.scrape_interval_s = scrape_interval_s
        self.max_expressions = max_expressions
        self.max_bytes = max_bytes
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=timeout_s)
        self._lock = threading.Lock()
        self._queries = 0
        self._rejected: dict[str, str] = {}  # expression → why Prometheus refuses it (syntax errors)
        self._scalars: set[str] = set()  # expressions Prometheus reported as scalars
        self.outage = Outage(log, f"Prometheus at {self.url}", "prometheus")  # logged when it goes down or up

    @property
    def queries(self) -> int:
        return self._queries

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def read(self, requests: Sequence[MetricRequest], now: float) -> dict[ReadingKey, Reading]:
        by_kind: dict[str, list[MetricRequest]] = defaultdict(list)
        out: dict[ReadingKey, Reading] = {}
        for r in requests:
            kind = str(getattr(r.spec, "type", ""))
            if kind in self._kinds:
                by_kind[kind].append(r)
            else:
                out[(r.policy, r.trigger)] = Reading(
                    error=f"Prometheus source does not read {kind!r} triggers"
                )
        for kind, group in by_kind.items():
            out.update(self._read_kind(kind, group))
        return out

    # --- one kind ------------------------------------------------------------------------------------

    def _read_kind(self, kind: str, requests: list[MetricRequest]) -> dict[ReadingKey, Reading]:
        how = self._kinds[kind]
        scopes = [Scope(r.namespace, r.pods, self.scrape_interval_s) for r in requests]
        plans = [how.queries(r.spec, scope) for r, scope in zip(requests, scopes, strict=True)]
        try:
            results = self._evaluate([e for p in plans for e in p.values()])
        except _Unreachable as e:
            self.outage.down(str(e))
            return {(r.policy, r.trigger): Reading(error=str(e)) for r in requests}
        self.outage.up()
        return {
            (r.policy, r.trigger): how.reading(r.spec, scope, plan, results)
            for r, scope, plan in zip(requests, scopes, plans, strict=True)
        }

    # --- queries -------------------------------------------------------------------------------------

    def _evaluate(self, exprs: Sequence[str]) -> dict[str, Result]:
        """Each expression's samples or the reason it has none; `_Unreachable` if Prometheus is."""
        out: dict[str, Result] = {}
        ask = []
        for e in promql.unique(exprs):
            known = self._rejected.get(e)
            if known is not None:
                out[e] = known
            else:
                ask.append(e)
        for b in promql.batch(
            ask, scalars=self._scalars, max_expressions=self.max_expressions, max_bytes=self.max_bytes
        ):
            out.update(self._answer(b))
        return out

    def _answer(self, b: promql.Batch) -> dict[str, Result]:
        """The outcome of every expression of batch `b`, halving it when Prometheus rejects it."""
        try:
            return dict(promql.split(b, self._query(b.text)))
        except promql.BadResult as e:
            raise _Unreachable(f"Prometheus at {self.url}: unexpected answer: {e}") from e
        except _Rejected as e:
            if len(b.expressions) > 1:
                half = len(b.expressions) // 2
                out: dict[str, Result] = {}
                for part in (b.expressions[:half], b.expressions[half:]):
                    for sub in promql.batch(part, scalars=self._scalars, max_expressions=len(part)):
                        out.update(self._answer(sub))
                return out
            expr = b.expressions[0]
            if "got scalar" in str(e) and expr not in self._scalars:
                with self._lock:
                    self._scalars.add(expr)
                return self._answer(promql.batch([expr], scalars=self._scalars)[0])
            why = f"Prometheus at {self.url} rejected {expr!r}: {e}"
            if e.error_type == "bad_data":
                with self._lock:
                    if len(self._rejected) >= MAX_REMEMBERED:
                        self._rejected.clear()
                    self._rejected[expr] = why
            return {expr: why}

    def _query(self, text: str) -> Any:
        """POST one instant query; the `data` of a successful answer."""
        with self._lock:
            self._queries += 1
        where = f"Prometheus at {self.url}"
        try:
            response = self._client.post(
                f"{self.url}/api/v1/query",
                data={"query": text, "timeout": f"{self.timeout_s:g}"},  # seconds
                timeout=self.timeout_s,
            )
        except httpx.TimeoutException as e:
            raise _Unreachable(f"{where}: no answer within {self.timeout_s:g} s ({type(e).__name__})") from e
        except httpx.HTTPError as e:
            raise _Unreachable(f"{where}: {_reason(e)}") from e
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
            raise _Unreachable(
                f"{where}: HTTP {response.status_code} with a body that is not JSON: {response.text[:200]!r}"
            ) from e
        if not isinstance(body, Mapping):
            raise _Unreachable(f"{where}: HTTP {response.status_code} with a JSON {type(body).__name__}")
        if body.get("status") == "success" and response.status_code == 200:
            return body.get("data")
        error = str(body.get("error") or response.reason_phrase)
        error_type = str(body.get("errorType") or "")
        # A 400 about the `query` parameter and a 422 execution error are about the expressions; anything else
        # (another parameter, the server) is no reason to suspect one of them.
        about_query = response.status_code == 400 and error_type == "bad_data" and '"query"' in error
        if about_query or (response.status_code == 422 and error_type == "execution"):
            raise _Rejected(error, error_type)
        raise _Unreachable(f"{where}: HTTP {response.status_code} {error_type or 'error'}: {error}")


def _reason(e: httpx.HTTPError) -> str:
    cause = e.__cause__ or e.__context__
    text = str(e) or (str(cause) if cause else "") or type(e).__name__
    return f"{type(e).__name__}: {text}"
