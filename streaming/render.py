"""A plan → what the operators expect: a `FlinkDeployment` (Flink Kubernetes Operator, application mode,
PythonDriver entry point), a `SparkApplication` (Spark operator v1beta2), or the equivalent
`spark-submit --master k8s://…` command line.

Resources, GPUs, the scheduler name and the queue come from the spec, in the places a released operator
honours them (reference §2.3, §3.1, §3.2): the TaskManager pod template for Flink, `sparkConf`
`spark.executor.resource.gpu.*` plus `executor.gpu` for Spark. The job inside the pod is
`python -m streaming.job`, given the whole pipeline as base64 JSON, so no file has to be baked in.

Pure: builds dicts and argument lists; no I/O, no Kubernetes client, no clock.
"""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any

from streaming.engine import Rendered
from streaming.plan import Plan

FLINK_VERSION = "v2_2"
FLINK_IMAGE = "tidescale/pipeline-flink:2.2.0"
FLINK_PYTHON_JAR = "local:///opt/flink/opt/flink-python-2.2.0.jar"
SPARK_VERSION = "4.1.1"
SPARK_IMAGE = "tidescale/pipeline-spark:4.1.1"
SPARK_KAFKA_JARS = "local:///opt/spark/extra/*"
SPARK_ENTRY = "local:///opt/tidescale/streaming/job.py"
GPU_DRIVER_FACTORY = "org.apache.flink.externalresource.gpu.GPUDriverFactory"
GPU_DISCOVERY = "/opt/spark/examples/src/main/scripts/getGpusResources.sh"
DEFAULT_BOOTSTRAP = "kafka.kafka.svc:9092"
DEFAULT_MASTER = "k8s://https://kubernetes.default.svc"
EXECUTION_MODE = "process"
# Python UDF settings the local run and the rendered FlinkDeployment share, measured side by side on the
# LLM preprocessor (docs/benchmarks.md, Streaming, stop 23). A bundle is what a subtask hands its Python
# worker before it waits for all of it to come back, and nothing of a bundle comes back before all of it
# is done: Beam's `ActiveBundle.close()` waits for the worker's ProcessBundleResponse and only then hands
# the results it already received to Flink. So a bundle's size is a pause: at 100,000 a subtask's whole
# input was one bundle and the output stopped for 5-10 s. At Flink's default of 1,000 the round trips
# dominated (≈ 6k records/s, measured earlier); 10,000 records (two Arrow batches) keep both workers
# busy and the output flowing in steps of under a second. `bundle.time` (1 s) only closes a bundle
# early; it cannot release part of one.
#
# Object reuse: with it off (Flink's default) every record is copied between the chained operators (the
# source, the Python UDF's operator, the projection, the sink). Flink's SQL operators copy what they keep
# themselves, the Python operator copies the fields it holds while its worker runs (`bufferInput`: a
# `BinaryRowData.copy()`), and no user code here sees a record. On the LLM preprocessor it saved ≈ 1 µs of
# the JVM's ≈ 9 µs a record (task thread 1.16 → 0.92 CPU-s per 200,000 records, medians of 4 alternating
# runs; docs/benchmarks.md, stop 27).
FLINK_SETTINGS = {
    "python.fn-execution.bundle.size": "10000",
    "python.fn-execution.arrow.batch.size": "5000",
    "pipeline.object-reuse": "true",
}


def flink_settings(execution_mode: str = EXECUTION_MODE) -> dict[str, str]:
    """The options a pipeline's Flink job runs with beyond Flink's defaults (locally and in a rendered
    FlinkDeployment): the Python UDF's and object reuse."""
    return {"python.execution-mode": execution_mode, **FLINK_SETTINGS}


_MEMORY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_MIB = {
    None: 1 / 2**20,
    "Ki": 1 / 1024,
    "k": 1000 / 2**20,
    "Mi": 1,
    "M": 10**6 / 2**20,
    "Gi": 1024,
    "G": 10**9 / 2**20,
    "Ti": 2**20,
    "T": 10**12 / 2**20,
}


def memory_mib(quantity: str) -> int:
    match = _MEMORY.match(quantity)
    if not match:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return max(1, math.ceil(int(match.group(1)) * _MIB[match.group(2)]))


def cpu_cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def pipeline_argument(plan: Plan) -> str:
    """The pipeline as the job in the pod reads it back (`streaming.job`)."""
    return base64.b64encode(json.dumps(plan_document(plan), separators=(",", ":")).encode()).decode()


