"""The scheduler's configuration file (`tidescale scheduler run --config FILE`), validated at load.

```yaml
apiVersion: tidescale.io/v1alpha1
kind: SchedulerConfig
schedulerName: tidescale
placement: {type: Tidescale}        # any placement plugin (Binpack, Spread, FGD, Tidescale, Topology, …)
queuePolicy: FairShare              # the default for every queue: FIFO, LIFO, Priority, Capacity, FairShare
queues: {research: LIFO}            # per queue (a Queue's `tidescale.io/queue-policy` annotation wins)
nodeSelector: {pool: gpu}           # only these nodes are this scheduler's
```

Pure apart from `read_config`, which reads one file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from jobs.workload import PlacementSpec, TidescaleSpec
from kernel.documents import Spec, read_document

PolicyName = Literal["FIFO", "LIFO", "Priority", "Capacity", "FairShare"]


class SchedulerConfig(Spec):
    api_version: Literal["tidescale.io/v1alpha1"] = "tidescale.io/v1alpha1"
    kind: Literal["SchedulerConfig"] = "SchedulerConfig"
    scheduler_name: str = Field("tidescale", min_length=1)
    placement: PlacementSpec = Field(default_factory=TidescaleSpec)
    queue_policy: PolicyName = "FIFO"
    queues: dict[str, PolicyName] = {}
    batch_size: int = Field(1000, ge=1)  # pending entries offered to one cycle
    bind_workers: int = Field(16, ge=1)
    qps: float = Field(50.0, gt=0)  # kube-scheduler's defaults (--kube-api-qps, --kube-api-burst)
    burst: int = Field(100, ge=1)
    status_resync_seconds: float = Field(60.0, gt=0)  # rewrite an unchanged PodScheduled=False this often
    # only nodes with these labels are this scheduler's (a dedicated pool, or one instance per partition)
    node_selector: dict[str, str] = {}


def read_config(path: Path) -> SchedulerConfig:
    return read_document(path, SchedulerConfig)
