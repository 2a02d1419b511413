"""The Prometheus metric source: every GPU, DCGM, Prometheus, QueueDepth and SLO trigger of every policy, read
with one batched instant query per trigger kind (`autoscaler.controller.sources.promql`), not one per policy.

What each kind asks and how the answer becomes a `Reading` (the backtest's simulated Prometheus,
`autoscaler.replay.backtest`, builds the same readings):
- GPUUtilization, DCGM: the metric's selector over the namespaces involved and the scrape time of each series
  (`timestamp(…)`); per target, the values of its pods' GPUs in the metric's own unit (`per_gpu`, one per
  GPU), `at` the oldest scrape among them.
- Prometheus, QueueDepth: the trigger's query; one series → `value`, `at` the evaluation time. No series, more
  than one (KEDA's rule), or a value that is NaN or infinite → an error, never a silent 0.
- SLO: the request rate over `windowSeconds` (`value`) and over a short window (a tenth of it, at least two
  scrape intervals, so that `rate` has two samples) as series `requestsPerSecondShort`; the prompt and
  generated token rates over `windowSeconds` (`promptTokensPerSecond`, `generatedTokensPerSecond`, both or
  neither) and the queue (`waiting`) when the trigger names them. All of a kind's queries go in its one batch.

Failures: Prometheus unreachable, a timeout, an HTTP error or an answer that is not JSON → every request of
that kind gets `Reading(error=…)` naming the URL and the reason. A query Prometheus rejects fails only the
requests that use it: the batch is halved until the bad expression is alone (a syntax error is remembered, so
later reads skip it without asking). `read` never raises for one bad request.

I/O: HTTP to Prometheus (httpx, injectable). No clock: `now` is an argument.
"""

from __future__ import annotations

import json
import math
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from autoscaler.controller.ports import MetricRequest, ReadingKey
from autoscaler.controller.sources import promql
from autoscaler.core.triggers import Reading

GPU_KINDS = frozenset({"GPUUtilization", "DCGM"})
SCALAR_KINDS = frozenset({"Prometheus", "QueueDepth"})
KINDS = GPU_KINDS | SCALAR_KINDS | {"SLO"}
# Remembered rejected expressions (syntax errors); a spec change changes the text, so they never go stale.
MAX_REMEMBERED = 10_000


class _Unreachable(Exception):
    """Prometheus did not answer usefully (connection, timeout, HTTP error, not JSON): the kind fails."""


class _Rejected(Exception):
    """Prometheus refused the query (a bad expression, an execution error): only its expressions fail."""

    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


Outcome = list[promql.Sample] | str  # an expression's samples, or why there are none


@dataclass(frozen=True, slots=True)
class _Plan:
    """The expressions one request needs, by role ("value", "stamp", "short", …)."""

    exprs: Mapping[str, str]


