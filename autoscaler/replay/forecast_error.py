"""How well the forecast predicts a trace's 5-minute request counts one lead time ahead, beside the
recent-past level it replaces.

The trace is replayed as the controller sees it: a decision every `step_s` seconds reads the request rate over
the trailing `window_s` seconds (as a `rate(…[1m])` query does) and feeds it to the shipped forecasters —
`autoscaler.core.forecast`'s seasonal ensemble, Holt's linear trend (the forecast without seasonality) and
the level with the robust trend (`trendWindowSeconds`: Theil–Sen over the window's blocks). For
each 5-minute bucket of the clock, the forecast is the one made at the last decision at least `horizon_s`
before the bucket starts, times 300 s; the recent-past level is the mean of the same signal over the 300 s
before that decision, times 300 s — what a controller without a forecast holds, from the same readings.

Errors: MAPE (mean absolute percentage error) over the buckets with at least one request — a bucket without
any has no percentage error —, and WAPE (the absolute errors summed over every bucket, over the requests) so
that the idle buckets count too. The first bucket has no past and is not scored, nor is the last, partial one.

Pure apart from `read_arrivals` (one file) and `main` (the command line): no clock.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from autoscaler.api.policy import ScalingPolicy
from autoscaler.core import forecast as fc
from kernel.errors import InvalidSpec

BUCKET_S = fc.BUCKET_S
HOLT_ALPHA, HOLT_BETA = (
    0.3,
    0.1,
)  # the Forecast model's defaults (levelSmoothingPercent, trendSmoothingPercent)
TREND_WINDOW_S = 480  # the robust trend's window when the policy names none (the LLM example's)
# the timestamp column of the trace formats read here: GenTD26 (gmt_create) and the Azure LLM request log
TIME_COLUMNS = ("gmt_create", "timestamp")


@dataclass(frozen=True)
class Errors:
    """One forecaster's errors on the scored buckets."""

    mape: float  # over the buckets with requests, as a fraction
    wape: float  # Σ|forecast − actual| ÷ Σ actual over every scored bucket

    def render(self) -> dict[str, float]:
        return {"mape": round(self.mape, 4), "wape": round(self.wape, 4)}


@dataclass(frozen=True)
class ForecastError:
    seasonality: str
    horizon_s: float
    buckets: int  # scored buckets
    busy_buckets: int  # of them, with at least one request (the MAPE's)
    forecaster: Errors  # the seasonal ensemble
    level: Errors  # the recent-past level: the last 300 s's count
    holt: Errors  # Holt's linear trend on the same rate signal
    robust: Errors  # the level with the robust trend (Theil–Sen over `trend_window_s`)
    trend_window_s: float = TREND_WINDOW_S

    def render(self) -> dict[str, object]:
        return {
            "seasonality": self.seasonality,
            "horizon_seconds": self.horizon_s,
            "bucket_seconds": BUCKET_S,
            "buckets": self.buckets,
            "busy_buckets": self.busy_buckets,
            "forecaster": self.forecaster.render(),
            "recent_level": self.level.render(),
            "holt": self.holt.render(),
            "robust_trend": {**self.robust.render(), "window_seconds": self.trend_window_s},
        }

    def describe(self) -> str:
        return (
            f"forecast ({self.seasonality}, {self.horizon_s:g} s ahead) on {self.busy_buckets} busy 5-minute "
            f"buckets: MAPE {self.forecaster.mape:.1%} (WAPE {self.forecaster.wape:.1%}); recent-past level "
            f"{self.level.mape:.1%} ({self.level.wape:.1%}); Holt {self.holt.mape:.1%} "
            f"({self.holt.wape:.1%}); robust trend over {self.trend_window_s:g} s {self.robust.mape:.1%} "
            f"({self.robust.wape:.1%})"
        )


def _errors(forecast: npt.NDArray[np.float64], actual: npt.NDArray[np.float64]) -> Errors:
    miss = np.abs(forecast - actual)
    busy = actual > 0
    mape = float((miss[busy] / actual[busy]).mean()) if busy.any() else 0.0
    total = float(actual.sum())
    return Errors(mape, float(miss.sum()) / total if total > 0 else 0.0)


