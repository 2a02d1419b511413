"""The streaming `Pipeline` as a kind of the job launcher: `tidescale submit FILE` takes Pipeline documents
beside InferenceServices and TrainingJobs and submits them natively on Kubernetes with the engine's own
client (`streaming.launch.submit_pipeline`: Spark's spark-submit creates the driver pod, Flink's native
client the JobManager Deployment), every pod through the tidescale scheduler; or runs them on this
machine. Wired here because jobs may not import streaming (`jobs.launcher.external` is the extension
point); `kinds()` is what `tidescale.cli` passes to the launcher.

A Pipeline document is the streaming spec (`streaming.spec`) plus two launcher fields under `spec`,
taken out before the spec is validated (their lines blanked, so every line number stays the file's):

```yaml
spec:
  engine: spark          # flink, spark, or (local only) python; else `submit --engine`
  target: kubernetes     # the default (else `submit --target`); local: on this machine
```

On Kubernetes: namespace and queue are the document's (`metadata.namespace`, `spec.scheduling.queue`),
else `-n`/`--queue`, else `default`. The scheduler is `--scheduler` or `tidescale`: the spec's
`scheduling.schedulerName` names the scheduler of the operator manifests (`pipeline render`), not the
launcher's. The launcher creates the root ConfigMap `tidescale-job-<name>` first; `submit_pipeline` makes
it the owner of the driver pod or the JobManager Deployment, which own the rest (PodGroup, account, the
engine's Services and ConfigMaps, executors and TaskManagers): `jobs delete` removes it all.

`target: local` runs exactly what `tidescale pipeline run` runs, in the background on this machine: the
launcher starts `python -m tidescale pipeline run pipeline.yaml --engine E --bootstrap B [--max-records N]
[--bounded] [--checkpoint-dir checkpoints]` in the job's directory (`jobs.launcher.local`), where it
writes the pipeline (its tables inlined) first. Kafka is `submit --bootstrap`, else
$TIDESCALE_KAFKA_BOOTSTRAP, else the local environment's (`tidescale local up`), resolved at submit time.
The job has no queue or scheduler; it is recorded in the cluster by its root like any job, so `jobs
list/get` show it, `jobs logs` prints the engine's log and `jobs delete` stops it (on its host).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from jobs.launcher.external import ExternalJob, ExternalKind, ExternalSubmitted
from jobs.launcher.local import LocalRun
from jobs.launcher.render import Defaults
from kernel.errors import InvalidSpec
from streaming import launch, native, pipeline_file, spec
from streaming.cli import ENGINE_CHOICES, default_bootstrap
from streaming.plan import Plan, plan

KIND = "Pipeline"
KUBERNETES, LOCAL = "kubernetes", "local"
TARGETS = (KUBERNETES, LOCAL)
LAUNCH_FIELDS = ("engine", "target")
LOCAL_ENGINES = ENGINE_CHOICES  # what `pipeline run` runs: flink, spark, python
PIPELINE_FILE = "pipeline.yaml"


def _line(problem: str) -> int:
    head = problem.split(":", 1)[0].strip()
    return int(head) if head.isdigit() else 0


def _launch_fields(text: str) -> tuple[dict[str, tuple[int, str]], set[int], list[str], int]:
    """(spec.engine and spec.target with their lines, the lines to blank, problems, the line of `spec`)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}, set(), [], 1  # the spec's parser reports it
    if not isinstance(root, yaml.MappingNode):
        return {}, set(), [], 1
    spec_key, spec_node = next(((k, v) for k, v in root.value if k.value == "spec"), (None, None))
    if spec_key is None or not isinstance(spec_node, yaml.MappingNode):
        return {}, set(), [], 1
    fields: dict[str, tuple[int, str]] = {}
    blank: set[int] = set()
    problems: list[str] = []
    for key, value in spec_node.value:
        if key.value not in LAUNCH_FIELDS:
            continue
        line = key.start_mark.line + 1
        if not isinstance(value, yaml.ScalarNode):
            problems.append(f"{line}: spec.{key.value}: a word ({' or '.join(_choices(key.value))})")
        elif spec_node.flow_style or value.end_mark.line != key.start_mark.line:
            problems.append(f"{line}: spec.{key.value}: write it on a line of its own (a block mapping)")
        else:
            fields[key.value] = (line, str(value.value))
        blank.add(key.start_mark.line)
    return fields, blank, problems, spec_key.start_mark.line + 1


def _choices(field: str) -> tuple[str, ...]:
    return LOCAL_ENGINES if field == "engine" else TARGETS


def local_run(pipeline: spec.Pipeline, engine: str, options: Mapping[str, str], bootstrap: str) -> LocalRun:
    """What a local Pipeline runs: `tidescale pipeline run` on the pipeline written beside it (its tables
    already inlined, so it needs no other file)."""
    command = [sys.executable, "-m", "tidescale", "pipeline", "run", PIPELINE_FILE, "--engine", engine]
    command += ["--bootstrap", bootstrap]
    if options.get("maxRecords"):
        command += ["--max-records", options["maxRecords"]]
    if options.get("bounded") == "true":
        command.append("--bounded")
    if engine in native.ENGINES:
        command += ["--checkpoint-dir", "checkpoints"]  # the engine's state stays in the job's directory
    document = pipeline.model_dump(mode="json", by_alias=True, exclude_none=True)
    return LocalRun(tuple(command), {PIPELINE_FILE: yaml.safe_dump(document, sort_keys=False)})


