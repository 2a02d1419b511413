"""The `Schedule` trigger: replica floors during cron windows (UTC). The policy never goes below `replicas`
inside a window and the trigger has no opinion outside them. It reads nothing (the evaluator needs only
`now`), and a window's floor wakes a service from zero.

Pure: no I/O, no clock (`now` is an argument).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from autoscaler.api.base import Spec
from autoscaler.api.cron import CronError, in_window, parse_cron
from autoscaler.core.triggers.trigger import (
    Context,
    Observations,
    Proposal,
    Reading,
    TriggerBase,
    TriggerType,
)


class ScheduleWindow(Spec):
    cron: str
    duration_seconds: int = Field(ge=60)
    replicas: int = Field(ge=0)

    @model_validator(mode="after")
    def _cron(self) -> ScheduleWindow:
        try:
            parse_cron(self.cron)
        except CronError as e:
            raise ValueError(f"cron: {e}") from None
        return self


class ScheduleTrigger(TriggerBase):
    """Replica floors during cron windows (UTC): the policy never goes below `replicas` inside a window."""

    type: Literal["Schedule"]
    windows: list[ScheduleWindow] = Field(min_length=1)


def evaluate(
    spec: ScheduleTrigger,
    name: str,
    reading: Reading | None,
    seen: Observations,
    ctx: Context,
    now: datetime,
    t: float,
) -> Proposal:
    floor = None
    for w in spec.windows:
        if in_window(parse_cron(w.cron), w.duration_seconds, now):
            floor = max(floor or 0, w.replicas)
    if floor is None:
        return Proposal(name, None, template="{}: outside every window", args=(name,), floor=True)
    return Proposal(
        name, floor, active=floor > 0, template="schedule window floor {}", args=(floor,), floor=True
    )


TYPE = TriggerType("Schedule", ScheduleTrigger, evaluate, source=None, wakes_from_zero=True)
