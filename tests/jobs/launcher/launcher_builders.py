"""Small builders of launcher documents for the tests: `a_training_job(workers=4)` and friends."""

from __future__ import annotations

from typing import Any

import yaml

from jobs.launcher.kinds import BatchJob, InferenceService, Job, TrainingJob, parse_jobs


def document(kind: str, name: str, metadata: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "tidescale.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, **(metadata or {})},
        "spec": {"image": "trainer:1", **spec},
    }


def a_job(kind: str, name: str = "job", **spec: Any) -> Job:
    (job,) = parse_jobs(yaml.safe_dump(document(kind, name, **spec), sort_keys=False))
    return job


def a_training_job(name: str = "train", workers: int = 2, **spec: Any) -> TrainingJob:
    job = a_job("TrainingJob", name, workers=workers, **spec)
    assert isinstance(job, TrainingJob)
    return job


def a_service(name: str = "llm", **spec: Any) -> InferenceService:
    job = a_job("InferenceService", name, **spec)
    assert isinstance(job, InferenceService)
    return job


def a_batch_job(name: str = "etl", **spec: Any) -> BatchJob:
    job = a_job("BatchJob", name, **spec)
    assert isinstance(job, BatchJob)
    return job