def _name_line(text: str) -> int:
    for i, line in enumerate(text.splitlines()):
        if line.strip().startswith("name:"):
            return i + 1
    return 1


class PipelineKind:
    """`ExternalKind` for the streaming `Pipeline` (payload: its plan and engine)."""

    kind = KIND

    def parse(
        self, text: str, source: str, base_dir: Path, defaults: Defaults, options: Mapping[str, str]
    ) -> ExternalJob:
        # 1. the launcher's fields out, every line number kept
        fields, blank, problems, spec_line = _launch_fields(text)
        lines = text.split("\n")
        for i in blank:
            lines[i] = ""
        # 2. the streaming spec
        pipeline: spec.Pipeline | None = None
        try:
            pipeline = pipeline_file.parse("\n".join(lines), source, base_dir)
        except InvalidSpec as e:
            problems += e.problems
        # 3. target and engine (and a local pipeline's Kafka)
        target_line, target = fields.get("target", (spec_line, options.get("target", KUBERNETES)))
        if target not in TARGETS:
            problems.append(f"{target_line}: spec.target: no target {target!r} (known: {', '.join(TARGETS)})")
        engines = LOCAL_ENGINES if target == LOCAL else native.ENGINES
        line, engine = fields.get("engine", (spec_line, options.get("engine", "")))
        if not engine:
            problems.append(f"{line}: spec.engine: missing: set it ({' or '.join(engines)}) or pass --engine")
        elif engine not in engines:
            only = f"; {engine} runs only on this machine (target: local)" if engine in LOCAL_ENGINES else ""
            problems.append(f"{line}: spec.engine: no engine {engine!r} (known: {', '.join(engines)}){only}")
        bootstrap = (options.get("bootstrap") or default_bootstrap() or "") if target == LOCAL else ""
        if target == LOCAL and not bootstrap:
            problems.append(
                f"{target_line}: spec.target: local: no Kafka for the engine: pass --bootstrap, set "
                "TIDESCALE_KAFKA_BOOTSTRAP or run `tidescale local up`"
            )
        if problems or pipeline is None:
            raise InvalidSpec(source, sorted(problems, key=_line))
        name = pipeline.metadata.name
        namespace = pipeline.metadata.namespace or defaults.namespace
        if target == LOCAL:
            return self._local(pipeline, engine, namespace, options, bootstrap)
        # 4. what the flags fill in, and the object the engine's client will create
        p = plan(pipeline)
        queue = pipeline.spec.scheduling.queue or defaults.queue
        scheduler = defaults.scheduler_name
        target_of = native.Target(namespace=namespace, scheduler_name=scheduler, queue=queue, job_name=name)
        try:
            submission = native.submission(p, engine, target_of, native.ClusterAccess("", ""), Path(), engine)
        except native.InvalidSubmission as e:
            raise InvalidSpec(source, [f"{_name_line(text)}: metadata.name: {e}"]) from None
        document: dict[str, Any] = pipeline.model_dump(mode="json", by_alias=True, exclude_none=True)
        document["metadata"]["namespace"] = namespace
        document["spec"] |= {
            "engine": engine,
            "target": "kubernetes",
            "queue": queue,
            "schedulerName": scheduler,
        }
        return ExternalJob(KIND, name, namespace, queue, scheduler, submission.root, document, (p, engine))

    @staticmethod
    def _local(
        pipeline: spec.Pipeline, engine: str, namespace: str, options: Mapping[str, str], bootstrap: str
    ) -> ExternalJob:
        """A pipeline run on this machine: no queue, no scheduler; its workload is a process."""
        name = pipeline.metadata.name
        document: dict[str, Any] = pipeline.model_dump(mode="json", by_alias=True, exclude_none=True)
        document["metadata"]["namespace"] = namespace
        document["spec"] |= {"engine": engine, "target": LOCAL, "bootstrap": bootstrap}
        run = local_run(pipeline, engine, options, bootstrap)
        return ExternalJob(
            KIND, name, namespace, "", "", ("Process", name), document, (plan(pipeline), engine), run
        )

    def dry_run(self, job: ExternalJob, kubeconfig: str | None) -> Mapping[str, Any]:
        p, engine = self._payload(job)
        result = launch.render_only(
            p,
            engine,
            kubeconfig=kubeconfig,
            namespace=job.namespace,
            scheduler_name=job.scheduler_name,
            queue=job.queue,
            job_name=job.name,
        )
        return result.to_json()

    def submit(
        self,
        job: ExternalJob,
        *,
        kubeconfig: str,
        owner: Mapping[str, Any],
        replace: bool,
        timeout: float,
    ) -> ExternalSubmitted:
        p, engine = self._payload(job)
        result = launch.submit_pipeline(
            p,
            engine,
            kubeconfig=kubeconfig,
            namespace=job.namespace,
            scheduler_name=job.scheduler_name,
            queue=job.queue,
            job_name=job.name,
            replace=replace,
            timeout_s=timeout,
            owner=owner,
        )
        details = result.to_json()
        details.pop("templates", None)  # the pod templates are in the dry run; here, what was done
        return ExternalSubmitted(result.objects, details)

    @staticmethod
    def _payload(job: ExternalJob) -> tuple[Plan, str]:
        p, engine = job.payload
        return p, str(engine)


def kinds() -> dict[str, ExternalKind]:
    """The external kinds `tidescale submit FILE` takes, by kind name."""
    return {KIND: PipelineKind()}