def forecast_error(
    arrivals: Sequence[float] | npt.NDArray[np.float64],
    horizon_s: float,
    seasonality: str = "auto",
    step_s: float = 15.0,
    window_s: float = 60.0,
    trend_window_s: float = TREND_WINDOW_S,
) -> ForecastError:
    """The errors on `arrivals` (epoch seconds, sorted; the clock's buckets and days are theirs) of the
    forecasts made `horizon_s` ahead."""
    t = np.sort(np.asarray(arrivals, dtype=np.float64))
    if len(t) < 2:
        raise ValueError("forecast error: the trace needs at least two requests")
    if not 0 < step_s <= BUCKET_S or window_s <= 0 or horizon_s < 0:
        raise ValueError(
            f"forecast error: the step must be within (0, {BUCKET_S}] s, the window > 0 s, the horizon ≥ 0 s"
        )
    first, last = int(t[0] // BUCKET_S), int(t[-1] // BUCKET_S)  # the last bucket is partial
    counts = np.bincount((t // BUCKET_S).astype(np.int64) - first, minlength=last - first + 1)
    start = first * BUCKET_S
    times = start + step_s * np.arange(math.floor((last * BUCKET_S - start) / step_s) + 1)
    seen = np.searchsorted(t, times, side="left") - np.searchsorted(t, times - window_s, side="left")
    rate = seen / window_s
    # the recent-past level: the mean of the same signal over the last BUCKET_S seconds (each sample standing
    # for the step before it), as a count per bucket
    per = max(1, round(BUCKET_S / step_s))
    run = np.concatenate([[0.0], np.cumsum(rate)])
    upto = np.arange(1, len(rate) + 1)
    recent = (run[upto] - run[np.maximum(0, upto - per)]) / np.minimum(upto, per) * BUCKET_S
    # the decision that forecasts each bucket: the last one at least horizon_s before the bucket starts
    forecasts = {}
    for bucket in range(first + 1, last):
        k = math.floor((bucket * BUCKET_S - horizon_s - start) / step_s + 1e-9)
        if k >= 0:
            forecasts[k] = bucket
    seasonal = fc.seasonal_start(seasonality)
    holt: fc.Holt | None = None
    flat: fc.Holt | None = None  # the level the robust trend extrapolates (Holt's, with no trend of its own)
    slope: fc.Slope | None = None
    block_s = trend_window_s / fc.TREND_BLOCKS
    rows: list[tuple[int, float, float, float, float]] = []
    for k, (now, r) in enumerate(zip(times.tolist(), rate.tolist(), strict=True)):
        seasonal = fc.observe(seasonal, r, now)
        holt = fc.update(holt, r, now, HOLT_ALPHA, HOLT_BETA)
        flat = fc.update(flat, r, now, HOLT_ALPHA, 0.0)
        slope = fc.slope_update(slope, r, now, block_s)
        target = forecasts.get(k)
        if target is not None:
            ahead = target * BUCKET_S - now
            rows.append(
                (
                    target - first,
                    fc.seasonal_predict(seasonal, now, ahead) * BUCKET_S,
                    float(recent[k]),
                    fc.predict(holt, ahead, 0.0) * BUCKET_S,
                    fc.predict(flat, ahead, 0.0, slope.trend) * BUCKET_S,
                )
            )
    if not rows:
        raise ValueError("forecast error: the trace is too short to score one bucket")
    idx = np.array([r[0] for r in rows])
    actual = counts[idx].astype(np.float64)
    columns = np.array([r[1:] for r in rows], dtype=np.float64)
    return ForecastError(
        seasonality,
        horizon_s,
        len(rows),
        int((actual > 0).sum()),
        _errors(columns[:, 0], actual),
        _errors(columns[:, 1], actual),
        _errors(columns[:, 2], actual),
        _errors(columns[:, 3], actual),
        trend_window_s,
    )


def for_policy(policy: ScalingPolicy, arrivals: npt.NDArray[np.float64]) -> ForecastError | None:
    """The errors one model start ahead (the policy's `lead.modelStartSeconds`) of the policy's seasonal
    forecast — `auto` when it has none, to show what one would do — and of the robust trend over the
    policy's `trendWindowSeconds` (TREND_WINDOW_S when it names none) on `arrivals` (epoch seconds); None
    when the trace is too short to score one bucket."""
    f = policy.spec.forecast
    seasonality = f.seasonality if f is not None and f.seasonality != "none" else "auto"
    window = (
        f.trend_window_seconds if f is not None and f.trend_window_seconds is not None else TREND_WINDOW_S
    )
    try:
        return forecast_error(
            arrivals, float(policy.spec.lead.model_start_seconds), seasonality, trend_window_s=window
        )
    except ValueError:
        return None


def read_arrivals(path: Path) -> npt.NDArray[np.float64]:
    """Arrival times (epoch seconds, UTC, sorted) of a GenTD26 (`gmt_create`) or Azure LLM (`TIMESTAMP`)
    request log."""
    if not path.is_file():
        raise InvalidSpec(str(path), ["0: (trace): file not found"])
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        column = next((header.index(c) for c in TIME_COLUMNS if c in header), None)
        if column is None:
            raise InvalidSpec(
                str(path), [f"1: (trace): no {' or '.join(TIME_COLUMNS)} column in {','.join(header)!r}"]
            )
        out = []
        for line, row in enumerate(reader, start=2):
            if not row or not row[column].strip():
                continue
            try:
                out.append(datetime.fromisoformat(row[column].strip()).replace(tzinfo=UTC).timestamp())
            except ValueError as e:
                raise InvalidSpec(str(path), [f"{line}: {header[column]}: {e}"]) from None
    return np.sort(np.array(out, dtype=np.float64))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m autoscaler.replay.forecast_error TRACE… [--horizon S] [--seasonality S] [--json]`."""
    p = argparse.ArgumentParser(prog="python -m autoscaler.replay.forecast_error", description=__doc__)
    p.add_argument("traces", type=Path, nargs="+", metavar="TRACE", help="GenTD26 or Azure LLM request logs")
    p.add_argument("--horizon", type=float, default=60.0, help="seconds ahead: one model start (default 60)")
    p.add_argument("--seasonality", default="auto", choices=fc.SEASONALITIES[1:])
    p.add_argument(
        "--trend-window",
        type=float,
        default=TREND_WINDOW_S,
        help=f"the robust trend's window (default {TREND_WINDOW_S})",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per trace")
    args = p.parse_args(argv)
    for path in args.traces:
        try:
            err = forecast_error(
                read_arrivals(path), args.horizon, args.seasonality, trend_window_s=args.trend_window
            )
        except (InvalidSpec, ValueError) as e:
            print(f"{path}: {e}")
            return 2
        print(
            json.dumps({"trace": path.name, **err.render()})
            if args.json
            else f"{path.name}: {err.describe()}"
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