def plan_document(plan: Plan) -> dict[str, Any]:
    """The Pipeline document a plan came from (lookup tables inlined)."""
    spec: dict[str, Any] = {
        "source": plan.source.model_dump(by_alias=True, exclude_none=True),
        "transforms": [
            s.model_dump(by_alias=True, exclude_none=True)
            for s in (
                *plan.stateless,
                *((plan.dedupe,) if plan.dedupe else ()),
                *((plan.window,) if plan.window else ()),
            )
        ],
        "sink": plan.sink.model_dump(by_alias=True, exclude_none=True),
        "deadLetter": plan.dead_letter.model_dump(by_alias=True),
        "delivery": plan.delivery.model_dump(by_alias=True, exclude_none=True),
        "parallelism": plan.parallelism,
        "resources": plan.resources.model_dump(by_alias=True),
        "scheduling": plan.scheduling.model_dump(by_alias=True, exclude_none=True),
    }
    if plan.image:
        spec["image"] = plan.image
    metadata: dict[str, Any] = {"name": plan.name}
    if plan.namespace:
        metadata["namespace"] = plan.namespace
    return {"apiVersion": "tidescale.io/v1alpha1", "kind": "Pipeline", "metadata": metadata, "spec": spec}


def _metadata(plan: Plan, engine: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": plan.name,
        "labels": {
            "app.kubernetes.io/name": plan.name,
            "app.kubernetes.io/managed-by": "tidescale",
            "tidescale.io/pipeline": plan.name,
            "tidescale.io/engine": engine,
        },
    }
    if plan.namespace:
        metadata["namespace"] = plan.namespace
    return metadata


def queue_placement(plan: Plan) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations) that put a pod in the spec's queue for its scheduler."""
    queue, scheduler = plan.scheduling.queue, plan.scheduling.scheduler_name
    if not queue:
        return {}, {}
    if scheduler == "volcano":
        return {}, {"scheduling.volcano.sh/queue-name": queue}
    if scheduler == "yunikorn":
        return {"queue": queue}, {"yunikorn.apache.org/queue": queue}
    return {"kueue.x-k8s.io/queue-name": queue}, {}  # the default scheduler: Kueue's plain-Pod integration


def job_arguments(plan: Plan, engine: str, bootstrap: str) -> list[str]:
    return ["--engine", engine, "--bootstrap", bootstrap, "--pipeline-b64", pipeline_argument(plan)]


def flink(plan: Plan, target: str = "kubernetes", *, bootstrap: str = DEFAULT_BOOTSTRAP) -> Rendered:
    """A FlinkDeployment in application mode whose job is `python -m streaming.job` via PythonDriver."""
    if target != "kubernetes":
        raise ValueError(f"no render target {target!r} (known: kubernetes)")
    resources = plan.resources
    slots = max(1, math.ceil(cpu_cores(resources.cpu)))
    configuration: dict[str, str] = {
        "taskmanager.numberOfTaskSlots": str(slots),
        "execution.checkpointing.interval": f"{plan.delivery.checkpoint_interval} ms",
        "state.backend.type": "hashmap",
        **flink_settings(),
        "table.local-time-zone": "UTC",
    }
    if plan.delivery.checkpoint_dir:
        configuration["execution.checkpointing.dir"] = plan.delivery.checkpoint_dir
        configuration["execution.checkpointing.externalized-checkpoint-retention"] = "RETAIN_ON_CANCELLATION"
    container: dict[str, Any] = {"name": "flink-main-container"}
    if resources.gpus:
        # Flink's external-resource framework (reference §2.4) plus the pod limit the scheduler sees.
        configuration |= {
            "external-resources": "gpu",
            "external-resource.gpu.amount": str(resources.gpus),
            "external-resource.gpu.driver-factory.class": GPU_DRIVER_FACTORY,
            "external-resource.gpu.kubernetes.config-key": resources.gpu_resource,
        }
        container["resources"] = {"limits": {resources.gpu_resource: resources.gpus}}
    labels, annotations = queue_placement(plan)
    pod_spec: dict[str, Any] = {"containers": [container]}
    if plan.scheduling.scheduler_name:
        pod_spec["schedulerName"] = plan.scheduling.scheduler_name
    pod_template: dict[str, Any] = {"spec": pod_spec}
    if labels or annotations:
        pod_template["metadata"] = {k: v for k, v in (("labels", labels), ("annotations", annotations)) if v}
    upgrade = "last-state" if plan.delivery.checkpoint_dir else "stateless"
    deployment = {
        "apiVersion": "flink.apache.org/v1beta1",
        "kind": "FlinkDeployment",
        "metadata": _metadata(plan, "flink"),
        "spec": {
            "flinkVersion": FLINK_VERSION,
            "image": plan.image or FLINK_IMAGE,
            "serviceAccount": "flink",
            "flinkConfiguration": configuration,
            "jobManager": {"replicas": 1, "resource": {"cpu": 1, "memory": "2048m"}},
            "taskManager": {
                "resource": {"cpu": cpu_cores(resources.cpu), "memory": f"{memory_mib(resources.memory)}m"},
                "podTemplate": pod_template,
            },
            "job": {
                "jarURI": FLINK_PYTHON_JAR,
                "entryClass": "org.apache.flink.client.python.PythonDriver",
                # Flink's Python options first, the job's own arguments last (reference §2.3).
                "args": [
                    "-pyclientexec",
                    "python3",
                    "-pyexec",
                    "python3",
                    "-pym",
                    "streaming.job",
                    *job_arguments(plan, "flink", bootstrap),
                ],
                "parallelism": plan.parallelism,
                "upgradeMode": upgrade,
                "state": "running",
            },
        },
    }
    return Rendered(objects=(deployment,))


