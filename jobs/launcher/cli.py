"""The launcher's commands: `tidescale submit` and `tidescale jobs list|get|logs|delete`, Arena-style.

```
tidescale submit FILE [--queue Q] [-n N] [--dry-run] [--wait] [--replace] [--kubeconfig K] [--json]
                      [--engine flink|spark|python] [--target kubernetes|local]   # a Pipeline's, when its
                      [--bootstrap B] [--max-records N] [--bounded]               # document names none
tidescale submit training --name N --workers 4 --gpus 1 --image I [--queue Q] -- CMD…
tidescale submit inference --name N --image I --replicas 2 [--gpus 1 | --gpu-memory MiB --gpu-cores PCT
                           | --vgpu-ratio 4] [--port P] [-- CMD…]
tidescale submit batch --name N --image I [--completions C --parallelism P] -- CMD…
tidescale jobs list [--queue Q] [-A] [--json] · jobs get NAME [--json] · jobs logs NAME [-f] [-i I] [-t N]
tidescale jobs delete NAME [--force] [--grace S]
```

A quick form stands for the document it builds (`quick_document`), so the flags and the YAML render the
same objects; the flag names are Arena's where Arena has one (`--gpus`, `--gpumemory`, `--gpucore`,
`--workers`, `--replicas`, `-e/--env`, `--selector`, `--toleration`, `--priority`, `--queue`,
`--device`, `--annotation`, `--label`, `--retry`, `--scheduler`). Tables by default, `--json` one JSON
document. Exit codes: 0 done, 1 the job failed, is not found or could not be created, 2 invalid input.

`add_commands` registers `submit`; `add_job_commands` adds the `jobs` subcommands to the existing
`jobs` parser (jobs.cli calls it). A FILE may also hold documents of external kinds (the streaming
`Pipeline`), which the composition root passes in (`jobs.launcher.external`): they are parsed by their
kind with the file's line numbers and submitted after the others, each under its root ConfigMap.

A local job (a Pipeline with `target: local`) runs on this machine in the background
(`jobs.launcher.local`): `submit --wait` waits for its process to end and exits with its status; `jobs
logs` prints its log (`-f`: until it ends) and `jobs delete` stops it, both on its host only (`delete
--force` elsewhere deletes its record alone).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from jobs.launcher.external import ExternalJob, ExternalKind, ExternalKinds, split_documents
from jobs.launcher.kinds import API_VERSION, MODELS, Job, parse_jobs, read_jobs
from jobs.launcher.render import Defaults
from jobs.launcher.status import FAILED, UNKNOWN, JobView, age
from kernel.clock import SYSTEM_CLOCK
from kernel.documents import read_text
from kernel.errors import InvalidSpec, PermanentError, TidescaleError

FILE_FORM = "FILE"
FORMS = {"training": "TrainingJob", "inference": "InferenceService", "batch": "BatchJob"}


class _Forms(dict[str, argparse.ArgumentParser]):
    """The forms' parsers by name; once sealed, every word passes argparse's choice check (a word that
    names no quick form is a FILE)."""

    sealed = False

    def __contains__(self, key: object) -> bool:
        return self.sealed or dict.__contains__(self, key)


class _FileOrForm(argparse._SubParsersAction):  # type: ignore[type-arg]
    """`submit training|inference|batch …` are quick forms; any other first word is a FILE."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._name_parser_map = _Forms()
        self.choices = self._name_parser_map

    def seal(self) -> None:
        """After the last form: from now on any other word is a FILE."""
        assert isinstance(self._name_parser_map, _Forms)
        self._name_parser_map.sealed = True

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if values and not dict.__contains__(self._name_parser_map, values[0]):
            values = [FILE_FORM, *values]
        super().__call__(parser, namespace, values, option_string)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--namespace", help="namespace of jobs whose document names none (default: default)")
    p.add_argument("--queue", help="queue of jobs whose document names none (default: default)")
    p.add_argument("--scheduler", help="schedulerName of pods whose document names none (default: tidescale)")
    p.add_argument("--kubeconfig", help="kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    p.add_argument(
        "--dry-run", action="store_true", help="print the objects that would be created; create none"
    )
    p.add_argument("--wait", action="store_true", help="wait until every pod is bound (or the job ended)")
    p.add_argument(
        "--timeout", type=float, default=300.0, help="seconds --wait and --replace wait (default 300)"
    )
    p.add_argument("--replace", action="store_true", help="delete a job of the same name first")
    p.add_argument("--json", action="store_true", help="print one JSON document")


