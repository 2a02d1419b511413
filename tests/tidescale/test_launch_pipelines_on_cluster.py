"""Pipelines through the launcher on the real local control plane.

- Spark and Flink: `tidescale submit FILE` runs PySpark's own spark-submit or PyFlink's own `flink run
  --target kubernetes-application`, the tidescale scheduler (in-process, over this test's KWOK nodes)
  binds the driver pod or the JobManager's, and the pipeline is a launcher job like the others — listed,
  inspected, shown by `top job`, deleted with nothing left. KWOK runs no containers: placement is
  asserted, not execution. Slow (the JVM clients): one test each.
- Local: `spec.target: local` runs `tidescale pipeline run` on this machine in the background against
  the real Kafka, recorded in the cluster: listed and inspected with its phase from its process, its log
  read, stopped and deleted with nothing left here or there.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from jobs.launcher import processes
from jobs.launcher.local import Process
from streaming import pipeline_file
from tests.cluster_harness import Harness, leftovers
from tests.streaming.kafka_records import llm_requests, read_all, unique
from tests.waiting import wait_for
from tidescale.cli import main
from tidescale.local import environment

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


def test_a_flink_pipeline_is_submitted_its_jobmanager_bound_by_tidescale_and_deleted_like_any_job(
    h: Harness, kube: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h.add_nodes(2, {})
    h.start()
    shutil.copy(EXAMPLE.parent / "models.csv", tmp_path / "models.csv")
    text = EXAMPLE.read_text().replace("name: llm-preprocessor", "name: stream", 1)
    text = text.replace("\nspec:\n", "\nspec:\n  engine: flink\n", 1)
    text = text.replace("  scheduling: {schedulerName: volcano, queue: preprocessing}\n", "")
    path = tmp_path / "stream.yaml"
    path.write_text(text)
    flags = ["-n", h.ns, "--kubeconfig", h.kubeconfig]

    # 1. through the launcher with Flink's own client, waited for until the JobManager's pod is bound
    argv = ["submit", str(path), *flags, "--scheduler", h.name, "--wait", "--timeout", "180", "--json"]
    assert main(argv) == 0
    (done,) = json.loads(capsys.readouterr().out)["jobs"]
    assert (done["kind"], done["name"], done["phase"]) == ("Pipeline", "stream", "Running")
    assert done["objects"][0] == "ConfigMap/tidescale-job-stream"
    assert {"PodGroup/stream", "Deployment/stream"} <= set(done["objects"])
    assert done["launch"]["engine"] == "flink"
    deployment = client.AppsV1Api(kube).read_namespaced_deployment("stream", h.ns)  # Flink's client made it
    root = h.core.read_namespaced_config_map("tidescale-job-stream", h.ns)
    assert [(r.kind, r.uid) for r in deployment.metadata.owner_references] == [
        ("ConfigMap", root.metadata.uid)
    ]
    (jobmanager,) = h.core.list_namespaced_pod(h.ns, label_selector="app=stream,component=jobmanager").items
    assert jobmanager.spec.scheduler_name == h.name and jobmanager.spec.node_name in h.nodes
    assert jobmanager.metadata.annotations["tidescale.io/node"] == jobmanager.spec.node_name  # by tidescale
    assert jobmanager.metadata.annotations["scheduling.k8s.io/group-name"] == "stream"

    # 2. a launcher job like the others
    assert main(["jobs", "list", *flags, "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)["jobs"]
    assert (listed["name"], listed["kind"], listed["phase"], listed["queue"]) == (
        "stream",
        "Pipeline",
        "Running",
        "default",
    )
    assert main(["jobs", "get", "stream", *flags, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["phase"] == "Running" and got["queuePosition"] is None
    assert got["workloads"] in (["Deployment/stream: 0/1 ready"], ["Deployment/stream: 1/1 ready"])
    assert [(p["name"], p["node"]) for p in got["pods"]] == [
        (jobmanager.metadata.name, jobmanager.spec.node_name)
    ]
    assert got["podGroup"]["name"] == "stream"

    # 3. deleted: the root, and through it the Deployment, which owns everything else
    assert main(["jobs", "delete", "stream", *flags]) == 0
    assert capsys.readouterr().out == f"job stream deleted from namespace {h.ns}\n"
    wait_for(lambda: not leftovers(kube, h.ns), 60, "nothing left of the pipeline")
    assert main(["jobs", "list", *flags, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["jobs"] == []


# -- a local pipeline ---------------------------------------------------------------------------------


def local_pipeline(path: Path, name: str, suffix: str) -> dict[str, str]:
    """The example pipeline with its own topics and group, to run with the python engine on this machine;
    its topics by role."""
    document = pipeline_file.load(EXAMPLE).model_dump(mode="json", by_alias=True, exclude_none=True)
    document["metadata"]["name"] = name
    body = document["spec"]
    topics = {}
    for role, where in (("source", body["source"]), ("sink", body["sink"]), ("dead", body["deadLetter"])):
        where["topic"] = topics[role] = f"{where['topic']}-{suffix}"
    body["source"]["group"] = f"{body['source']['group']}-{suffix}"
    document["spec"] = {"engine": "python", "target": "local", **body}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return topics


def root_annotations(kube: Any, namespace: str, name: str) -> dict[str, str]:
    root = client.CoreV1Api(kube).read_namespaced_config_map(f"tidescale-job-{name}", namespace)
    return dict(root.metadata.annotations)


def test_a_local_pipeline_runs_here_in_the_background_is_listed_logged_stopped_and_deleted(
    stack: environment.Environment,
    kube: Any,
    namespace: str,
    volcano_crds: None,
    kafka_io: tuple[Callable[..., Any], Callable[[str, str, list[bytes]], None]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    jobs_dir = tmp_path / "jobs"
    monkeypatch.setenv("TIDESCALE_JOBS_DIR", str(jobs_dir))
    bootstrap = stack.kafka_bootstrap
    flags = ["-n", namespace, "--kubeconfig", stack.kubeconfig]
    values, _ = llm_requests(40)  # none malformed
    once = local_pipeline(tmp_path / "once.yaml", "once", unique())
    kafka_io[1](bootstrap, once["source"], values)

    # 1. a bounded run, waited for: the command's exit status is the engine's, its records are out
    argv = ["submit", str(tmp_path / "once.yaml"), *flags, "--bootstrap", bootstrap, "--bounded"]
    assert main([*argv, "--wait", "--timeout", "120", "--json"]) == 0
    (done,) = json.loads(capsys.readouterr().out)["jobs"]
    assert (done["kind"], done["name"], done["phase"], done["exitCode"]) == (
        "Pipeline",
        "once",
        "Succeeded",
        0,
    )
    pid = done["launch"]["pid"]
    assert done["objects"] == ["ConfigMap/tidescale-job-once", f"Process/{pid}"]
    assert done["launch"]["directory"] == str(jobs_dir / namespace / "once")
    out = read_all(
        bootstrap,
        [f"{once['sink']}.{m}" for m in ("llama-3-8b", "llama-3-70b", "mistral-7b", "mixtral-8x22b")],
        40,
    )
    assert sorted(json.loads(v)["id"] for _, _, v in out) == sorted(f"r{i}" for i in range(40))

    # 2. in the cluster like any job, its phase from its process, its log the engine's
    assert main(["jobs", "list", *flags, "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)["jobs"]
    assert (listed["name"], listed["kind"], listed["phase"], listed["queue"]) == (
        "once",
        "Pipeline",
        "Succeeded",
        "",
    )
    assert main(["jobs", "get", "once", *flags, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["reason"] == f"process {pid} exited with status 0"
    assert got["local"]["exitCode"] == 0 and got["local"]["host"] == processes.this_host().name
    assert main(["jobs", "logs", "once", *flags]) == 0
    summary = json.loads(next(line for line in capsys.readouterr().out.splitlines() if line.startswith("{")))
    assert (summary["engine"], summary["records_in"], summary["records_out"]) == ("python", 40, 40)

    # 3. an unbounded run: Running while its process runs
    live = local_pipeline(tmp_path / "live.yaml", "live", unique())
    kafka_io[1](bootstrap, live["source"], values[:5])
    assert main(["submit", str(tmp_path / "live.yaml"), *flags, "--bootstrap", bootstrap]) == 0
    assert "Pipeline live created in namespace" in capsys.readouterr().out
    annotations = root_annotations(kube, namespace, "live")
    process = Process(int(annotations["tidescale.io/pid"]), annotations["tidescale.io/process"])
    assert processes.running(process)
    try:
        assert main(["jobs", "get", "live", *flags, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["phase"] == "Running"
        wait_for(
            lambda: len(read_all(bootstrap, [f"{live['sink']}.llama-3-8b"], 2, timeout=2)) >= 2,
            60,
            "live output",
        )
        assert main(["jobs", "logs", "live", *flags, "--tail", "50"]) == 0
        assert "pipeline run pipeline.yaml --engine python" in capsys.readouterr().out

        # 4. seen from another host (its record says so): Unknown, and neither its log nor a delete from here
        core = client.CoreV1Api(kube)
        host = {"metadata": {"annotations": {"tidescale.io/host": "elsewhere"}}}
        core.patch_namespaced_config_map("tidescale-job-live", namespace, host)
        assert main(["jobs", "list", *flags]) == 0
        row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("live "))
        assert row.split()[1:6] == ["Pipeline", "Unknown", "(on", "host", "elsewhere)"]
        assert main(["jobs", "logs", "live", *flags]) == 1
        assert "job live runs on host elsewhere" in capsys.readouterr().err
        assert main(["jobs", "delete", "live", *flags]) == 1
        assert "runs on host elsewhere (process" in capsys.readouterr().err
        assert processes.running(process)
        here = {"metadata": {"annotations": {"tidescale.io/host": processes.this_host().name}}}
        core.patch_namespaced_config_map("tidescale-job-live", namespace, here)

        # 5. deleted: the process stopped, the record and the directory gone
        assert main(["jobs", "delete", "live", *flags]) == 0
        assert not processes.running(process) and not processes.group_alive(process.pid)
        assert main(["jobs", "delete", "once", *flags]) == 0
        assert leftovers(kube, namespace) == []
        assert list(jobs_dir.iterdir()) == []
    finally:
        processes.stop(process)  # a failed assertion leaves no engine running
