"""`tidescale pipeline validate|render|submit|run` and `tidescale bench streaming`.

Shell: argument parsing and printing; each handler returns an exit code (2 for invalid specs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from kernel.errors import InvalidSpec, PermanentError
from streaming import pipeline_file, render
from streaming.engine import RunOptions
from streaming.plan import plan

ENGINE_CHOICES = ("flink", "spark", "python")


def default_bootstrap() -> str | None:
    """`$TIDESCALE_KAFKA_BOOTSTRAP`, else the Kafka of the local environment (`tidescale local up`)."""
    configured = os.environ.get("TIDESCALE_KAFKA_BOOTSTRAP")
    if configured:
        return configured
    state = Path(os.environ.get("TIDESCALE_STATE_DIR", ".tidescale/local")) / "state.json"
    try:
        components = json.loads(state.read_text())["components"]
        return str(components["kafka"]["endpoint"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


def add_commands(sub: Any) -> None:
    pipeline = sub.add_parser("pipeline", help="streaming pipelines: validate, render, run")
    commands = pipeline.add_subparsers(dest="pipeline_command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check pipeline files; exit 2 on any error")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(func=validate_command)

    rendering = commands.add_parser("render", help="print what the Flink or Spark operator expects")
    rendering.add_argument("file", metavar="FILE")
    rendering.add_argument("--engine", choices=("flink", "spark"), required=True)
    rendering.add_argument("--target", choices=("kubernetes",), default="kubernetes")
    rendering.add_argument("--spark-submit", action="store_true", help="the spark-submit line instead")
    rendering.add_argument("--bootstrap", default=render.DEFAULT_BOOTSTRAP, help="Kafka as the pods see it")
    rendering.add_argument("--master", default=render.DEFAULT_MASTER, help="for --spark-submit")
    rendering.set_defaults(func=render_command)

    submitting = commands.add_parser(
        "submit",
        help="submit to Kubernetes with the engine's own client (spark-submit, flink run) through the "
        "tidescale scheduler",
    )
    submitting.add_argument("file", metavar="FILE")
    submitting.add_argument("--engine", choices=("flink", "spark"), required=True)
    submitting.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"), help="default: $KUBECONFIG")
    submitting.add_argument("--namespace", "-n", default=None, help="default: the spec's, else default")
    submitting.add_argument("--queue", default=None, help="default: the spec's scheduling.queue")
    submitting.add_argument("--scheduler-name", default="tidescale")
    submitting.add_argument("--image", default=None, help="default: the spec's, else the engine's")
    submitting.add_argument("--name", default=None, help="the job's name (default: the pipeline's)")
    submitting.add_argument(
        "--service-account", default=None, help="default: one made for the job, with the rights it needs"
    )
    submitting.add_argument("--bootstrap", default=render.DEFAULT_BOOTSTRAP, help="Kafka as the pods see it")
    submitting.add_argument("--replace", action="store_true", help="replace a job of the same name")
    submitting.add_argument("--timeout", type=float, default=180.0, help="seconds for the engine's client")
    submitting.add_argument("--dry-run", action="store_true", help="print what would be created and run")
    submitting.add_argument("--json", action="store_true")
    submitting.set_defaults(func=submit_command)

    running = commands.add_parser("run", help="run a pipeline locally against Kafka until stopped")
    running.add_argument("file", metavar="FILE")
    running.add_argument("--engine", choices=ENGINE_CHOICES, default="flink")
    running.add_argument(
        "--bootstrap", default=None, help="default: $TIDESCALE_KAFKA_BOOTSTRAP or the local environment"
    )
    running.add_argument(
        "--max-records",
        type=int,
        default=None,
        help="stop after N records (python engine: exactly; flink/spark: at the end offsets seen at start)",
    )
    running.add_argument("--bounded", action="store_true", help="stop at the end offsets seen at start")
    running.add_argument("--checkpoint-dir", type=Path, default=None)
    running.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus metrics on 127.0.0.1:PORT"
    )
    running.add_argument("--timeout", type=float, default=None, help="seconds, for bounded runs")
    running.set_defaults(func=run_command)


def _load(file: str) -> Any:
    try:
        return plan(pipeline_file.load(file))
    except InvalidSpec as exc:
        print(str(exc), file=sys.stderr)
        return None


def validate_command(args: argparse.Namespace) -> int:
    failed = False
    for file in args.files:
        if _load(file) is None:
            failed = True
        else:
            print(f"{file}: ok")
    return 2 if failed else 0


def render_command(args: argparse.Namespace) -> int:
    pipeline = _load(args.file)
    if pipeline is None:
        return 2
    if args.engine == "flink":
        if args.spark_submit:
            print("--spark-submit goes with --engine spark", file=sys.stderr)
            return 2
        rendered = render.flink(pipeline, args.target, bootstrap=args.bootstrap)
    else:
        rendered = render.spark(
            pipeline,
            args.target,
            spark_submit=args.spark_submit,
            bootstrap=args.bootstrap,
            master=args.master,
        )
    for note in rendered.notes:
        print(f"# note: {note}")
    if rendered.command:
        print(" \\\n  ".join(_command_lines(rendered.command)))
    else:
        print(yaml.safe_dump_all(rendered.objects, sort_keys=False), end="")
    return 0


def submit_command(args: argparse.Namespace) -> int:
    from streaming import launch

    pipeline = _load(args.file)
    if pipeline is None:
        return 2
    if not args.kubeconfig and not args.dry_run:
        print("no kubeconfig: pass --kubeconfig or set KUBECONFIG", file=sys.stderr)
        return 2
    try:
        result = launch.submit_pipeline(
            pipeline,
            args.engine,
            kubeconfig=args.kubeconfig,
            namespace=args.namespace,
            scheduler_name=args.scheduler_name,
            queue=args.queue,
            image=args.image,
            job_name=args.name,
            service_account=args.service_account,
            bootstrap=args.bootstrap,
            replace=args.replace,
            dry_run=args.dry_run,
            timeout_s=args.timeout,
        )
    except launch.LaunchFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.output:
            print(exc.output.rstrip(), file=sys.stderr)
        return 1
    except PermanentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    for note in result.notes:
        print(f"# note: {note}")
    where = f"{result.namespace}/{result.job_name}"
    if result.dry_run:
        print(f"# would create {', '.join(result.objects)} in {result.namespace}")
        documents = [result.pod_group, *result.templates.values()]
        print(yaml.safe_dump_all(documents, sort_keys=False), end="")
        print("---\n# run:")
        print(" \\\n  ".join(_command_lines(result.command)))
        return 0
    owned = ", ".join(result.objects[:-1])
    print(f"pipeline {where} submitted with {result.engine}: {'/'.join(result.root)} owns {owned}")
    return 0


def _command_lines(command: tuple[str, ...]) -> list[str]:
    """One line per flag and its value, for a readable `spark-submit`."""
    import shlex

    lines: list[str] = []
    parts = list(command)
    while parts:
        part = parts.pop(0)
        if part.startswith("-") and parts and not parts[0].startswith("-"):
            lines.append(f"{part} {shlex.quote(parts.pop(0))}")
        else:
            lines.append(shlex.quote(part))
    return lines


def run_command(args: argparse.Namespace) -> int:
    from streaming import job
    from streaming.engine import EngineRegistry
    from streaming.engines import register_builtins

    pipeline = _load(args.file)
    if pipeline is None:
        return 2
    bootstrap = args.bootstrap or default_bootstrap()
    if not bootstrap:
        print(
            "no Kafka: pass --bootstrap, set TIDESCALE_KAFKA_BOOTSTRAP or run `tidescale local up`",
            file=sys.stderr,
        )
        return 2
    options = RunOptions(
        bootstrap,
        bounded=args.bounded,
        max_records=args.max_records,
        checkpoint_dir=args.checkpoint_dir,
        timeout_s=args.timeout,
    )
    try:
        report = job.run(
            pipeline, args.engine, options, args.metrics_port, engines=register_builtins(EngineRegistry())
        )
    except PermanentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    summary = {"engine": report.engine, "seconds": round(report.seconds, 2)}
    for key in ("records_in", "records_out", "dead_letters"):
        if getattr(report, key) is not None:
            summary[key] = getattr(report, key)
    print(json.dumps(summary))
    return 0
