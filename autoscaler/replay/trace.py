"""Reading traces for the replay: a request log in the Azure LLM format
(`TIMESTAMP,ContextTokens,GeneratedTokens`) or a rate series (`timestamp,qps`, one row per interval), scaled
by a rate multiplier.

Timestamps become seconds from the first row. The Azure format has seven fractional digits (100 ns), which
`datetime.strptime` cannot read, so the fraction is split off by hand; CRLF endings and a missing final
newline are fine. A multiplier X keeps each request and adds copies — floor(X) in all, one more with
probability frac(X) — shifted by up to one second (seeded), so the shape of the traffic (its bursts and its
silences) is kept while the rate scales. A rate series draws Poisson arrivals per interval with the model's
mean tokens.

`load_trace` reads one file; everything else here is pure.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kernel.errors import InvalidSpec

JITTER_S = 1.0


@dataclass(frozen=True)
class Requests:
    """Arrivals (seconds from the start, sorted) with their prompt and generated tokens."""

    name: str
    arrival: npt.NDArray[np.float64]
    prompt: npt.NDArray[np.float64]
    generated: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.arrival)

    @property
    def duration_s(self) -> float:
        return float(self.arrival[-1]) if len(self.arrival) else 0.0


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
            "want TIMESTAMP,ContextTokens,GeneratedTokens or timestamp,qps"
        ],
    )


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


def multiply(requests: Requests, factor: float, seed: int = 11) -> Requests:
    """The trace at `factor` × its rate: copies of every request shifted by up to JITTER_S seconds."""
    if factor <= 0:
        raise ValueError(f"rate multiplier must be positive, got {factor}")
    if factor == 1.0:
        return requests
    rng = np.random.default_rng(seed)
    n = len(requests)
    if factor < 1.0:
        keep = rng.random(n) < factor
        name = f"{requests.name} ×{factor:g}"
        return Requests(name, requests.arrival[keep], requests.prompt[keep], requests.generated[keep])
    whole = int(factor)
    parts_t = [requests.arrival]
    parts_p = [requests.prompt]
    parts_g = [requests.generated]
    for _ in range(whole - 1):
        parts_t.append(requests.arrival + rng.uniform(0.0, JITTER_S, n))
        parts_p.append(requests.prompt)
        parts_g.append(requests.generated)
    frac = factor - whole
    if frac > 0:
        pick = rng.random(n) < frac
        parts_t.append(requests.arrival[pick] + rng.uniform(0.0, JITTER_S, int(pick.sum())))
        parts_p.append(requests.prompt[pick])
        parts_g.append(requests.generated[pick])
    t = np.concatenate(parts_t)
    order = np.argsort(t, kind="stable")
    return Requests(
        f"{requests.name} ×{factor:g}",
        t[order],
        np.concatenate(parts_p)[order],
        np.concatenate(parts_g)[order],
    )


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