def spark_conf(plan: Plan) -> dict[str, str]:
    resources = plan.resources
    cores = max(1, math.ceil(cpu_cores(resources.cpu)))
    conf = {
        "spark.jars": SPARK_KAFKA_JARS,
        "spark.sql.shuffle.partitions": str(plan.parallelism),
        "spark.sql.session.timeZone": "UTC",
        "spark.kubernetes.memoryOverheadFactor": "0.4",
    }
    if resources.gpus:
        # Set explicitly: the operator's `gpu` field alone needs its webhook and sets no Spark resource
        # (reference §6 row 1).
        conf |= {
            "spark.executor.resource.gpu.amount": str(resources.gpus),
            "spark.executor.resource.gpu.vendor": resources.gpu_resource.rsplit("/", 1)[0],
            "spark.executor.resource.gpu.discoveryScript": GPU_DISCOVERY,
            # The executor's cores share its GPUs.
            "spark.task.resource.gpu.amount": f"{resources.gpus / cores:g}",
        }
    scheduler = plan.scheduling.scheduler_name
    if scheduler:
        conf["spark.kubernetes.scheduler.name"] = scheduler
    labels, annotations = queue_placement(plan)
    for role in ("driver", "executor"):
        for key, value in labels.items():
            conf[f"spark.kubernetes.{role}.label.{key}"] = value
        for key, value in annotations.items():
            conf[f"spark.kubernetes.{role}.annotation.{key}"] = value
    return conf


def spark(
    plan: Plan,
    target: str = "kubernetes",
    *,
    spark_submit: bool = False,
    bootstrap: str = DEFAULT_BOOTSTRAP,
    master: str = DEFAULT_MASTER,
) -> Rendered:
    """A SparkApplication, or with `spark_submit` the `spark-submit --master k8s://…` line."""
    if target != "kubernetes":
        raise ValueError(f"no render target {target!r} (known: kubernetes)")
    resources = plan.resources
    notes = []
    if plan.delivery.guarantee == "exactly-once":
        notes.append(
            "Spark's Kafka sink is at-least-once: this job runs at-least-once; deduplicate downstream by key."
        )
    cores = max(1, math.ceil(cpu_cores(resources.cpu)))
    memory = f"{memory_mib(resources.memory)}m"
    arguments = job_arguments(plan, "spark", bootstrap)
    conf = spark_conf(plan)
    if spark_submit:
        namespace = plan.namespace or "default"
        submit_conf = {
            "spark.kubernetes.namespace": namespace,
            "spark.kubernetes.container.image": plan.image or SPARK_IMAGE,
            "spark.kubernetes.authenticate.driver.serviceAccountName": "spark",
            "spark.executor.instances": str(plan.parallelism),
            "spark.executor.cores": str(cores),
            "spark.kubernetes.executor.request.cores": resources.cpu,
            "spark.executor.memory": memory,
            **conf,
        }
        if resources.gpus:
            submit_conf[f"spark.kubernetes.executor.limit.{resources.gpu_resource}"] = str(resources.gpus)
        command = ["spark-submit", "--master", master, "--deploy-mode", "cluster", "--name", plan.name]
        for key, value in submit_conf.items():
            command += ["--conf", f"{key}={value}"]
        return Rendered(command=(*command, SPARK_ENTRY, *arguments), notes=tuple(notes))
    labels, annotations = queue_placement(plan)
    executor: dict[str, Any] = {
        "instances": plan.parallelism,
        "cores": cores,
        "coreRequest": resources.cpu,
        "memory": memory,
        "serviceAccount": "spark",
    }
    if resources.gpus:
        executor["gpu"] = {"name": resources.gpu_resource, "quantity": resources.gpus}
    driver: dict[str, Any] = {"cores": 1, "memory": "1024m", "serviceAccount": "spark"}
    for role in (driver, executor):
        if labels:
            role["labels"] = dict(labels)
        if annotations:
            role["annotations"] = dict(annotations)
        if plan.scheduling.scheduler_name:
            role["schedulerName"] = plan.scheduling.scheduler_name
    spec: dict[str, Any] = {
        "type": "Python",
        "pythonVersion": "3",
        "mode": "cluster",
        "sparkVersion": SPARK_VERSION,
        "image": plan.image or SPARK_IMAGE,
        "mainApplicationFile": SPARK_ENTRY,
        "arguments": arguments,
        "sparkConf": conf,
        "driver": driver,
        "executor": executor,
        "restartPolicy": {"type": "Always"},
    }
    if plan.scheduling.scheduler_name in ("volcano", "yunikorn"):
        spec["batchScheduler"] = plan.scheduling.scheduler_name
        if plan.scheduling.queue:
            spec["batchSchedulerOptions"] = {"queue": plan.scheduling.queue}
    application = {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": _metadata(plan, "spark"),
        "spec": spec,
    }
    return Rendered(objects=(application,), notes=tuple(notes))
