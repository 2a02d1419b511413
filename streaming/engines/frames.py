"""The vectorised UDF body both JVM engines call: a pandas Series of raw Kafka values → a DataFrame of
`kind`, `topic`, `key`, `value` (and the typed fields of a stateful plan), computed one step at a time
over the whole batch (`columnar.BatchProcessor`; `stateless.Processor` for a record off the common path).

Imported inside the engines' Python workers (by reference), so it must stay importable and cheap.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from streaming.columnar import BatchProcessor
from streaming.plan import Plan
from streaming.stateless import FIELD_PREFIX, RESULT_COLUMNS, Processor


def result_columns(plan: Plan) -> list[tuple[str, str]]:
    """(column, schema type) of what the UDF returns, in order."""
    typed = [(FIELD_PREFIX + n, t) for n, t in plan.fields] if plan.stateful else []
    return [(c, "string") for c in RESULT_COLUMNS] + typed


class VectorProcess:
    """Picklable: carries the plan; builds its `BatchProcessor` once per worker."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._processor: BatchProcessor | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"plan": self.plan, "_processor": None}

    def __call__(self, values: pd.Series) -> pd.DataFrame:
        if self._processor is None:
            self._processor = BatchProcessor(Processor(self.plan))
        columns = self._processor.columns(values.tolist())
        # Object columns: a null long stays None (not NaN), and both engines convert them to Arrow with
        # a null mask (pandas' nullable extension dtypes refuse one in PyFlink's converter).
        return pd.DataFrame(
            {name: pd.Series(columns[name], dtype=object) for name, _ in result_columns(self.plan)}
        )
