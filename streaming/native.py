"""A plan → what the engines' own Kubernetes clients need to submit it through the tidescale scheduler:
the pod templates, the Volcano PodGroup, the service account and its rights, and the `spark-submit` or
`flink run --target kubernetes-application` command line (../shared/reference/launcher.md §4).

Every pod template carries `schedulerName` (tidescale by default), the group annotation
`scheduling.k8s.io/group-name`, the queue annotation `scheduling.volcano.sh/queue-name` when there is a
queue, and the labels `tidescale.io/job`, `tidescale.io/kind: Pipeline`, `tidescale.io/engine`.

The PodGroup has `minMember: 1`: Spark's driver creates its executors and Flink's JobManager its
TaskManagers only once it runs, so a count-based gang could never be whole before the first pod is
bound. `minResources` is the whole job (driver + executors, JobManager + TaskManagers), so the first pod
is admitted only when the rest would fit too — what the Spark operator's Volcano and kube-scheduler
integrations do.

Pure: builds dicts and argument lists from values (paths are only named, never opened); no I/O, no
Kubernetes client, no process, no clock.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jobs.scheduler.objects import VOLCANO_GROUP, VOLCANO_QUEUE
from kernel.errors import PermanentError
from streaming import render
from streaming.plan import Plan

ENGINES = ("flink", "spark")
DEFAULT_SCHEDULER = "tidescale"
KIND = "Pipeline"
JOB_LABEL = "tidescale.io/job"
KIND_LABEL = "tidescale.io/kind"
ENGINE_LABEL = "tidescale.io/engine"
PODGROUP_API = "scheduling.volcano.sh/v1beta1"
SPARK_DRIVER_CONTAINER = "spark-kubernetes-driver"
SPARK_EXECUTOR_CONTAINER = "spark-kubernetes-executor"
FLINK_CONTAINER = "flink-main-container"  # the name Flink looks for in a pod template
FLINK_ENTRY = "local:///opt/tidescale/streaming/job.py"
# Sizes the engines would otherwise take from their defaults, set explicitly so that the PodGroup's
# minResources is what the pods will request.
SPARK_DRIVER_CORES = 1
SPARK_DRIVER_MEMORY_MIB = 1024
SPARK_OVERHEAD_FACTOR = 0.4  # PySpark's (reference streaming.md §3.1); render.spark_conf sets the same
SPARK_OVERHEAD_MIN_MIB = 384
FLINK_JOBMANAGER_CPU = 1
FLINK_JOBMANAGER_MEMORY_MIB = 1600
# Flink's cluster id names a Service, so it must be a DNS-1035 label; Flink caps it at 45 characters.
_FLINK_ID = re.compile(r"^[a-z]([-a-z0-9]{0,43}[a-z0-9])?$")
_SPARK_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$")  # + "-driver" stays a valid pod name
_ENGINE_RULES = {
    "spark": [
        {
            "apiGroups": [""],
            "resources": ["pods", "services", "configmaps", "persistentvolumeclaims"],
            "verbs": ["*"],
        }
    ],
    "flink": [
        {"apiGroups": [""], "resources": ["pods", "services", "configmaps"], "verbs": ["*"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
    ],
}


class InvalidSubmission(PermanentError):
    """The submission cannot be rendered (an unknown engine, a job name the engine refuses)."""


@dataclass(frozen=True)
class Target:
    """Where and how a pipeline is submitted. `queue` None: the spec's `scheduling.queue`, if any;
    `image` None: the spec's image, else the engine's default; `job_name` None: the pipeline's name;
    `service_account` None: one made for the job (named after it, with the rights its engine needs)."""

    namespace: str
    scheduler_name: str = DEFAULT_SCHEDULER
    queue: str | None = None
    image: str | None = None
    job_name: str | None = None
    service_account: str | None = None
    bootstrap: str = render.DEFAULT_BOOTSTRAP


@dataclass(frozen=True)
class ClusterAccess:
    """The API server and the client credentials, as the kubeconfig's current context names them.
    The files are passed to Spark's `submission` options when the kubeconfig names them by path;
    inline data is left to the client's own kubeconfig reading (`KUBECONFIG`)."""

    kubeconfig: str
    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token_file: str | None = None


@dataclass(frozen=True)
class Submission:
    """Everything a native submission creates or runs, before anything is created or run.

    `objects`: what the launcher creates first (ServiceAccount, Role, RoleBinding when it makes the
    account; always the PodGroup). `templates`: the pod templates by file name, written under
    `workdir`, which the command names. `root`: (kind, name) of the object the engine's client
    creates and that owns the rest — Spark's driver pod, Flink's JobManager Deployment."""

    engine: str
    job_name: str
    namespace: str
    objects: tuple[dict[str, Any], ...]
    templates: dict[str, dict[str, Any]]
    command: tuple[str, ...]
    env: dict[str, str]
    workdir: Path
    root: tuple[str, str]
    service_account: str
    notes: tuple[str, ...] = field(default=())

    @property
    def pod_group(self) -> dict[str, Any]:
        return next(o for o in self.objects if o["kind"] == "PodGroup")

    def files(self) -> dict[Path, str]:
        """The template files to write before running `command` (path → YAML)."""
        return {
            self.workdir / name: yaml.safe_dump(body, sort_keys=False)
            for name, body in self.templates.items()
        }


