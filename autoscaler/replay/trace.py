"""Reading traces for the replay: a request log in the Azure LLM format
(`TIMESTAMP,ContextTokens,GeneratedTokens`), the GenTD26 request log (`gmt_create`, `predict_status`,
`exec_time_seconds`, …: one row per image-generation request with its measured GPU time) or a rate series
(`timestamp,qps`, one row per interval) — the header says which —, cut to a window and scaled by a rate
multiplier.

Timestamps become seconds from the first row. The Azure format has seven fractional digits (100 ns), which
`datetime.strptime` cannot read, so the fraction is split off by hand; CRLF endings and a missing final
newline are fine. A GenTD26 row's execution time becomes the request's service time, which replaces the
token model's (`Requests.service`): rows without one — an empty field, or 0 s on a request that had not
finished (`PENDING`, `PROCESSING`) — get the median of the others and are counted in `Requests.notes`; a
`FAILED` row keeps its time (it held a GPU until it failed). A window keeps the requests in [start, end) and
counts time from its start. A multiplier X keeps each request and adds copies — floor(X) in all, one more
with probability frac(X) — each with its request's tokens and service time. By default (`COPIES` =
"independent") every copy is the whole trace shifted by one random offset under `SPREAD_S` (seeded), wrapped
around the trace's span: X times the users, each population with the trace's own sessions, bursts and daily
cycle, but not arriving in the same second as the others. "aligned" shifts each copied request by under
`JITTER_S` instead, so every request becomes a group of X within a second (how the multiplier worked before
stop 23: it turns a 10 s queueing-delay SLO into one no controller meets on GenTD26). A rate series
draws Poisson arrivals per interval with the model's mean tokens.

`load_trace` reads one file; everything else here is pure.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kernel.errors import InvalidSpec

JITTER_S = 1.0
SPREAD_S = 3600.0
COPIES = ("independent", "aligned")


@dataclass(frozen=True)
class Requests:
    """Arrivals (seconds from the start, sorted) with their prompt and generated tokens and, when the trace
    measured it, the seconds each request holds a replica (`service`; the token model's time otherwise)."""

    name: str
    arrival: npt.NDArray[np.float64]
    prompt: npt.NDArray[np.float64]
    generated: npt.NDArray[np.float64]
    service: npt.NDArray[np.float64] | None = None
    # what reading the file did beyond parsing (rows filled in, statuses kept), one sentence each
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.arrival)

    @property
    def duration_s(self) -> float:
        return float(self.arrival[-1]) if len(self.arrival) else 0.0

    def take(self, index: npt.NDArray[np.int64] | npt.NDArray[np.bool_], name: str | None = None) -> Requests:
        """These requests (an index or a mask) with everything that belongs to each request."""
        return Requests(
            self.name if name is None else name,
            self.arrival[index],
            self.prompt[index],
            self.generated[index],
            None if self.service is None else self.service[index],
            self.notes,
        )


