"""A Spark pipeline through the launcher on the real local control plane: `tidescale submit FILE` runs
PySpark's own spark-submit, the tidescale scheduler (in-process, over this test's KWOK nodes) binds the
driver pod, and the pipeline is a launcher job like the others — listed, inspected, shown by `top job`,
deleted with nothing left. KWOK runs no containers: placement is asserted, not execution. Slow (the JVM
client): one test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.cluster_harness import Harness, leftovers
from tests.waiting import wait_for
from tidescale.cli import main

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "pipelines" / "llm-preprocessor.yaml"
VOLCANO = ("scheduling.volcano.sh", "v1beta1")


def test_a_spark_pipeline_is_submitted_listed_got_shown_and_deleted_like_any_job(
    h: Harness, kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h.add_nodes(2, {})
    h.start()
    shutil.copy(EXAMPLE.parent / "models.csv", tmp_path / "models.csv")
    text = EXAMPLE.read_text().replace("name: llm-preprocessor", "name: prep", 1)
    text = text.replace("\nspec:\n", "\nspec:\n  engine: spark\n  target: kubernetes\n", 1)
    text = text.replace(
        "  scheduling: {schedulerName: volcano, queue: preprocessing}\n", ""
    )  # queue: default
    path = tmp_path / "prep.yaml"
    path.write_text(text)
    flags = ["-n", h.ns, "--kubeconfig", h.kubeconfig]

    # 1. submitted through the launcher, with spark-submit, waited for until the driver is bound
    assert (
        main(["submit", str(path), *flags, "--scheduler", h.name, "--wait", "--timeout", "120", "--json"])
        == 0
    )
    (done,) = json.loads(capsys.readouterr().out)["jobs"]
    assert (done["kind"], done["name"], done["phase"]) == ("Pipeline", "prep", "Running")
    assert done["objects"] == [
        "ConfigMap/tidescale-job-prep",
        "ServiceAccount/prep",
        "Role/prep",
        "RoleBinding/prep",
        "PodGroup/prep",
        "Pod/prep-driver",
    ]
    assert done["launch"]["engine"] == "spark"
    driver = h.core.read_namespaced_pod("prep-driver", h.ns)
    assert driver.spec.scheduler_name == h.name and driver.spec.node_name in h.nodes
    assert driver.metadata.annotations["tidescale.io/node"] == driver.spec.node_name  # bound by tidescale
    root = h.core.read_namespaced_config_map("tidescale-job-prep", h.ns)
    assert [(r.kind, r.uid) for r in driver.metadata.owner_references] == [("ConfigMap", root.metadata.uid)]

    # 2. a launcher job like the others
    assert main(["jobs", "list", *flags, "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)["jobs"]
    assert (listed["name"], listed["kind"], listed["phase"], listed["queue"]) == (
        "prep",
        "Pipeline",
        "Running",
        "default",
    )
    assert listed["schedulerName"] == h.name
    assert main(["jobs", "get", "prep", *flags, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["reason"] == f"Pod/prep-driver bound to {driver.spec.node_name}"
    assert got["workloads"][0] == f"Pod/prep-driver: Running on {driver.spec.node_name}"
    assert [p["name"] for p in got["pods"]] == ["prep-driver"]
    assert got["podGroup"]["name"] == "prep"
    assert main(["top", "job", *flags, "--prometheus-url", ""]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:3] == ["prep", "Pipeline", "Running"]

    # 3. a second submission of the same name is refused
    assert main(["submit", str(path), *flags, "--scheduler", h.name]) == 1
    assert "a job named prep (namespace" in capsys.readouterr().err

    # 4. deleted: the root, and through it the driver, which owns everything else
    assert main(["jobs", "delete", "prep", *flags]) == 0
    assert capsys.readouterr().out == f"job prep deleted from namespace {h.ns}\n"
    wait_for(lambda: not leftovers(kube, h.ns), 60, "nothing left of the pipeline")
    assert main(["jobs", "list", *flags, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["jobs"] == []
