"""Scaling events: a `Decision` as one JSON record, the form the event stream, `events watch --json` and the
Kubernetes Event/condition writers all start from.

The record carries what was decided (current → desired replicas, node-pool changes), why (a sentence with
numbers, the trigger that drove it and each trigger's proposal) and what limited it (`rule`: the HPA reason
names — ScaleUpLimit, ScaleDownStabilized, TooManyReplicas … — and tidescale's own: Panic, Fallback,
Activation, ScaleToZero, MetricsUnavailable, PartialMetrics).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
from typing import Any

from autoscaler.core.decide import Decision

KIND = "ScalingDecision"


def record(decision: Decision) -> dict[str, Any]:
    """The decision as a JSON-ready mapping (camelCase keys, like the rest of the API)."""
    d = decision
    out: dict[str, Any] = {
        "kind": KIND,
        "time": d.at.isoformat().replace("+00:00", "Z"),
        "policy": d.policy,
        "target": d.target,
        "replicas": {"current": d.current, "desired": d.desired},
        "changed": d.changed,
        "reason": d.reason,
        "rule": d.rule,
        "trigger": d.trigger,
        "proposals": [
            {
                "trigger": p.trigger,
                "replicas": p.replicas,
                "active": p.active,
                # the measured load in replicas' worth of work (the metric, on the replicas' scale)
                **({"demand": round(p.demand, 3)} if p.demand is not None else {}),
                **({"failed": True} if p.failed else {}),
                "reason": p.reason,
            }
            for p in d.proposals
        ],
        "nodePools": [c.render() for c in d.node_pools],
    }
    if d.panic:
        out["panic"] = True
    if d.fallback:
        out["fallback"] = True
    if d.forecast is not None:
        out["forecast"] = {"demand": round(d.forecast, 3), "floor": d.floor}
    return out


def render(decision: Decision) -> str:
    """One line of JSON."""
    return json.dumps(record(decision), ensure_ascii=False, separators=(",", ":"))