class PrometheusSource:
    """Reads the Prometheus-backed trigger kinds, one batched query per kind per read (`queries` counts the
    HTTP queries made, for tests and benchmarks)."""

    kinds: frozenset[str] = KINDS

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        client: httpx.Client | None = None,
        scrape_interval_s: float = 15.0,
        max_expressions: int = promql.MAX_EXPRESSIONS,
        max_bytes: int = promql.MAX_BYTES,
    ) -> None:
        self.url = url.rstrip("/")
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
            if kind in KINDS:
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
        plans = self._plans(kind, requests)
        exprs = [e for p in plans for e in p.exprs.values()]
        try:
            outcomes = self._evaluate(exprs)
        except _Unreachable as e:
            return {(r.policy, r.trigger): Reading(error=str(e)) for r in requests}
        if kind in GPU_KINDS:
            scraped = {  # each stamp query's answer indexed once, for all the targets it serves
                e: promql.scrape_times(o)
                for e in {p.exprs["stamp"] for p in plans}
                if isinstance(o := outcomes.get(e), list)
            }
            return {
                (r.policy, r.trigger): _gpu_reading(r, p, outcomes, scraped)
                for r, p in zip(requests, plans, strict=True)
            }
        build = _slo_reading if kind == "SLO" else _scalar_reading
        return {(r.policy, r.trigger): build(r, p, outcomes) for r, p in zip(requests, plans, strict=True)}

    def _plans(self, kind: str, requests: list[MetricRequest]) -> list[_Plan]:
        if kind in GPU_KINDS:
            spaces: dict[str, set[str]] = defaultdict(set)
            for r in requests:
                spaces[r.spec.metric].add(r.namespace)
            return [
                _Plan(
                    {
                        "value": promql.gpu_query(r.spec.metric, spaces[r.spec.metric]),
                        "stamp": promql.gpu_stamp_query(r.spec.metric, spaces[r.spec.metric]),
                    }
                )
                for r in requests
            ]
        if kind in SCALAR_KINDS:
            return [_Plan({"value": r.spec.query.strip()}) for r in requests]
        return [self._slo_plan(r) for r in requests]

    def _slo_plan(self, r: MetricRequest) -> _Plan:
        t = r.spec
        long_w = int(t.window_seconds)
        short_w = max(math.ceil(2 * self.scrape_interval_s), long_w // 10)
        exprs = {
            "value": promql.windowed(t.request_rate_query, long_w).strip(),
            "requestsPerSecondShort": promql.windowed(t.request_rate_query, short_w).strip(),
        }
        if t.prompt_token_rate_query and t.generated_token_rate_query:
            exprs["promptTokensPerSecond"] = promql.windowed(t.prompt_token_rate_query, long_w).strip()
            exprs["generatedTokensPerSecond"] = promql.windowed(t.generated_token_rate_query, long_w).strip()
        if t.queue_query:
            exprs["waiting"] = t.queue_query.strip()
        return _Plan(exprs)

    # --- queries -------------------------------------------------------------------------------------

    def _evaluate(self, exprs: Sequence[str]) -> dict[str, Outcome]:
        """Each expression's samples or the reason it has none; `_Unreachable` if Prometheus is."""
        out: dict[str, Outcome] = {}
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

    def _answer(self, b: promql.Batch) -> dict[str, Outcome]:
        """The outcome of every expression of batch `b`, halving it when Prometheus rejects it."""
        try:
            return dict(promql.split(b, self._query(b.text)))
        except promql.BadResult as e:
            raise _Unreachable(f"Prometheus at {self.url}: unexpected answer: {e}") from e
        except _Rejected as e:
            if len(b.expressions) > 1:
                half = len(b.expressions) // 2
                out: dict[str, Outcome] = {}
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


# --- readings from outcomes --------------------------------------------------------------------------------


def _one(expr: str, outcome: Outcome | None) -> promql.Sample | str:
    """The single finite sample of a scalar query, or why there is none."""
    if outcome is None:
        return f"query was not asked: {expr}"
    if isinstance(outcome, str):
        return outcome
    if not outcome:
        return f"query returned no series: {expr}"
    if len(outcome) > 1:
        return f"query returned {len(outcome)} series, not one (aggregate it, e.g. sum(…)): {expr}"
    s = outcome[0]
    if not math.isfinite(s.value):
        return f"query returned {s.value}: {expr}"
    return s


def _scalar_reading(r: MetricRequest, plan: _Plan, outcomes: Mapping[str, Outcome]) -> Reading:
    expr = plan.exprs["value"]
    got = _one(expr, outcomes.get(expr))
    if isinstance(got, str):
        return Reading(error=got)
    return Reading(value=got.value, at=got.at)


def _slo_reading(r: MetricRequest, plan: _Plan, outcomes: Mapping[str, Outcome]) -> Reading:
    rate = _one(plan.exprs["value"], outcomes.get(plan.exprs["value"]))
    if isinstance(rate, str):
        return Reading(error=rate)
    got: dict[str, float] = {}
    for role, expr in plan.exprs.items():
        if role == "value":
            continue
        s = _one(expr, outcomes.get(expr))
        if not isinstance(s, str):
            got[role] = s.value
    series = {"requestsPerSecondShort": got.get("requestsPerSecondShort", rate.value)}
    if "promptTokensPerSecond" in got and "generatedTokensPerSecond" in got:
        series["promptTokensPerSecond"] = got["promptTokensPerSecond"]
        series["generatedTokensPerSecond"] = got["generatedTokensPerSecond"]
    if "waiting" in got:
        series["waiting"] = got["waiting"]
    return Reading(value=rate.value, series=series, at=rate.at)


def _gpu_reading(
    r: MetricRequest,
    plan: _Plan,
    outcomes: Mapping[str, Outcome],
    scraped: Mapping[str, Mapping[promql.SeriesKey, float]],
) -> Reading:
    values = outcomes.get(plan.exprs["value"])
    if isinstance(values, str):
        return Reading(error=values)
    per_gpu, at = promql.gpu_values(values or [], scraped.get(plan.exprs["stamp"], {}), r.namespace, r.pods)
    if not per_gpu:
        return Reading(
            error=f"no GPU series for the target's pods ({r.spec.metric} in namespace {r.namespace}, "
            f"{len(r.pods)} pods)"
        )
    return Reading(per_gpu=per_gpu, at=at)
