"""Trigger types and their registry: every list of types is derived from it, and a type states what it is
read by."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import pytest

from autoscaler.api import policy
from autoscaler.core.triggers import (
    BUILTIN_TYPES,
    KAFKA,
    PROMETHEUS,
    Context,
    Observations,
    Proposal,
    Reading,
    TriggerBase,
    TriggerRegistry,
    TriggerType,
)
from tests.autoscaler.autoscaler_builders import TRIGGERS


class ConstantTrigger(TriggerBase):
    type: Literal["Constant"]
    replicas: int


def constant(
    spec: Any, name: str, reading: Reading | None, seen: Observations, ctx: Context, now: datetime, t: float
) -> Proposal:
    return Proposal(name, spec.replicas)


def test_the_builtin_types_are_what_the_policy_documents_accept() -> None:
    assert tuple(t.type for t in BUILTIN_TYPES) == policy.TRIGGER_TYPES
    assert TRIGGERS.known() == tuple(sorted(policy.TRIGGER_TYPES))
    assert {"Prometheus", "KafkaLag", "QueueDepth", "SLO", "Schedule"} == policy.ZERO_POD_TYPES


def test_each_type_says_which_source_reads_it() -> None:
    assert TRIGGERS.read_by(PROMETHEUS) == {"GPUUtilization", "DCGM", "Prometheus", "QueueDepth", "SLO"}
    assert TRIGGERS.read_by(KAFKA) == {"KafkaLag"}
    assert TRIGGERS.sourceless() == {"Schedule"}
    assert {t.type for t in TRIGGERS.types() if t.needs_pods} == {"GPUUtilization", "DCGM"}
    assert {t.type: t.poll_seconds for t in TRIGGERS.types() if t.poll_seconds} == {"KafkaLag": 1.0}


def test_a_new_type_is_one_value_in_a_registry() -> None:
    registry = TriggerRegistry()
    registry.register(TriggerType("Constant", ConstantTrigger, constant, source=None, wakes_from_zero=True))
    spec = ConstantTrigger(type="Constant", replicas=3)
    p = registry.get("Constant").evaluate(spec, "c", None, Observations(1, 1), Context(), datetime.min, 0.0)
    assert p.replicas == 3
    assert registry.sourceless() == {"Constant"}


def test_a_type_must_match_its_models_literal() -> None:
    with pytest.raises(ValueError, match="its model declares type"):
        TriggerType("Konstant", ConstantTrigger, constant, source=None, wakes_from_zero=False)


def test_a_prometheus_read_type_must_say_what_it_asks_and_how_it_reads() -> None:
    with pytest.raises(ValueError, match="needs queries and reading"):
        TriggerType("Constant", ConstantTrigger, constant, source=PROMETHEUS, wakes_from_zero=False)