# -- sizes -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodSize:
    cpu_milli: int
    memory_mib: int
    gpus: int = 0

    def times(self, n: int) -> PodSize:
        return PodSize(self.cpu_milli * n, self.memory_mib * n, self.gpus * n)

    def plus(self, other: PodSize) -> PodSize:
        return PodSize(
            self.cpu_milli + other.cpu_milli, self.memory_mib + other.memory_mib, self.gpus + other.gpus
        )


def _milli(quantity: str) -> int:
    return math.ceil(render.cpu_cores(quantity) * 1000)


def spark_memory_mib(heap_mib: int) -> int:
    """The pod memory Spark asks for a JVM heap: heap + max(384 MiB, factor × heap)."""
    return heap_mib + max(SPARK_OVERHEAD_MIN_MIB, int(SPARK_OVERHEAD_FACTOR * heap_mib))


def spark_sizes(plan: Plan) -> tuple[PodSize, PodSize, int]:
    """(driver, one executor, executor count) as the pods will request them."""
    resources = plan.resources
    driver = PodSize(SPARK_DRIVER_CORES * 1000, spark_memory_mib(SPARK_DRIVER_MEMORY_MIB))
    executor = PodSize(
        _milli(resources.cpu), spark_memory_mib(render.memory_mib(resources.memory)), resources.gpus
    )
    return driver, executor, plan.parallelism


def whole_cores(plan: Plan) -> int:
    """The spec's CPU rounded up: Flink's slots per TaskManager, Spark's cores per executor."""
    return max(1, math.ceil(render.cpu_cores(plan.resources.cpu)))


def flink_sizes(plan: Plan) -> tuple[PodSize, PodSize, int]:
    """(JobManager, one TaskManager, TaskManager count): parallelism over the slots of each."""
    resources = plan.resources
    jobmanager = PodSize(FLINK_JOBMANAGER_CPU * 1000, FLINK_JOBMANAGER_MEMORY_MIB)
    taskmanager = PodSize(_milli(resources.cpu), render.memory_mib(resources.memory), resources.gpus)
    return jobmanager, taskmanager, math.ceil(plan.parallelism / whole_cores(plan))


def _cpu(milli: int) -> str:
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


# -- objects ---------------------------------------------------------------------------------------


def job_name_of(plan: Plan, engine: str, target: Target) -> str:
    name = target.job_name or plan.name
    if engine == "flink" and not _FLINK_ID.match(name):
        raise InvalidSubmission(
            f"job name {name!r}: Flink's cluster id must be a DNS-1035 label of at most 45 characters"
            " (lower-case letters, digits, '-', starting with a letter)"
        )
    if engine == "spark" and not _SPARK_NAME.match(name):
        raise InvalidSubmission(
            f"job name {name!r}: a DNS-1123 label of at most 53 characters (the driver pod is NAME-driver)"
        )
    return name


def job_labels(job: str, engine: str) -> dict[str, str]:
    return {JOB_LABEL: job, KIND_LABEL: KIND, ENGINE_LABEL: engine}


def queue_of(plan: Plan, target: Target) -> str | None:
    return target.queue or plan.scheduling.queue


def pod_template(job: str, engine: str, container: str, target: Target, queue: str | None) -> dict[str, Any]:
    """A pod template that puts the pod in the job's PodGroup and queue for `target.scheduler_name`."""
    annotations = {VOLCANO_GROUP: job}
    if queue:
        annotations[VOLCANO_QUEUE] = queue
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"labels": job_labels(job, engine), "annotations": annotations},
        "spec": {"schedulerName": target.scheduler_name, "containers": [{"name": container}]},
    }


def pod_group(
    job: str,
    engine: str,
    namespace: str,
    queue: str | None,
    sizes: tuple[PodSize, PodSize, int],
    gpu_resource: str,
) -> dict[str, Any]:
    """minMember 1 (the first pod creates the rest later); minResources the whole job: the first pod
    and `count` of the others (`sizes` = first, other, count)."""
    first, other, count = sizes
    total = first.plus(other.times(count))
    min_resources: dict[str, Any] = {"cpu": _cpu(total.cpu_milli), "memory": f"{total.memory_mib}Mi"}
    if total.gpus:
        min_resources[gpu_resource] = total.gpus
    spec: dict[str, Any] = {"minMember": 1, "minResources": min_resources}
    if queue:
        spec["queue"] = queue
    return {
        "apiVersion": PODGROUP_API,
        "kind": "PodGroup",
        "metadata": {"name": job, "namespace": namespace, "labels": job_labels(job, engine)},
        "spec": spec,
    }