def _pod_flags(p: argparse.ArgumentParser, gpu_share: bool) -> None:
    p.add_argument("--name", required=True, help="the job's name")
    p.add_argument("--image", required=True, help="container image")
    p.add_argument("--cpu", help="CPU per pod (a Kubernetes quantity)")
    p.add_argument("--memory", help="memory per pod (a Kubernetes quantity)")
    p.add_argument("--gpus", type=int, help="whole GPUs per pod (nvidia.com/gpu)")
    if gpu_share:
        p.add_argument(
            "--gpu-memory", "--gpumemory", dest="gpu_memory", type=int, help="a shared GPU: MiB of its memory"
        )
        p.add_argument(
            "--gpu-cores", "--gpucore", dest="gpu_cores", type=int, help="a shared GPU: percent of its cores"
        )
        p.add_argument("--vgpu-ratio", type=int, choices=(2, 4, 8), help="one 1/N vGPU slice")
    p.add_argument(
        "--device", action="append", default=[], metavar="NAME=N", help="another resource, e.g. rdma/hca=1"
    )
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="environment variable")
    p.add_argument("--selector", action="append", default=[], metavar="K=V", help="node selector label")
    p.add_argument(
        "--toleration",
        action="append",
        default=[],
        metavar="KEY",
        help="tolerate a taint key (`all`: every taint)",
    )
    p.add_argument("--priority", help="PriorityClass name")
    p.add_argument("--annotation", action="append", default=[], metavar="K=V", help="pod annotation")
    p.add_argument("--label", action="append", default=[], metavar="K=V", help="label of every object")
    p.add_argument("command", nargs="*", help="after `--`: the container's command and arguments")


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    scaling_policy: type[BaseModel] | None = None,
    external_kinds: ExternalKinds | None = None,
) -> None:
    """`tidescale submit`. `scaling_policy`: the model an InferenceService's inline policy is validated
    with (the autoscaler's ScalingPolicy; the composition root passes it in). `external_kinds`: kinds a
    FILE may hold besides the launcher's own (`Pipeline`), by kind name."""
    s = sub.add_parser(
        "submit",
        help="submit jobs (InferenceService, TrainingJob, BatchJob, Pipeline) from a file or a quick form",
        description="Submit the jobs of FILE, or one job from flags: `submit training|inference|batch …`.",
    )
    forms = s.add_subparsers(
        dest="form",
        required=True,
        metavar="FILE | training | inference | batch",
        action=_FileOrForm,
    )
    f = forms.add_parser(FILE_FORM, help="a YAML file of jobs (several documents: several jobs)")
    f.add_argument("file", type=Path, help="YAML file of jobs")
    f.add_argument(
        "--engine",
        choices=("flink", "spark", "python"),
        help="the engine of a Pipeline whose document names none (spec.engine; python: local only)",
    )
    f.add_argument(
        "--target",
        choices=("kubernetes", "local"),
        help="where a Pipeline whose document names none runs (spec.target; default kubernetes): local "
        "runs its engine on this machine in the background",
    )
    f.add_argument(
        "--bootstrap",
        help="a local Pipeline's Kafka (default: $TIDESCALE_KAFKA_BOOTSTRAP or `tidescale local up`'s)",
    )
    f.add_argument("--max-records", type=int, help="a local Pipeline stops after N records")
    f.add_argument(
        "--bounded", action="store_true", help="a local Pipeline stops at the end offsets seen at start"
    )
    _common(f)
    t = forms.add_parser("training", help="a TrainingJob: N workers, gang-scheduled (-- CMD…)")
    _pod_flags(t, gpu_share=False)
    t.add_argument("--workers", type=int, default=1, help="number of workers (default 1)")
    t.add_argument(
        "--gang",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="all workers or none (default: on)",
    )
    t.add_argument("--min-available", type=int, help="pods the gang needs together (default: all)")
    t.add_argument("--port", type=int, help="MASTER_PORT (default 29500)")
    t.add_argument("--retry", type=int, help="the Job's backoffLimit (default 0)")
    _common(t)
    i = forms.add_parser("inference", help="an InferenceService: a Deployment and a Service")
    _pod_flags(i, gpu_share=True)
    i.add_argument("--replicas", type=int, default=1, help="replicas (default 1)")
    i.add_argument("--port", type=int, help="the server's port (default 8000)")
    _common(i)
    b = forms.add_parser("batch", help="a BatchJob: a plain Job (-- CMD…)")
    _pod_flags(b, gpu_share=False)
    b.add_argument("--completions", type=int, help="completions (default 1)")
    b.add_argument("--parallelism", type=int, help="parallelism (default 1)")
    b.add_argument("--retry", type=int, help="the Job's backoffLimit (default 6)")
    _common(b)
    if isinstance(forms, _FileOrForm):
        forms.seal()
    s.set_defaults(func=submit_command, scaling_policy=scaling_policy, external_kinds=external_kinds or {})


