"""What every fault test asserts of an `Outcome` (`tidescale.local.faults`, where the faults live): every
input record in the output or the dead-letter topic, exactly once or at least once, first arrivals in input
order within their input key, and every record committed within a stated time after the fault's end."""

from __future__ import annotations

from typing import Any

from streaming.plan import Plan
from tests.streaming.kafka_records import example_plan, unique
from tidescale.local.faults import MAX_RECORD_BYTES, Outcome


def fault_plan(**delivery: Any) -> Plan:
    """The llm-preprocessor on topics of its own; checkpoints every 2 s, results over 20,000 bytes dead."""
    return example_plan(
        "llm-preprocessor",
        unique(),
        delivery={"checkpointInterval": "2s", "maxRecordBytes": MAX_RECORD_BYTES, **delivery},
    )


def kept(outcome: Outcome, within_s: float, exactly: bool) -> None:
    tally, row = outcome.tally, outcome.row()
    assert outcome.error is None, f"the run ended by itself: {outcome.error}"
    assert tally.lost == 0, row
    assert tally.unexpected == 0, row  # nothing that was not asked for
    if exactly:
        assert tally.duplicated == 0, row
        assert tally.delivered == tally.expected == outcome.records, row
    assert tally.reordered == 0, row
    assert outcome.recovery_s is not None, row
    assert outcome.recovery_s <= within_s, row
    print(row)  # `pytest -s` shows the counts (duplicates at least once) and the recovery time
