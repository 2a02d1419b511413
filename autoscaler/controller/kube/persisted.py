"""A policy's decision state as JSON for its status (`status.state`), so that a restarted controller
continues where the last one stopped: the stabilization history (recommendations and scale events), the last
activity time, consecutive metric failures, the panic window, the forecast's level/trend or seasonal state
(profiles packed in half precision), the recent demand samples behind the percentile floor and the arrivals'
moments behind a measured variability, and the robust trend's blocks.

Pure: no I/O, no clock. `load` never raises: state it cannot read is dropped (with the reason), and the
policy starts fresh — a stale or foreign status must not stop the controller.
"""

from __future__ import annotations

from typing import Any

from autoscaler.core import dispersion as dsp
from autoscaler.core import forecast as fc
from autoscaler.core.behavior import History
from autoscaler.core.decide import PolicyState

VERSION = 1


def _pairs(entries: tuple[tuple[float, Any], ...], digits: int) -> list[list[float]]:
    return [[round(t, 3), round(v, digits) if isinstance(v, float) else v] for t, v in entries]


def dump(state: PolicyState) -> dict[str, Any]:
    """The state as a JSON-ready mapping (times are epoch seconds)."""
    h = state.history
    out: dict[str, Any] = {
        "version": VERSION,
        "history": {
            "highs": _pairs(h.highs, 0),
            "lows": _pairs(h.lows, 0),
            "upEvents": _pairs(h.up_events, 0),
            "downEvents": _pairs(h.down_events, 0),
        },
        "failures": [[name, count] for name, count in state.failures],
    }
    if state.last_active is not None:
        out["lastActive"] = round(state.last_active, 3)
    if state.panic_over_at is not None:
        out["panicOverAt"] = round(state.panic_over_at, 3)
    if state.holt is not None:
        ho = state.holt
        out["holt"] = [round(ho.level, 6), round(ho.trend, 9), round(ho.variance, 6), round(ho.at, 3)]
    if state.demand.samples:
        out["demand"] = _pairs(state.demand.samples, 4)
    if state.seasonal is not None:
        out["seasonal"] = fc.pack(state.seasonal)  # the profiles in half precision: about 7 KB at most
    if state.arrivals is not None:
        a = state.arrivals
        out["arrivals"] = [round(a.mean, 6), round(a.square, 6), round(a.weight, 6), round(a.at, 3)]
    if state.slope is not None:
        sl = state.slope
        out["slope"] = {
            "block": [sl.block_s, round(sl.start, 3), round(sl.at, 3), round(sl.value, 6), round(sl.area, 6)],
            "means": [round(m, 6) for m in sl.means],
            "trend": round(sl.trend, 9),
        }
    return out


def _ints(raw: Any) -> tuple[tuple[float, int], ...]:
    return tuple((float(t), int(v)) for t, v in raw)


def load(raw: Any) -> tuple[PolicyState | None, str]:
    """The state stored by `dump`, or (None, why) when there is none or it cannot be read."""
    if not isinstance(raw, dict) or not raw:
        return None, "no stored state"
    if raw.get("version") != VERSION:
        return None, f"stored state version {raw.get('version')!r} is not {VERSION}"
    try:
        h = raw.get("history", {})
        history = History(
            _ints(h.get("highs", ())),
            _ints(h.get("lows", ())),
            _ints(h.get("upEvents", ())),
            _ints(h.get("downEvents", ())),
        )
        holt = fc.Holt(*(float(x) for x in raw["holt"])) if "holt" in raw else None
        samples = tuple((float(t), float(v)) for t, v in raw.get("demand", ()))
        demand = fc.Recent(samples, tuple(sorted(v for _, v in samples if v > 0)))
        seasonal = fc.unpack(raw["seasonal"]) if "seasonal" in raw else None
        arrivals = dsp.Dispersion(*(float(x) for x in raw["arrivals"])) if "arrivals" in raw else None
        slope = None
        if "slope" in raw:
            sl = raw["slope"]
            block_s, start, at, value, area = (float(x) for x in sl["block"])
            means = tuple(float(m) for m in sl["means"])
            slope = fc.Slope(block_s, start, at, value, area, means, float(sl["trend"]))
        state = PolicyState(
            history=history,
            last_active=float(raw["lastActive"]) if "lastActive" in raw else None,
            failures=tuple((str(n), int(c)) for n, c in raw.get("failures", ())),
            panic_over_at=float(raw["panicOverAt"]) if "panicOverAt" in raw else None,
            holt=holt,
            demand=demand,
            seasonal=seasonal,
            arrivals=arrivals,
            slope=slope,
        )
    except (TypeError, ValueError, KeyError) as e:
        return None, f"stored state is unreadable ({type(e).__name__}: {e})"
    return state, "restored"


def restore_level(state: PolicyState, percentile: int | None) -> PolicyState:
    """Recompute the percentile level from the restored demand samples (it is not stored)."""
    if percentile is None or not state.demand.ranked:
        return state
    return state._replace(level=fc.level(state.demand, percentile))
