"""The job a pipeline runs as inside a pod (and under `tidescale pipeline run`): decode the pipeline,
plan it, run it on the named engine until stopped, exporting its metrics.

`python -m streaming.job --engine flink --bootstrap HOST:PORT --pipeline-b64 …` (what `render` puts in
the FlinkDeployment's PythonDriver args and the SparkApplication's arguments), or `--pipeline FILE`.
Shell: reads the spec, starts the engine and the metrics server.
"""

from __future__ import annotations

import argparse
import base64
import sys
from collections.abc import Sequence
from pathlib import Path

from streaming import pipeline_file
from streaming.engine import EngineRegistry, RunOptions, RunReport, delivery_note
from streaming.engines import register_builtins
from streaming.plan import Plan, plan


def load_plan(file: str | None, encoded: str | None) -> Plan:
    if encoded:
        return plan(pipeline_file.parse(base64.b64decode(encoded).decode(), "<pipeline-b64>"))  # JSON is YAML
    assert file is not None
    return plan(pipeline_file.load(file))


def run(
    pipeline: Plan,
    engine_name: str,
    options: RunOptions,
    metrics_port: int | None = None,
    out: Sequence[str] = (),
    *,
    engines: EngineRegistry,
) -> RunReport:
    """Run `pipeline` on engine `engine_name` of `engines`; with `metrics_port`, serve its Prometheus metrics
    on 127.0.0.1 meanwhile."""
    engine = engines.get(engine_name)
    note = delivery_note(engine, pipeline)
    if note:
        print(f"note: {note}", file=sys.stderr)
    monitor = server = None
    if metrics_port is not None:
        from streaming.metrics import OffsetMonitor, PipelineMetrics

        metrics = PipelineMetrics(pipeline, engine_name)
        server = metrics.serve(metrics_port)
        monitor = OffsetMonitor(pipeline, options.bootstrap, metrics).start()
    try:
        return engine.run(pipeline, options)
    finally:
        if monitor is not None:
            monitor.stop()
        if server is not None:
            server.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streaming.job")
    parser.add_argument("--engine", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--pipeline")
    parser.add_argument("--pipeline-b64")
    parser.add_argument("--checkpoint-dir", type=Path)
    parser.add_argument("--metrics-port", type=int)
    args = parser.parse_args(argv)
    if not (args.pipeline or args.pipeline_b64):
        parser.error("give --pipeline FILE or --pipeline-b64")
    pipeline = load_plan(args.pipeline, args.pipeline_b64)
    run(
        pipeline,
        args.engine,
        RunOptions(args.bootstrap, checkpoint_dir=args.checkpoint_dir),
        args.metrics_port,
        engines=register_builtins(EngineRegistry()),
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