def account_objects(job: str, engine: str, namespace: str) -> tuple[dict[str, Any], ...]:
    """A ServiceAccount for the job's first pod, with the rights its engine needs to create the rest."""
    metadata = {"name": job, "namespace": namespace, "labels": job_labels(job, engine)}
    return (
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(metadata)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": dict(metadata),
            "rules": _ENGINE_RULES[engine],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": dict(metadata),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": job},
            "subjects": [{"kind": "ServiceAccount", "name": job, "namespace": namespace}],
        },
    )


# -- engines ---------------------------------------------------------------------------------------


def spark(plan: Plan, target: Target, access: ClusterAccess, workdir: Path, client: str) -> Submission:
    """`spark-submit --master k8s://SERVER --deploy-mode cluster` with the driver and executor pod
    templates; Spark's client creates the driver pod `<job>-driver` and returns."""
    job = job_name_of(plan, "spark", target)
    queue = queue_of(plan, target)
    sizes = spark_sizes(plan)
    account = target.service_account or job
    templates = {
        "driver.yaml": pod_template(job, "spark", SPARK_DRIVER_CONTAINER, target, queue),
        "executor.yaml": pod_template(job, "spark", SPARK_EXECUTOR_CONTAINER, target, queue),
    }
    resources = plan.resources
    conf = {
        **render.spark_conf(plan),
        "spark.kubernetes.namespace": target.namespace,
        "spark.kubernetes.container.image": target.image or plan.image or render.SPARK_IMAGE,
        "spark.kubernetes.authenticate.driver.serviceAccountName": account,
        # The template carries it too, but Spark sets schedulerName from this option (a template cannot
        # override it: reference launcher.md §4).
        "spark.kubernetes.scheduler.name": target.scheduler_name,
        "spark.kubernetes.submission.waitAppCompletion": "false",
        "spark.kubernetes.driver.pod.name": f"{job}-driver",
        "spark.kubernetes.driver.podTemplateFile": str(workdir / "driver.yaml"),
        "spark.kubernetes.driver.podTemplateContainerName": SPARK_DRIVER_CONTAINER,
        "spark.kubernetes.executor.podTemplateFile": str(workdir / "executor.yaml"),
        "spark.kubernetes.executor.podTemplateContainerName": SPARK_EXECUTOR_CONTAINER,
        "spark.driver.cores": str(SPARK_DRIVER_CORES),
        "spark.driver.memory": f"{SPARK_DRIVER_MEMORY_MIB}m",
        "spark.executor.instances": str(sizes[2]),
        "spark.executor.cores": str(whole_cores(plan)),
        "spark.kubernetes.executor.request.cores": resources.cpu,
        "spark.executor.memory": f"{render.memory_mib(resources.memory)}m",
    }
    # render.spark_conf put the spec's own queue placement (for its scheduler) on the pods; here the
    # templates carry tidescale's, so drop any label or annotation option that would contradict them.
    conf = {
        k: v
        for k, v in conf.items()
        if not re.match(r"^spark\.kubernetes\.(driver|executor)\.(label|annotation)\.", k)
    }
    if resources.gpus:
        conf[f"spark.kubernetes.executor.limit.{resources.gpu_resource}"] = str(resources.gpus)
    for role in ("driver", "executor"):
        conf[f"spark.kubernetes.{role}.label.{JOB_LABEL}"] = job
    if access.ca_file:
        conf["spark.kubernetes.authenticate.submission.caCertFile"] = access.ca_file
    if access.cert_file and access.key_file:
        conf["spark.kubernetes.authenticate.submission.clientCertFile"] = access.cert_file
        conf["spark.kubernetes.authenticate.submission.clientKeyFile"] = access.key_file
    if access.token_file:
        conf["spark.kubernetes.authenticate.submission.oauthTokenFile"] = access.token_file
    command = [client, "--master", f"k8s://{access.server}", "--deploy-mode", "cluster", "--name", job]
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    command += [render.SPARK_ENTRY, *render.job_arguments(plan, "spark", target.bootstrap)]
    group = pod_group(job, "spark", target.namespace, queue, sizes, resources.gpu_resource)
    notes = []
    if plan.delivery.guarantee == "exactly-once":
        notes.append("Spark's Kafka sink is at-least-once: this job runs at-least-once.")
    return Submission(
        engine="spark",
        job_name=job,
        namespace=target.namespace,
        objects=(*(() if target.service_account else account_objects(job, "spark", target.namespace)), group),
        templates=templates,
        command=tuple(command),
        env={"KUBECONFIG": access.kubeconfig, "SPARK_LOCAL_IP": "127.0.0.1"},
        workdir=workdir,
        root=("Pod", f"{job}-driver"),
        service_account=account,
        notes=tuple(notes),
    )


