"""`tidescale top node` and `top job` on the real local control plane: KWOK GPU nodes, the tidescale
scheduler in-process binding whole, shared and sliced GPU pods (writing their device annotations), and,
in one test, the simulated DCGM exporter following the cluster with a real Prometheus scraping it.

Each test has its own namespace, nodes (selected with `-l`, the cluster is shared) and scheduler, as in
tests/jobs/scheduler/test_scheduler_on_cluster.py whose harness it reuses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoscaler.controller.pools.node_manifest import kwok_node
from tests.cluster_harness import PARTITION, Harness
from tests.waiting import wait_for
from tidescale.cli import main
from tidescale.local import exporter, prometheus
from tidescale.local import nodes as local_nodes
from tidescale.local.process import stop

pytestmark = pytest.mark.integration

L40S = {"nvidia.com/gpu.product": "NVIDIA-L40S", "nvidia.com/gpu.memory": "46068"}
SERVICE = """apiVersion: tidescale.io/v1alpha1
kind: InferenceService
metadata: {name: llm}
spec:
  image: vllm:1
  replicas: 2
  resources: {cpu: "2", memory: 8Gi, gpus: 1}
"""


def gpu_node(h: Harness, gpus: int = 4) -> str:
    """A KWOK node with `gpus` L40S (GPU feature discovery's labels) only this test's scheduler selects."""
    name = f"{h.ns}-g{len(h.nodes)}"
    labels = {PARTITION: h.ns, "tidescale.io/test-node": name, **L40S}
    capacity = {"cpu": "32", "memory": "128Gi", "pods": "110", "nvidia.com/gpu": str(gpus)}
    h.core.create_node(kwok_node(name, labels, capacity))
    h.nodes.append(name)
    local_nodes.wait_ready(h.kubeconfig, [name], 60)
    return name


def top(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["top", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_top_node_shows_whole_shared_and_sliced_gpus_and_a_pod_bound_without_annotations(
    h: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    node = gpu_node(h, gpus=8)
    # bound by somebody else (no scheduler, no device annotations): counted at node level
    h.core.create_namespaced_pod(
        h.ns,
        {
            "metadata": {"name": "other"},
            "spec": {
                "nodeName": node,
                "tolerations": [{"operator": "Exists"}],
                "containers": [{"name": "m", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
            },
        },
    )
    h.start()
    h.pod("train", gpus=2)
    h.pod(
        "embed", resources={"nvidia.com/gpu": "1", "nvidia.com/gpumem": "12000", "nvidia.com/gpucores": "30"}
    )
    h.pod("slice", gpus=1, annotations={"tidescale.io/vgpu-ratio": "4"})
    wait_for(lambda: {"train", "embed", "slice"} <= set(h.bound()), 30, "the three GPU pods bound")
    pods = h.pods()
    gpus_of = {n: pods[n].metadata.annotations["tidescale.io/gpus"] for n in ("train", "embed", "slice")}

    flags = ["--kubeconfig", h.kubeconfig, "-l", f"{PARTITION}={h.ns}", "--prometheus-url", ""]
    code, out, err = top(capsys, "node", *flags, "-d", "--json")
    assert code == 0 and err == ""
    view = json.loads(out)
    (n,) = view["nodes"]
    assert (n["name"], n["model"], n["gpuTotal"], n["pods"]) == (node, "NVIDIA-L40S", 8, 4)
    assert n["gpuAllocated"] == pytest.approx(2 + 0.3 + 0.25 + 1)
    assert n["mode"] == "exclusive+shared+sliced"
    assert n["unassigned"] == [{"namespace": h.ns, "pod": "other", "gpus": 1.0}]
    held = {(g["index"], hd["pod"]): hd for g in n["gpus"] for hd in g["holders"]}
    for index in gpus_of["train"].split(","):
        assert held[(int(index), "train")]["mode"] == "exclusive"
    embed = held[(int(gpus_of["embed"]), "embed")]
    assert (embed["mode"], embed["fraction"], embed["milli"], embed["memoryMiB"]) == (
        "shared",
        0.3,
        300,
        12000,
    )
    sliced = held[(int(gpus_of["slice"]), "slice")]
    assert (sliced["mode"], sliced["fraction"], sliced["ratio"]) == ("sliced", 0.25, 4)
    assert sliced["slot"] == int(pods["slice"].metadata.annotations["tidescale.io/gpu-slices"].split(":")[1])
    assert len(held) == 4  # nothing else on the node's GPUs
    assert view["gpuTotal"] == 8 and view["metrics"] is False

    code, out, err = top(capsys, "node", *flags, "-d")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:7] == ["NAME", "STATUS", "MODEL", "GPU(Total)", "GPU(Allocated)", "MODE", "PODS"]
    assert lines[1].split() == [node, "Ready", "NVIDIA-L40S", "8", "3.55", "exclusive+shared+sliced", "4"]
    assert f"0.3 (1 share 300m 12000MiB)   {h.ns}/embed" in out
    assert lines[-1] == "Allocated/Total GPUs In Cluster: 3.55/8 (44%)"
    assert f"Unassigned: 1 GPU of {h.ns}/other" in out

    # a Prometheus that does not answer costs its columns, with one line on stderr
    flags[-1] = "http://127.0.0.1:9"
    code, out, err = top(capsys, "node", *flags)
    assert code == 0 and "UTIL" not in out and "Traceback" not in err
    assert err.startswith("note: no GPU metrics (Prometheus at http://127.0.0.1:9: ConnectError")
    assert len(err.strip().splitlines()) == 1


@pytest.fixture
def monitoring(cluster: Any, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The exporter following the cluster, and Prometheus scraping it every second: (exporter, Prometheus)."""
    process, exporter_url = exporter.start(tmp_path, kubeconfig=cluster.kubeconfig)
    try:
        target = prometheus.ScrapeTarget("exporter", exporter_url.removeprefix("http://"))
        server, prometheus_url = prometheus.start(tmp_path, [target], interval_s=1.0)
        try:
            yield exporter_url, prometheus_url
        finally:
            stop(server.pid, server.component)
    finally:
        stop(process.pid, process.component)


def test_top_node_and_top_job_show_the_exporters_utilization_through_prometheus(
    h: Harness, tmp_path: Path, monitoring: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    exporter_url, prometheus_url = monitoring
    node = gpu_node(h, gpus=4)
    h.start()
    path = tmp_path / "llm.yaml"
    path.write_text(SERVICE)
    submit = ["submit", str(path), "-n", h.ns, "--kubeconfig", h.kubeconfig, "--scheduler", h.name]
    assert main([*submit, "--wait", "--timeout", "60"]) == 0
    capsys.readouterr()

    # half load on the node's GPUs, until Prometheus has scraped it for all four
    def scraped() -> bool:
        exporter.set_load(exporter_url, 0.5, node=node)
        found = prometheus.query(prometheus_url, f'DCGM_FI_DEV_GPU_UTIL{{hostname="{node}"}}')
        return len(found) == 4 and all(float(r["value"][1]) == 50 for r in found)  # type: ignore[index]

    wait_for(scraped, 60, f"Prometheus to scrape 50% on the 4 GPUs of {node}", interval=1.0)

    flags = ["--kubeconfig", h.kubeconfig, "--prometheus-url", prometheus_url]
    code, out, err = top(capsys, "node", *flags, "-l", f"{PARTITION}={h.ns}", "-d", "--json")
    assert code == 0 and err == ""
    (n,) = json.loads(out)["nodes"]
    assert [g["metrics"]["util"] for g in n["gpus"]] == [50, 50, 50, 50]
    # DCGM's total is used + free (the driver's reserve apart): a little under the card's 46068 MiB
    assert all(40000 < g["metrics"]["memoryTotalMiB"] <= 46068 for g in n["gpus"])
    assert all(g["memoryMiB"] == 46068 for g in n["gpus"])  # the card's, from its label
    assert n["metrics"]["util"] == 50 and n["gpuAllocated"] == 2
    code, out, err = top(capsys, "node", *flags, "-l", f"{PARTITION}={h.ns}")
    header, row = out.splitlines()[:2]
    assert header.split()[-2:] == ["UTIL", "MEMORY(Used/Total)"] and row.split()[-2] == "50%"

    code, out, err = top(capsys, "job", *flags, "-n", h.ns, "--json")
    assert code == 0 and err == ""
    (job,) = json.loads(out)["jobs"]
    assert (job["name"], job["kind"], job["phase"], job["gpuAllocated"]) == (
        "llm",
        "InferenceService",
        "Running",
        2,
    )
    assert job["metrics"]["util"] == 50 and job["nodes"] == [node]
    code, out, err = top(capsys, "job", "llm", *flags, "-n", h.ns)
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line.startswith("llm-")]
    assert len(rows) == 2
    assert all(r[2] == node and r[5] == "50%" for r in rows), rows
    assert {r[4] for r in rows} <= {"0", "1", "2", "3"} and len({r[4] for r in rows}) == 2  # one GPU each
