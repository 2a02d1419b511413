"""The launcher's extension point for kinds created by another package's client: a file's documents sorted
by kind with their line numbers kept, the root of an external job, and the phase of a pod workload."""

from __future__ import annotations

import json

import pytest
import yaml

from jobs.launcher.external import (
    WORKLOAD_ANNOTATION,
    ExternalJob,
    owner_reference,
    root_of,
    split_documents,
    workload_view,
)
from jobs.launcher.kinds import parse_jobs
from jobs.launcher.status import JobView, PodView
from kernel.errors import InvalidSpec

BATCH = """apiVersion: tidescale.io/v1alpha1
kind: BatchJob
metadata: {name: etl}
spec: {image: etl:1}
"""
PIPELINE = """apiVersion: tidescale.io/v1alpha1
kind: Pipeline
metadata: {name: prep}
spec:
  engine: spark
"""


def test_external_documents_are_blanked_out_of_the_launchers_text_and_keep_their_lines() -> None:
    text = BATCH + "---\n" + PIPELINE + "---\n" + BATCH.replace("etl", "etl2")
    split = split_documents(text, {"Pipeline"})
    assert len(split.launcher.splitlines()) == len(text.splitlines())
    jobs = parse_jobs(split.launcher)
    assert [j.metadata.name for j in jobs] == ["etl", "etl2"]
    ((kind, only),) = split.external
    assert kind == "Pipeline"
    lines = only.splitlines()
    assert lines[6] == "kind: Pipeline" and lines[8] == "spec:"  # line 7 of the file is line 7 here
    assert yaml.safe_load(only)["metadata"]["name"] == "prep"
    # an error in the launcher's part still names the file's line
    broken = split_documents(text.replace("image: etl:1}\n---\napi", "image: 7}\n---\napi", 1), {"Pipeline"})
    assert broken.launcher.count("\n") == text.count("\n")


@pytest.mark.parametrize(
    ("text", "launcher", "external"),
    [
        pytest.param(BATCH, BATCH, 0, id="no external document: the text as it is"),
        pytest.param(PIPELINE, "", 1, id="only external documents: nothing for the launcher"),
        pytest.param("---\n" + PIPELINE + "---\n# a comment\n", "", 1, id="separators and comments"),
        pytest.param(
            "kind: [unclosed\n---\n" + PIPELINE, "kind: [unclosed\n---\n\n\n\n\n\n", 1, id="bad YAML"
        ),
    ],
)
def test_a_file_splits_into_the_launchers_text_and_one_text_per_external_document(
    text: str, launcher: str, external: int
) -> None:
    split = split_documents(text, {"Pipeline"})
    assert split.launcher == launcher
    assert len(split.external) == external


def test_an_invalid_launcher_document_next_to_a_pipeline_names_its_own_line() -> None:
    text = PIPELINE + "---\n" + BATCH.replace("spec: {image: etl:1}", "spec: {image: etl:1, completions: 0}")
    split = split_documents(text, {"Pipeline"})
    with pytest.raises(InvalidSpec) as e:
        parse_jobs(split.launcher, "jobs.yaml")
    assert e.value.problems[0].startswith("10: spec.completions:")


def a_job() -> ExternalJob:
    return ExternalJob(
        kind="Pipeline",
        name="prep",
        namespace="ml",
        queue="default",
        scheduler_name="tidescale",
        workload=("Pod", "prep-driver"),
        document={"kind": "Pipeline", "spec": {"queue": "default"}},
    )


def test_an_external_job_has_a_launcher_root_that_names_its_workload() -> None:
    root = root_of(a_job())
    assert root["metadata"]["name"] == "tidescale-job-prep"
    assert root["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "tidescale",
        "tidescale.io/job": "prep",
        "tidescale.io/kind": "Pipeline",
        "tidescale.io/queue": "default",
    }
    assert root["metadata"]["annotations"] == {WORKLOAD_ANNOTATION: "Pod/prep-driver"}
    assert json.loads(root["data"]["job.json"])["kind"] == "Pipeline"
    created = {**root, "metadata": {**root["metadata"], "uid": "u-1"}}
    assert owner_reference(created) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "tidescale-job-prep",
        "uid": "u-1",
        "controller": False,
        "blockOwnerDeletion": True,
    }


def a_pod(name: str, phase: str = "Running", node: str = "n0", message: str = "") -> PodView:
    return PodView(name, "", "", phase, node, 0.0, {}, "tidescale", bool(node), message, "")


def a_view(*pods: PodView, phase: str = "Pending") -> JobView:
    return JobView("prep", "ml", "Pipeline", phase, "its workload does not exist (yet)", "", "", "", pods)


@pytest.mark.parametrize(
    ("pods", "phase", "reason"),
    [
        pytest.param((), "Pending", "its workload Pod/prep-driver does not exist (yet)", id="not created"),
        pytest.param(
            (a_pod("prep-driver", "Pending", "", "Unschedulable: 0/2 nodes are available"),),
            "Pending",
            "Pod/prep-driver: Unschedulable: 0/2 nodes are available",
            id="waiting for the scheduler",
        ),
        pytest.param((a_pod("prep-driver"),), "Running", "Pod/prep-driver bound to n0", id="bound"),
        pytest.param(
            (a_pod("prep-driver"), a_pod("exec-1"), a_pod("exec-2", "Pending", "")),
            "Running",
            "Pod/prep-driver bound to n0; 1/2 of the pods it created bound",
            id="bound, with executors",
        ),
        pytest.param(
            (a_pod("prep-driver", "Succeeded"),), "Succeeded", "Pod/prep-driver completed", id="done"
        ),
        pytest.param((a_pod("prep-driver", "Failed"),), "Failed", "Pod/prep-driver failed", id="failed"),
    ],
)
def test_a_job_whose_workload_is_a_pod_has_that_pods_phase(
    pods: tuple[PodView, ...], phase: str, reason: str
) -> None:
    view = workload_view(a_view(*pods), "Pod/prep-driver")
    assert (view.phase, view.reason) == (phase, reason)
    assert view.workloads[0].startswith("Pod/prep-driver: ")


def test_a_deployment_workload_or_a_job_being_deleted_keeps_its_view() -> None:
    view = a_view(a_pod("prep-jm-1"), phase="Running")
    assert workload_view(view, "Deployment/prep") is view
    deleting = a_view(a_pod("prep-driver"), phase="Terminating")
    assert workload_view(deleting, "Pod/prep-driver") is deleting