def flink(plan: Plan, target: Target, access: ClusterAccess, workdir: Path, client: str) -> Submission:
    """`flink run --target kubernetes-application` with one pod template for the JobManager and the
    TaskManagers; Flink's client creates the JobManager Deployment `<job>` and returns."""
    job = job_name_of(plan, "flink", target)
    queue = queue_of(plan, target)
    sizes = flink_sizes(plan)
    account = target.service_account or job
    resources = plan.resources
    labels = ",".join(f"{k}:{v}" for k, v in job_labels(job, "flink").items())
    options: dict[str, str] = {
        "kubernetes.cluster-id": job,
        "kubernetes.namespace": target.namespace,
        "kubernetes.container.image.ref": target.image or plan.image or render.FLINK_IMAGE,
        "kubernetes.config.file": access.kubeconfig,
        "kubernetes.service-account": account,
        "kubernetes.pod-template-file.default": str(workdir / "pod.yaml"),
        # The Deployment (the job's root object) carries the job's labels as well as its pods.
        "kubernetes.jobmanager.labels": labels,
        "kubernetes.taskmanager.labels": labels,
        "kubernetes.jobmanager.cpu.amount": str(FLINK_JOBMANAGER_CPU),
        "jobmanager.memory.process.size": f"{FLINK_JOBMANAGER_MEMORY_MIB}m",
        "kubernetes.taskmanager.cpu.amount": f"{render.cpu_cores(resources.cpu):g}",
        "taskmanager.memory.process.size": f"{render.memory_mib(resources.memory)}m",
        "taskmanager.numberOfTaskSlots": str(whole_cores(plan)),
        "parallelism.default": str(plan.parallelism),
        "execution.checkpointing.interval": f"{plan.delivery.checkpoint_interval} ms",
        **render.flink_settings(),
        "table.local-time-zone": "UTC",
    }
    if plan.delivery.checkpoint_dir:
        options["execution.checkpointing.dir"] = plan.delivery.checkpoint_dir
    if resources.gpus:
        options |= {
            "external-resources": "gpu",
            "external-resource.gpu.amount": str(resources.gpus),
            "external-resource.gpu.driver-factory.class": render.GPU_DRIVER_FACTORY,
            "external-resource.gpu.kubernetes.config-key": resources.gpu_resource,
        }
    command = [client, "run", "--target", "kubernetes-application"]
    for key, value in options.items():
        command.append(f"-D{key}={value}")
    command += ["-pyclientexec", "python3", "-pyexec", "python3", "-py", FLINK_ENTRY]
    command += render.job_arguments(plan, "flink", target.bootstrap)
    group = pod_group(job, "flink", target.namespace, queue, sizes, resources.gpu_resource)
    return Submission(
        engine="flink",
        job_name=job,
        namespace=target.namespace,
        objects=(*(() if target.service_account else account_objects(job, "flink", target.namespace)), group),
        templates={"pod.yaml": pod_template(job, "flink", FLINK_CONTAINER, target, queue)},
        command=tuple(command),
        # The client's own log goes here rather than into the wheel's directory.
        env={"FLINK_LOG_DIR": str(workdir / "log")},
        workdir=workdir,
        root=("Deployment", job),
        service_account=account,
    )


def submission(
    plan: Plan, engine: str, target: Target, access: ClusterAccess, workdir: Path, client: str
) -> Submission:
    if engine == "spark":
        return spark(plan, target, access, workdir, client)
    if engine == "flink":
        return flink(plan, target, access, workdir, client)
    raise InvalidSubmission(f"no native submission for engine {engine!r} (known: {', '.join(ENGINES)})")


_EXCEPTION = re.compile(r"^(?:Exception in thread \"[^\"]*\" )?([\w.$]+(?:Exception|Error)\b.*)$")
_CAUSE = re.compile(r"^Caused by: (.*)$")


def failure_reason(output: str) -> str:
    """The reason a JVM client gave for failing: its top exception and the deepest cause, else the
    last non-blank line of its output."""
    lines = [line.strip() for line in output.splitlines()]
    top = next((m.group(1) for line in lines if (m := _EXCEPTION.match(line))), None)
    causes = [m.group(1) for line in lines if (m := _CAUSE.match(line))]
    if top and causes and causes[-1] not in top:
        return f"{top} (caused by {causes[-1]})"
    if top or causes:
        return str(top or causes[-1])
    return next((line for line in reversed(lines) if line), "no output")