def add_job_commands(jobs_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`jobs list|get|logs|delete`, beside `jobs explain` in the same `jobs` parser."""

    def common(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
        p.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")
        p.add_argument("--kubeconfig", help="kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
        if json_flag:
            p.add_argument("--json", action="store_true", help="print one JSON document")

    ls = jobs_sub.add_parser("list", help="submitted jobs with their phase, queue, pods, GPUs and nodes")
    common(ls)
    ls.add_argument("--queue", help="only the jobs of this queue")
    ls.add_argument("-A", "--all-namespaces", action="store_true", help="jobs of every namespace")
    ls.set_defaults(func=list_command)
    get = jobs_sub.add_parser(
        "get", help="one job: phase, pods, nodes, devices, the scheduler's reason, events"
    )
    get.add_argument("name")
    common(get)
    get.set_defaults(func=get_command)
    lg = jobs_sub.add_parser("logs", help="the log of one of the job's pods, through the API server")
    lg.add_argument("name")
    common(lg, json_flag=False)
    lg.add_argument("-f", "--follow", action="store_true", help="stream the log until the pod ends")
    lg.add_argument("-i", "--instance", help="the pod: its name, index or a unique part of its name")
    lg.add_argument("-t", "--tail", type=int, help="only the last N lines")
    lg.set_defaults(func=logs_command)
    rm = jobs_sub.add_parser("delete", help="delete a job and everything it created")
    rm.add_argument("name")
    common(rm)
    rm.add_argument(
        "--propagation", choices=("Foreground", "Background"), default="Foreground", help="default Foreground"
    )
    rm.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="until nothing is left (default: on)",
    )
    rm.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    rm.add_argument(
        "--force",
        action="store_true",
        help="a local job of another host: delete its record only (its process is left to that host)",
    )
    rm.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="a local job: seconds between SIGTERM and SIGKILL (default 10)",
    )
    rm.set_defaults(func=delete_command)


# -- quick forms -------------------------------------------------------------------------------------


def _pairs(items: Sequence[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag}: KEY=VALUE, not {item!r}")
        out[key] = value
    return out


def quick_document(form: str, args: argparse.Namespace) -> dict[str, Any]:
    """The document a quick form stands for (only what its flags set; the rest are the kind's defaults)."""
    kind = FORMS[form]
    resources: dict[str, Any] = {}
    for key in ("cpu", "memory", "gpus"):
        if getattr(args, key, None) is not None:
            resources[key] = getattr(args, key)
    if getattr(args, "gpu_memory", None) is not None or getattr(args, "gpu_cores", None) is not None:
        if args.gpu_memory is None:
            raise ValueError("--gpu-cores: needs --gpu-memory (a shared GPU is asked by its memory)")
        share: dict[str, Any] = {"memoryMiB": args.gpu_memory}
        if args.gpu_cores is not None:
            share["cores"] = args.gpu_cores
        resources["gpuShare"] = share
    if getattr(args, "vgpu_ratio", None) is not None:
        resources["vgpu"] = {"ratio": args.vgpu_ratio}
    devices = _pairs(args.device, "--device")
    if devices:
        resources["devices"] = devices
    spec: dict[str, Any] = {"image": args.image}
    if args.command:
        spec["command"] = list(args.command)
    if resources:
        spec["resources"] = resources
    for key, flag in (("env", "-e/--env"), ("nodeSelector", "--selector"), ("annotations", "--annotation")):
        values = _pairs(
            {"env": args.env, "nodeSelector": args.selector, "annotations": args.annotation}[key], flag
        )
        if values:
            spec[key] = values
    if args.toleration:
        spec["tolerations"] = [
            {"operator": "Exists"} if key == "all" else {"key": key, "operator": "Exists"}
            for key in args.toleration
        ]
    if args.priority:
        spec["priority"] = args.priority
    named = {
        "training": (
            ("workers", "workers"),
            ("gang", "gang"),
            ("minAvailable", "min_available"),
            ("port", "port"),
            ("backoffLimit", "retry"),
        ),
        "inference": (("replicas", "replicas"), ("port", "port")),
        "batch": (("completions", "completions"), ("parallelism", "parallelism"), ("backoffLimit", "retry")),
    }[form]
    for key, attr in named:
        if getattr(args, attr, None) is not None:
            spec[key] = getattr(args, attr)
    metadata: dict[str, Any] = {"name": args.name}
    labels = _pairs(args.label, "--label")
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def jobs_from_args(args: argparse.Namespace) -> tuple[Job, ...]:
    """The jobs a parsed `submit` command stands for; InvalidSpec names the file, line and field (or the
    quick form and field)."""
    if args.form == FILE_FORM:
        return read_jobs(args.file, args.scaling_policy)
    source = f"submit {args.form}"
    try:
        doc = quick_document(args.form, args)
    except ValueError as e:
        raise InvalidSpec(source, [f" {e}"]) from None
    try:
        return (MODELS[doc["kind"]].model_validate(doc),)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f" {'.'.join(str(p) for p in err['loc'])}: {msg}")
        raise InvalidSpec(source, problems) from None


def _line(problem: str) -> int:
    head = problem.split(":", 1)[0].strip()
    return int(head) if head.isdigit() else 0


def read_submission(
    args: argparse.Namespace,
) -> tuple[tuple[Job, ...], tuple[tuple[ExternalKind, ExternalJob], ...]]:
    """The launcher's jobs and the external kinds' jobs of a parsed `submit` command, all validated
    before anything is created: InvalidSpec lists every problem of the file, by line."""
    kinds: ExternalKinds = getattr(args, "external_kinds", None) or {}
    if args.form != FILE_FORM or not kinds:
        return jobs_from_args(args), ()
    path: Path = args.file
    text = read_text(path)
    split = split_documents(text, kinds)
    if not split.external:
        return jobs_from_args(args), ()
    defaults = Defaults(
        **{
            k: v
            for k, v in (
                ("namespace", args.namespace),
                ("queue", args.queue),
                ("scheduler_name", args.scheduler),
            )
            if v
        }
    )
    options = {
        key: str(value)
        for key, value in (
            ("engine", getattr(args, "engine", None)),
            ("target", getattr(args, "target", None)),
            ("bootstrap", getattr(args, "bootstrap", None)),
            ("maxRecords", getattr(args, "max_records", None)),
            ("bounded", "true" if getattr(args, "bounded", False) else None),
        )
        if value is not None
    }
    problems: list[str] = []
    jobs: tuple[Job, ...] = ()
    if split.launcher:
        try:
            jobs = parse_jobs(split.launcher, str(path), args.scaling_policy)
        except InvalidSpec as e:
            problems += e.problems
    external: list[tuple[ExternalKind, ExternalJob]] = []
    for kind, document in split.external:
        try:
            external.append(
                (kinds[kind], kinds[kind].parse(document, str(path), path.parent, defaults, options))
            )
        except InvalidSpec as e:
            problems += e.problems
    names: dict[tuple[str, str], str] = {}
    for job in jobs:
        names[(job.metadata.namespace or defaults.namespace, job.metadata.name)] = job.kind
    for _, ext in external:
        if (ext.namespace, ext.name) in names:
            problems.append(
                f"0: metadata.name: {ext.kind} {ext.name!r} has the name of a "
                f"{names[(ext.namespace, ext.name)]} of the file (namespace {ext.namespace})"
            )
        names[(ext.namespace, ext.name)] = ext.kind
    if problems:
        raise InvalidSpec(str(path), sorted(problems, key=_line))
    return jobs, tuple(external)


def kubeconfig_file(kubeconfig: str | None) -> str | None:
    """The kubeconfig file the engines' own clients read: `--kubeconfig`, $KUBECONFIG, ~/.kube/config."""
    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    return path if Path(path).is_file() else None


# -- handlers ----------------------------------------------------------------------------------------


def api_client(kubeconfig: str | None) -> Any:
    """A client for `kubeconfig`, else $KUBECONFIG or ~/.kube/config, else the pod's service account."""
    from kernel.kubeclient import api_client as kube_client

    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    given = kubeconfig or Path(path).is_file()
    try:
        return kube_client(path if given else None)
    except PermanentError as e:
        reason = str(e) if given else f"no kubeconfig ({path} does not exist) and {e}"
        raise InvalidSpec("--kubeconfig", [f" {reason}"]) from None


def _fail(command: str, e: Exception) -> int:
    print(f"{command}: {e}", file=sys.stderr)
    return 2 if isinstance(e, InvalidSpec) else 1


def _run(command: str, body: Callable[[], int]) -> int:
    try:
        return body()
    except InvalidSpec as e:
        print(str(e), file=sys.stderr)
        return 2
    except TidescaleError as e:
        return _fail(command, e)


def submit_command(args: argparse.Namespace) -> int:
    def body() -> int:
        from jobs.launcher.client import submit

        jobs, external = read_submission(args)
        api = None if args.dry_run else api_client(args.kubeconfig)
        done = submit(
            api,
            jobs,
            namespace=args.namespace,
            queue=args.queue,
            scheduler_name=args.scheduler,
            dry_run=args.dry_run,
            replace=args.replace,
            wait=args.wait,
            timeout=args.timeout,
            external=external,
            kubeconfig=kubeconfig_file(args.kubeconfig) if external else None,
        )
        failed = any(s.view is not None and s.view.phase == FAILED for s in done)
        # a local job waited for: its process's exit status is the command's
        code = next((s.exit_code for s in done if s.exit_code), 1 if failed else 0)
        if args.json:
            out: dict[str, Any] = {"jobs": [s.to_json() for s in done], "dryRun": args.dry_run}
            if args.dry_run:
                out["objects"] = [o for s in done for o in s.rendered.objects]
            print(json.dumps(out))
        elif args.dry_run:
            print(yaml.safe_dump_all([o for s in done for o in s.rendered.objects], sort_keys=False), end="")
            for s in done:
                for line in _launch_lines(s.kind, s.name, s.details):
                    print(line)
        else:
            for s in done:
                print(f"{s.kind} {s.name} created in namespace {s.namespace}: {', '.join(s.objects)}")
                if s.details and s.details.get("target") == "local":
                    print(f"  runs on {s.details['host']}, log {s.details['log']}")
                if s.view is not None:
                    print(f"  {s.view.phase}: {s.view.reason}")
        return code

    return _run("submit", body)


def _launch_lines(kind: str, name: str, details: Mapping[str, Any] | None) -> list[str]:
    """An external job's dry run, as YAML comments: what its own client would create and run."""
    if not details:
        return []
    out = [f"# {kind} {name}: would create {', '.join(details.get('objects') or [])}"]
    command = details.get("command")
    if command:
        out.append("#   and run: " + " ".join(str(c) for c in command))
    out += [f"#   note: {n}" for n in details.get("notes") or []]
    return out


def _gpus(x: float) -> str:
    return f"{x:g}"


def _nodes(nodes: Sequence[str]) -> str:
    if not nodes:
        return "-"
    return ",".join(nodes[:2]) + (f",+{len(nodes) - 2}" if len(nodes) > 2 else "")


def table(rows: Sequence[Sequence[str]]) -> str:
    """kubectl's layout: columns padded to the widest cell, three spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _phase(v: JobView) -> str:
    """The phase as the tables show it: a local job seen from another host says which."""
    if v.phase == UNKNOWN and v.local is not None:
        return f"{UNKNOWN} (on host {v.local.get('host')})"
    return v.phase


def format_list(views: Sequence[JobView], all_namespaces: bool, now: datetime) -> str:
    head = ["NAME", "KIND", "STATUS", "QUEUE", "PODS", "GPU(REQUESTED)", "GPU(ALLOCATED)", "AGE", "NODE"]
    rows = [(["NAMESPACE"] if all_namespaces else []) + head]
    for v in views:
        live = [p for p in v.pods if p.phase not in ("Succeeded", "Failed")]
        bound = sum(1 for p in live if p.bound)
        row = [
            v.name,
            v.kind,
            _phase(v),
            v.queue or "-",
            f"{bound}/{len(live)}",
            _gpus(v.gpus_requested),
            _gpus(v.gpus_allocated),
            age(v.created, now),
            _nodes(v.nodes),
        ]
        rows.append(([v.namespace] if all_namespaces else []) + row)
    return table(rows)


def format_job(v: JobView, now: datetime) -> str:
    lines = [
        f"Name:        {v.name}",
        f"Namespace:   {v.namespace}",
        f"Kind:        {v.kind}",
        f"Status:      {v.phase} ({v.reason})",
    ]
    if v.local is not None:
        lines += [
            f"Host:        {v.local.get('host')}",
            f"Process:     {v.local.get('pid') or '-'}"
            + (f" (exit status {v.local['exitCode']})" if v.local.get("exitCode") is not None else ""),
            f"Log:         {v.local.get('log')}",
            f"Command:     {' '.join(str(c) for c in v.local.get('command') or [])}",
            f"Age:         {age(v.created, now)}",
        ]
        return "\n".join(lines)
    queue = v.queue + (f" ({v.position.text()})" if v.position is not None else "")
    lines += [
        f"Queue:       {queue}",
        f"Scheduler:   {v.scheduler}",
        f"Age:         {age(v.created, now)}",
        f"GPUs:        {_gpus(v.gpus_allocated)} allocated of {_gpus(v.gpus_requested)} requested",
    ]
    if v.podgroup is not None:
        g = v.podgroup
        lines.append(
            f"PodGroup:    {g['name']} {g['phase']} (minMember {g['minMember']}, running {g['running']})"
        )
    for i, w in enumerate(v.workloads):
        lines.append(f"{'Workloads:' if i == 0 else ''}".ljust(13) + w)
    if v.pods:
        rows = [["POD", "ROLE", "INDEX", "STATUS", "NODE", "GPUS", "DEVICES", "MESSAGE"]]
        for p in v.pods:
            devices = " ".join(f"{k}={x}" for k, x in p.devices.items()) or "-"
            rows.append(
                [
                    p.name,
                    p.role or "-",
                    p.index or "-",
                    p.phase,
                    p.node or "-",
                    _gpus(p.gpus),
                    devices,
                    p.message,
                ]
            )
        lines += ["", table(rows)]
    if v.events:
        rows = [["TIME", "TYPE", "REASON", "OBJECT", "MESSAGE"]]
        rows += [[e.time, e.type, e.reason, e.object, e.message] for e in v.events]
        lines += ["", "Events:", table(rows)]
    return "\n".join(lines)


def _now() -> datetime:
    return SYSTEM_CLOCK.now().astimezone(UTC)


def list_command(args: argparse.Namespace) -> int:
    def body() -> int:
        from jobs.launcher.client import list_jobs

        views = list_jobs(
            api_client(args.kubeconfig), None if args.all_namespaces else args.namespace, args.queue
        )
        if args.json:
            print(json.dumps({"jobs": [v.to_json() for v in views]}))
        elif not views:
            where = "any namespace" if args.all_namespaces else f"namespace {args.namespace}"
            print(f"No jobs in {where}" + (f" in queue {args.queue}" if args.queue else "") + ".")
        else:
            print(format_list(views, args.all_namespaces, _now()))
        return 0

    return _run("jobs list", body)


def get_command(args: argparse.Namespace) -> int:
    def body() -> int:
        from jobs.launcher.client import get_job

        view = get_job(api_client(args.kubeconfig), args.name, args.namespace)
        print(json.dumps(view.to_json()) if args.json else format_job(view, _now()))
        return 1 if view.phase == FAILED else 0

    return _run("jobs get", body)


def logs_command(args: argparse.Namespace) -> int:
    def body() -> int:
        from jobs.launcher.client import logs

        for line in logs(
            api_client(args.kubeconfig),
            args.name,
            args.namespace,
            follow=args.follow,
            instance=args.instance,
            tail=args.tail,
        ):
            print(line, flush=args.follow)
        return 0

    return _run("jobs logs", body)


def delete_command(args: argparse.Namespace) -> int:
    def body() -> int:
        from jobs.launcher.client import delete_job

        delete_job(
            api_client(args.kubeconfig),
            args.name,
            args.namespace,
            propagation=args.propagation,
            wait=args.wait,
            timeout=args.timeout,
            force=args.force,
            grace=args.grace,
        )
        if args.json:
            print(json.dumps({"deleted": args.name, "namespace": args.namespace}))
        else:
            print(f"job {args.name} deleted from namespace {args.namespace}")
        return 0

    return _run("jobs delete", body)