def index_of_dispersion(
    arrival: npt.NDArray[np.float64], window_s: float, start_s: float = 0.0
) -> float | None:
    """Variance ÷ mean of the request counts in consecutive windows of `window_s` seconds from `start_s`: 1
    for Poisson arrivals, more for bursty ones — the arrivals' variability (ca²) at that time scale, what the
    SLO trigger's `arrivalVariability` describes. None with fewer than two whole windows or no requests."""
    later = arrival[arrival >= start_s]
    if not len(later) or window_s <= 0:
        return None
    n = int((float(later[-1]) - start_s) // window_s)
    if n < 2:
        return None
    counts = np.bincount(((later - start_s) // window_s).astype(np.int64), minlength=n)[:n]
    mean = float(counts.mean())
    return float(counts.var()) / mean if mean > 0 else None


def _timestamp(text: str) -> float:
    text = text.strip()
    whole, _, frac = text.partition(".")
    try:
        base = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return float(text)  # plain seconds
    return base + (int(frac) / 10 ** len(frac) if frac else 0.0)


def parse_trace(
    text: str, source: str, mean_prompt: float = 2048.0, mean_generated: float = 28.0
) -> Requests:
    """A request log or a rate series from CSV text (the header says which)."""
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    lower = [h.lower() for h in header]
    rows = [r for r in reader if r and any(c.strip() for c in r)]
    if not rows:
        raise InvalidSpec(source, ["2: (trace): no rows"])
    if lower[:3] == ["timestamp", "contexttokens", "generatedtokens"]:
        try:
            t = np.array([_timestamp(r[0]) for r in rows])
            prompt = np.array([float(r[1]) for r in rows])
            gen = np.array([float(r[2]) for r in rows])
        except (ValueError, IndexError) as e:
            raise InvalidSpec(
                source, [f"(trace): not TIMESTAMP,ContextTokens,GeneratedTokens: {e}"]
            ) from None
        order = np.argsort(t, kind="stable")
        t = t[order] - t[order][0]
        return Requests(Path(source).name, t, prompt[order], gen[order])
    if set(lower) >= GENTD26_COLUMNS:
        return parse_gentd26(header, rows, source)
    if lower[:2] == ["timestamp", "qps"]:
        try:
            ts = np.array([_timestamp(r[0]) for r in rows])
            qps = np.array([float(r[1]) for r in rows])
        except (ValueError, IndexError) as e:
            raise InvalidSpec(source, [f"(trace): not timestamp,qps: {e}"]) from None
        return rate_series(Path(source).name, ts - ts[0], qps, mean_prompt, mean_generated)
    raise InvalidSpec(
        source,
        [
            f"1: (trace): header {','.join(header)!r}; "
            "want TIMESTAMP,ContextTokens,GeneratedTokens, a GenTD26 request log (gmt_create, "
            "exec_time_seconds, …) or timestamp,qps"
        ],
    )


GENTD26_COLUMNS = frozenset({"gmt_create", "exec_time_seconds"})
# statuses of requests that had not finished when the trace was cut: a 0 s execution time is no measurement
UNFINISHED = frozenset({"PENDING", "PROCESSING", "WAITING", "QUEUED", "RUNNING"})


def parse_gentd26(header: list[str], rows: list[list[str]], source: str) -> Requests:
    """The GenTD26 request log: every row a request at `gmt_create` (second resolution) that held a GPU for
    `exec_time_seconds`; rows without an execution time get the median of the others (counted in `notes`).
    Tokens are zero: the requests' cost is their measured time."""
    col = {h.lower(): i for i, h in enumerate(header)}
    at, ex, st = col["gmt_create"], col["exec_time_seconds"], col.get("predict_status")
    times: list[float] = []
    service: list[float] = []
    missing: list[int] = []
    statuses: dict[str, int] = {}
    failed_kept = 0
    for k, r in enumerate(rows):
        line = k + 2
        try:
            times.append(_timestamp(r[at]))
        except (ValueError, IndexError):
            cell = r[at] if at < len(r) else ""
            raise InvalidSpec(source, [f"{line}: gmt_create: not a time: {cell!r}"]) from None
        status = (r[st].strip().upper() if st is not None and st < len(r) else "") or "?"
        statuses[status] = statuses.get(status, 0) + 1
        cell = r[ex].strip() if ex < len(r) else ""
        try:
            value = float(cell) if cell else math.nan
        except ValueError:
            raise InvalidSpec(source, [f"{line}: exec_time_seconds: not a number: {cell!r}"]) from None
        if value < 0:
            raise InvalidSpec(source, [f"{line}: exec_time_seconds: negative ({value:g} s)"])
        if math.isnan(value) or (value == 0.0 and status in UNFINISHED):
            missing.append(k)
        elif status not in ("SUCCEED", "?"):
            failed_kept += 1
        service.append(value)
    s = np.array(service)
    known = np.ones(len(s), dtype=bool)
    known[missing] = False
    if not known.any():
        raise InvalidSpec(source, ["(trace): no row has an exec_time_seconds"])
    median = float(np.median(s[known]))
    s[missing] = median
    t = np.array(times)
    order = np.argsort(t, kind="stable")
    t = t[order] - t[order][0]
    counts = ", ".join(f"{n:,} {name}" for name, n in sorted(statuses.items(), key=lambda kv: -kv[1]))
    notes = [f"{len(rows):,} requests ({counts}), each with its measured execution time"]
    if failed_kept:
        notes.append(
            f"{failed_kept:,} of them did not succeed and keep their measured time (they held a GPU until "
            "they ended)"
        )
    notes.append(
        f"{len(missing):,} without an execution time (empty, or 0 s before they finished) got the median "
        f"{median:g} s"
    )
    zeros = np.zeros(len(t))
    return Requests(Path(source).name, t, zeros, zeros.copy(), s[order], tuple(notes))


def rate_series(
    name: str,
    starts: npt.NDArray[np.float64],
    qps: npt.NDArray[np.float64],
    mean_prompt: float,
    mean_generated: float,
    seed: int = 7,
) -> Requests:
    """Poisson arrivals at `qps[i]` during [starts[i], starts[i+1]) (the last one as long as the one
    before)."""
    rng = np.random.default_rng(seed)
    step = float(np.median(np.diff(starts))) if len(starts) > 1 else 1.0
    ends = np.append(starts[1:], starts[-1] + step)
    arrivals: list[npt.NDArray[np.float64]] = []
    for a, b, q in zip(starts, ends, qps, strict=True):
        n = rng.poisson(max(0.0, q) * (b - a))
        arrivals.append(np.sort(rng.uniform(a, b, n)))
    t = np.concatenate(arrivals) if arrivals else np.zeros(0)
    return Requests(name, t, np.full(len(t), mean_prompt), np.full(len(t), mean_generated))


def multiply(
    requests: Requests, factor: float, seed: int = 11, copies: str = COPIES[0], spread_s: float = SPREAD_S
) -> Requests:
    """The trace at `factor` × its rate: `copies` of it, "independent" (each whole copy shifted by one offset
    under `spread_s`, wrapped around the trace) or "aligned" (each request's copies within JITTER_S of it)."""
    if factor <= 0:
        raise ValueError(f"rate multiplier must be positive, got {factor}")
    if copies not in COPIES:
        raise ValueError(f"copies {copies!r} (known: {', '.join(COPIES)})")
    if factor == 1.0:
        return requests
    rng = np.random.default_rng(seed)
    n = len(requests)
    name = f"{requests.name} ×{factor:g}"
    if factor < 1.0:
        return requests.take(rng.random(n) < factor, name)
    if copies == "independent":
        name += " (independent copies)"
    # wrapping at the span keeps every copy inside the trace (a shifted copy's last hour becomes its first):
    # no edge of the trace gets fewer copies than its middle
    span = requests.duration_s + 1.0

    def copy(index: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        t = requests.arrival[index]
        if copies == "aligned":
            return t + rng.uniform(0.0, JITTER_S, len(index))
        return np.asarray((t + rng.uniform(0.0, spread_s)) % span, dtype=np.float64)

    whole = int(factor)
    # each copy is the original request (its tokens and service time: `source`) at another time
    everyone = np.arange(n)
    parts_t = [requests.arrival]
    source = [everyone]
    for _ in range(whole - 1):
        parts_t.append(copy(everyone))
        source.append(everyone)
    frac = factor - whole
    if frac > 0:
        pick = np.flatnonzero(rng.random(n) < frac)
        parts_t.append(copy(pick))
        source.append(pick)
    t = np.concatenate(parts_t)
    order = np.argsort(t, kind="stable")
    copied = requests.take(np.concatenate(source)[order], name)
    return replace(copied, arrival=t[order])


def window(requests: Requests, start_s: float, end_s: float | None = None) -> Requests:
    """The requests that arrived in [start_s, end_s) (seconds from the trace's start; None: to its end), with
    time counted from `start_s`."""
    if start_s < 0 or (end_s is not None and end_s <= start_s):
        raise ValueError(f"window {start_s:g}–{end_s} s: want 0 ≤ start < end")
    end = math.inf if end_s is None else end_s
    keep = (requests.arrival >= start_s) & (requests.arrival < end)
    if not keep.any():
        raise ValueError(
            f"window {_span(start_s)}–{'end' if end_s is None else _span(end_s)}: no request in it "
            f"(the trace spans {_span(requests.duration_s)})"
        )
    label = f"{requests.name} [{_span(start_s)}–{'' if end_s is None else _span(end_s)}]"
    cut = requests.take(keep, label)
    return replace(cut, arrival=cut.arrival - start_s)


UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _span(seconds: float) -> str:
    for unit in ("d", "h", "m"):
        if seconds >= UNITS[unit] and seconds % UNITS[unit] == 0:
            return f"{seconds / UNITS[unit]:g}{unit}"
    return f"{seconds:g}s"


def parse_duration(text: str, flag: str = "duration") -> float:
    """Seconds from a number with an optional unit (s, m, h, d): `90`, `10m`, `2d`."""
    part = text.strip().lower()
    unit = UNITS.get(part[-1:]) if part else None
    number = part[:-1] if unit is not None else part
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        raise ValueError(f"{flag} {text!r}: not a duration (a number with s, m, h or d)") from None
    if seconds < 0 or math.isnan(seconds):
        raise ValueError(f"{flag} {text!r}: want a duration ≥ 0")
    return seconds


def parse_window(text: str) -> tuple[float, float | None]:
    """`START,END` in seconds from the trace's start, each with an optional unit (s, m, h, d), END optional:
    `0,3d`, `2d,`, `3600,7200`."""
    start, sep, end = text.partition(",")
    if not sep:
        raise ValueError(f"--window {text!r}: want START,END (e.g. 0,3d or 2d,)")
    a = parse_duration(start, f"--window {text!r}: START") if start.strip() else 0.0
    b = parse_duration(end, f"--window {text!r}: END") if end.strip() else None
    if b is not None and b <= a:
        raise ValueError(f"--window {text!r}: want 0 ≤ START < END")
    return a, b


def load_trace(path: Path, mean_prompt: float = 2048.0, mean_generated: float = 28.0) -> Requests:
    """Read a trace file (request log or rate series)."""
    if not path.is_file():
        raise InvalidSpec(str(path), ["0: (trace): file not found"])
    return parse_trace(path.read_text(encoding="utf-8-sig"), str(path), mean_prompt, mean_generated)


SYNTHETIC = ("bursty", "steps", "diurnal")


def _tokens(rng: np.random.Generator, n: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Code-like token counts: long-tailed prompts (median ≈ 1,500), short outputs (median ≈ 13)."""
    prompt = np.clip(rng.lognormal(np.log(1500.0), 0.9, n), 3, 7437).round()
    generated = np.clip(rng.lognormal(np.log(13.0), 1.1, n), 1, 1900).round()
    return prompt, generated


def synthetic(
    kind: str,
    seed: int = 1,
    mean_prompt: float = 2048.0,
    mean_generated: float = 28.0,
    duration_s: float = 3600.0,
    mean_rate: float = 2.5,
) -> Requests:
    """A generated request log for checking that a policy generalises (no trace data involved):

    - `bursty`: an on/off Markov-modulated Poisson process — quiet stretches (mean 3 min) at a fifth of the
      mean rate and bursts (mean 90 s) at three times it;
    - `steps`: sustained levels that change every 4–10 min between 0.2× and 3× the mean rate (reaction speed
      matters: a level lasts much longer than a model start);
    - `diurnal`: a smooth day-like swing (one period over the duration) from 0.2× to 1.8× the mean rate.

    Token counts are code-like (see `_tokens`); `mean_prompt` and `mean_generated` are accepted for symmetry
    with rate series and not used.
    """
    rng = np.random.default_rng(seed)
    edges: list[float] = [0.0]
    rates: list[float] = []
    if kind == "bursty":
        burst = False
        while edges[-1] < duration_s:
            edges.append(edges[-1] + rng.exponential(90.0 if burst else 180.0))
            rates.append(mean_rate * (3.0 if burst else 0.2))
            burst = not burst
    elif kind == "steps":
        while edges[-1] < duration_s:
            edges.append(edges[-1] + rng.uniform(240.0, 600.0))
            rates.append(mean_rate * rng.choice([0.2, 0.5, 1.0, 1.5, 2.0, 3.0]))
    elif kind == "diurnal":
        edges = list(np.arange(0.0, duration_s + 10.0, 10.0))
        rates = [mean_rate * (1.0 - 0.8 * np.cos(2 * np.pi * (a + 5.0) / duration_s)) for a in edges[:-1]]
    else:
        raise ValueError(f"no synthetic trace {kind!r} (known: {', '.join(SYNTHETIC)})")
    parts = []
    for a, end, r in zip(edges[:-1], edges[1:], rates, strict=True):
        b = min(end, duration_s)
        if b > a:
            parts.append(np.sort(rng.uniform(a, b, rng.poisson(r * (b - a)))))
    t = np.concatenate(parts) if parts else np.zeros(0)
    prompt, generated = _tokens(rng, len(t))
    return Requests(f"synthetic:{kind}:{seed}", t, prompt, generated)
