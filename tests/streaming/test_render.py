"""Rendering: resources, GPUs, scheduler and queue land where the released operators honour them; the
job in the pod gets the whole pipeline back; Spark says it is at-least-once."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from streaming import pipeline_file, render
from streaming.plan import Plan, plan

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"


def example(name: str) -> Plan:
    return plan(pipeline_file.load(EXAMPLES / f"{name}.yaml"))


def test_a_flink_deployment_puts_gpus_scheduler_and_queue_on_the_taskmanager_pod_template() -> None:
    deployment = render.flink(example("feature-aggregator")).objects[0]
    body: dict[str, Any] = deployment["spec"]
    template = body["taskManager"]["podTemplate"]
    assert deployment["apiVersion"] == "flink.apache.org/v1beta1" and body["flinkVersion"] == "v2_2"
    assert template["spec"]["schedulerName"] == "yunikorn"
    assert template["spec"]["containers"][0] == {
        "name": "flink-main-container",
        "resources": {"limits": {"nvidia.com/gpu": 1}},
    }
    assert template["metadata"]["labels"]["queue"] == "root.features"
    assert body["flinkConfiguration"]["external-resource.gpu.amount"] == "1"
    assert body["taskManager"]["resource"] == {"cpu": 1.0, "memory": "2048m"}
    assert body["job"]["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    assert body["job"]["parallelism"] == 2


def test_python_options_come_before_the_jobs_own_arguments() -> None:
    args = render.flink(example("llm-preprocessor")).objects[0]["spec"]["job"]["args"]
    assert args.index("-pym") < args.index("--engine")
    assert args[args.index("-pym") + 1] == "streaming.job"


@pytest.mark.parametrize("engine", ["flink", "spark"])
def test_the_job_in_the_pod_gets_the_pipeline_back_with_its_lookup_table_inlined(engine: str) -> None:
    p = example("llm-preprocessor")
    rendered = render.flink(p) if engine == "flink" else render.spark(p)
    body = rendered.objects[0]["spec"]
    args = body["job"]["args"] if engine == "flink" else body["arguments"]
    document = json.loads(base64.b64decode(args[args.index("--pipeline-b64") + 1]))
    assert plan(pipeline_file.parse(json.dumps(document))) == p


def test_a_spark_application_sets_the_gpu_confs_itself_and_the_batch_scheduler_queue() -> None:
    rendered = render.spark(example("feature-aggregator"))
    body = rendered.objects[0]["spec"]
    assert body["sparkConf"]["spark.executor.resource.gpu.amount"] == "1"
    assert body["sparkConf"]["spark.executor.resource.gpu.vendor"] == "nvidia.com"
    assert body["executor"]["gpu"] == {"name": "nvidia.com/gpu", "quantity": 1}
    assert (body["batchScheduler"], body["batchSchedulerOptions"]) == ("yunikorn", {"queue": "root.features"})
    assert any("at-least-once" in note for note in rendered.notes)


def test_spark_submit_is_the_same_job_as_a_command_line() -> None:
    command = render.spark(
        example("llm-preprocessor"), spark_submit=True, master="k8s://https://10.0.0.1:6443"
    ).command
    assert command[:3] == ("spark-submit", "--master", "k8s://https://10.0.0.1:6443")
    confs = dict(command[i + 1].split("=", 1) for i, part in enumerate(command) if part == "--conf")
    assert confs["spark.executor.instances"] == "2"
    assert confs["spark.kubernetes.scheduler.name"] == "volcano"
    assert confs["spark.kubernetes.executor.annotation.scheduling.volcano.sh/queue-name"] == "preprocessing"
    assert render.SPARK_ENTRY in command


@pytest.mark.parametrize(
    ("quantity", "mib"),
    [("4Gi", 4096), ("512Mi", 512), ("1G", 954), ("2048", 1)],
    ids=["Gi", "Mi", "G", "bytes"],
)
def test_memory_quantities_become_mebibytes(quantity: str, mib: int) -> None:
    assert render.memory_mib(quantity) == mib
