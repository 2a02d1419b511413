"""The autoscaler's commands and benchmarks in the `tidescale` CLI.

`add_commands` registers `tidescale policy validate FILE…` (exit 2 on any invalid file; each problem on one
line as `file:LINE: field: reason`) and `tidescale policy backtest FILE --trace CSV [--rate-multiplier X]
[--window START,END] [--json]` (the policy and the HPA, KEDA and KPA baselines replayed on the trace; with
`--json` the last line is one JSON object), `tidescale policy hindsight FILE …` (the same replay set against
capacity schedules chosen in hindsight, `autoscaler.replay.hindsight`) and `tidescale policy frontier FILE
--trace T …` (each controller's main knob swept over a grid, every point replayed on a process pool of
`--jobs` workers with progress on stderr, the lower frontiers and tidescale's GPU-hour saving at equal
violations, `autoscaler.replay.sweep`; `--plot FILE` draws them with matplotlib, imported only then).
`add_benchmarks` registers `tidescale bench controller --policies N --json` (decisions per second of the pure
decision core; `--e2e` is the controller benchmark of the controller issue) and `tidescale bench autoscaler`
(the backtest table at several rate multipliers).
Handlers take the parsed arguments and return the exit code: 0 done, 1 a run failed, 2 invalid input.

The shell of this package's pure modules: it reads the files named on the command line and prints; it
opens no network connection and starts no process, except the frontier's worker processes (replays only) and
`tidescale events watch [--json]`, which tails the scaling-events topic on Kafka (or watches the controller's
Kubernetes Events) through `autoscaler.controller.sources.kafka_events` / `kube_events` until interrupted,
`--max-events` or `--timeout`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import multiprocessing
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from autoscaler.api import crd
from autoscaler.api.policy import NodePool, ScalingPolicy, read_policy_file
from autoscaler.core.triggers import TriggerRegistry, register_builtins
from autoscaler.replay import hindsight, sweep
from autoscaler.replay.backtest import (
    Backtest,
    NoPolicy,
    default_pool,
    format_table,
    pick,
    run_backtest,
    service_model_for,
    to_json_line,
)
from autoscaler.replay.service_model import ServiceModel
from autoscaler.replay.trace import (
    COPIES,
    SYNTHETIC,
    Requests,
    load_trace,
    multiply,
    parse_duration,
    parse_window,
    synthetic,
    window,
)
from jobs.bench import peak_rss_mib
from kernel.clock import SYSTEM_CLOCK
from kernel.errors import InvalidSpec
from tidescale.bench import decisions as bench

DEFAULT_TRACE = Path("../shared/traces/azure-llm-2023/AzureLLMInferenceTrace_code.csv")
DEFAULT_POLICY = Path("examples/policies/llm-inference.yaml")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = sub.add_parser(
        "policy", help="scaling policies: validate them, backtest them on a trace, set them against hindsight"
    )
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")

    v = policy_sub.add_parser("validate", help="check ScalingPolicy/NodePool files; exit 2 on any error")
    v.add_argument(
        "files", type=Path, nargs="+", metavar="FILE", help="policy files (YAML, several documents)"
    )
    v.set_defaults(func=validate_command)

    b = policy_sub.add_parser(
        "backtest", help="replay a trace through the policy and the HPA, KEDA and KPA baselines"
    )
    _replay_arguments(b)
    b.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    b.set_defaults(func=backtest_command)

    h = policy_sub.add_parser(
        "hindsight",
        help="what capacity schedules that know the trace achieve, beside the policy and the baselines",
    )
    _replay_arguments(h)
    h.add_argument(
        "--windows",
        default="60,300",
        help="comma-separated windows (s) of the clairvoyant schedules (default 60,300)",
    )
    h.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    h.set_defaults(func=hindsight_command)

    f = policy_sub.add_parser(
        "frontier",
        help="cost/SLO frontiers of tidescale and every baseline over their main knob, and the saving",
    )
    _replay_arguments(f)
    f.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="CONTROLLER=V1,V2,…",
        help="the values of a controller's knob instead of its default grid (repeatable)",
    )
    f.add_argument(
        "--controllers",
        default=",".join(sweep.CONTROLLERS),
        help=f"the controllers to sweep (default {','.join(sweep.CONTROLLERS)})",
    )
    f.add_argument(
        "--baselines-from",
        type=Path,
        default=None,
        metavar="FILE",
        help=(
            "configure the baselines from this policy file's ScalingPolicy (of the same name with --policy) "
            "instead of FILE's: e.g. the policy before a change, so that the baselines' frontiers stay the "
            "same"
        ),
    )
    f.add_argument(
        "--tidescale-knob",
        choices=sweep.TIDESCALE_KNOBS,
        default=None,
        help=(
            "tidescale's knob (default: late-requests with an SLO trigger that states "
            "lateRequestsPerReplicaHour, slo-target with another SLO trigger, else trigger-target)"
        ),
    )
    f.add_argument(
        "--samples", type=int, default=20, help="violation levels the saving is sampled at (default 20)"
    )
    f.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="replays run at once (default: the CPU count)"
    )
    f.add_argument("--plot", type=Path, default=None, metavar="PNG", help="draw the frontiers into PNG")
    f.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    f.set_defaults(func=frontier_command)

    events = sub.add_parser("events", help="scaling events: what the controller decided and why")
    events_sub = events.add_subparsers(dest="events_command", required=True, metavar="COMMAND")
    w = events_sub.add_parser(
        "watch",
        help="stream scaling events live from Kafka (default) or Kubernetes Events until interrupted",
    )
    w.add_argument("--json", action="store_true", help="one JSON object per line instead of a readable line")
    w.add_argument(
        "--kafka-bootstrap",
        default=None,
        metavar="B",
        help="Kafka to read (default: $TIDESCALE_KAFKA_BOOTSTRAP or the local environment's Kafka)",
    )
    w.add_argument(
        "--kubeconfig",
        default=None,
        metavar="K",
        help="read Kubernetes Events instead (default when no Kafka is found: $KUBECONFIG or the local one)",
    )
    w.add_argument("--topic", default=None, help="the events topic (default tidescale.scaling-events)")
    w.add_argument("--namespace", default=None, metavar="NS", help="only policies in this namespace")
    w.add_argument("--policy", default=None, metavar="NAME", help="only this policy (name or namespace/name)")
    w.add_argument("--from-beginning", action="store_true", help="print the stored events first")
    w.add_argument("--max-events", type=int, default=None, metavar="N", help="stop after N events")
    w.add_argument("--timeout", type=float, default=None, metavar="S", help="stop after S seconds")
    w.set_defaults(func=events_watch_command)

    c = sub.add_parser("crds", help="the ScalingPolicy and NodePool CRDs, generated from the policy models")
    where = c.add_mutually_exclusive_group()
    where.add_argument("--write", type=Path, metavar="DIR", help=f"write them into DIR (e.g. {crd.CRD_DIR})")
    where.add_argument(
        "--check",
        type=Path,
        metavar="DIR",
        help="exit 1 when the files in DIR differ from the generated ones",
    )
    c.set_defaults(func=crds_command)


def add_benchmarks(
    bench_sub: argparse._SubParsersAction[argparse.ArgumentParser],
    e2e: Callable[[argparse.Namespace], int] | None = None,
) -> None:
    """`e2e`: the end-to-end controller benchmark, which needs the local environment (the composition root
    passes it in; this package cannot start the environment)."""
    c = bench_sub.add_parser("controller", help="decisions per second of the pure decision core (in process)")
    c.add_argument("--policies", type=int, default=1000, help="number of distinct policies (default 1000)")
    c.add_argument("--rounds", type=int, default=20, help="decisions per policy (default 20)")
    c.add_argument("--runs", type=int, default=5, help="timed runs, one after another (default 5)")
    c.add_argument(
        "--e2e", action="store_true", help="the end-to-end controller benchmark (the controller issue)"
    )
    c.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    c.add_argument("--probes", type=int, default=20, help="--e2e: signal changes timed (default 20)")
    c.add_argument("--state-dir", type=Path, default=None, help="--e2e: where the environment runs")
    c.add_argument("--sync-seconds", type=float, default=15.0, help="--e2e: the controller's sweep period")
    c.set_defaults(func=controller_bench_command, e2e_handler=e2e)

    a = bench_sub.add_parser("autoscaler", help="the policy backtest at several rate multipliers")
    a.add_argument(
        "--file", type=Path, default=DEFAULT_POLICY, help=f"policy file (default {DEFAULT_POLICY})"
    )
    a.add_argument("--multipliers", default="10,30", help="comma-separated rate multipliers (default 10,30)")
    _trace_arguments(a, multiplier=False)
    a.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    a.set_defaults(func=autoscaler_bench_command)


def _replay_arguments(p: argparse.ArgumentParser) -> None:
    """What every replay command reads: the policy file, the trace and which policy of the file."""
    p.add_argument(
        "file", type=Path, metavar="FILE", help="policy file (the first ScalingPolicy, its NodePool)"
    )
    _trace_arguments(p)
    p.add_argument("--policy", default=None, help="the ScalingPolicy to replay when the file has several")
    p.add_argument(
        "--warmup",
        default="0",
        metavar="DURATION",
        help=(
            "count GPU-hours and violations from this time on (e.g. 10m): the start-up, every controller "
            "scaling up from one warm replica, left out (default 0: the whole trace)"
        ),
    )


def _trace_arguments(p: argparse.ArgumentParser, multiplier: bool = True) -> None:
    p.add_argument(
        "--trace",
        default=str(DEFAULT_TRACE),
        help=(
            "request log (TIMESTAMP,ContextTokens,GeneratedTokens) or rate series (timestamp,qps), or "
            f"synthetic:KIND[:SEED] with KIND in {', '.join(SYNTHETIC)} (default {DEFAULT_TRACE})"
        ),
    )
    if multiplier:
        p.add_argument(
            "--rate-multiplier", type=float, default=1.0, help="scale the trace's rate (default 1)"
        )
    p.add_argument(
        "--copies",
        choices=COPIES,
        default=COPIES[0],
        help=(
            "how a rate multiplier copies the trace: independent (default: each copy shifted as a whole by a "
            "random offset under an hour) or aligned (each request's copies within the same second)"
        ),
    )
    p.add_argument(
        "--window",
        default=None,
        metavar="START,END",
        help="only the requests in [START, END) from the trace's start, e.g. 2d,4d or 0,6h (units s m h d)",
    )
    p.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a service-model field, e.g. cold_start_s=30 (repeatable)",
    )


def _replayed(run: Callable[..., Backtest]) -> Callable[..., Backtest]:
    """`run`, with the replayed controller's log lines held back: they speak of simulated targets (a
    gateway that a trace has no series for, nodes still provisioning), not of anything the user runs."""

    def quiet(*args: Any, **kwargs: Any) -> Backtest:
        logger = logging.getLogger("autoscaler.controller")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            return run(*args, **kwargs)
        finally:
            logger.setLevel(level)

    return quiet


def _triggers() -> TriggerRegistry:
    """The trigger types a command compiles policies against: built once per command."""
    return register_builtins(TriggerRegistry())


def _fail(message: str) -> int:
    print(f"tidescale: {message}", file=sys.stderr)
    return 2


def validate_command(args: argparse.Namespace) -> int:
    bad = False
    for path in args.files:
        try:
            f = read_policy_file(path)
        except InvalidSpec as e:
            bad = True
            for line in str(e).splitlines():
                print(line, file=sys.stderr)
            continue
        kinds = [f"{len(f.policies)} ScalingPolicy", f"{len(f.pools)} NodePool"]
        print(f"{path}: ok ({', '.join(kinds)})")
    return 2 if bad else 0


def crds_command(args: argparse.Namespace) -> int:
    """Print the CRDs (one YAML stream), write them into a folder, or check a folder against them."""
    generated = crd.files()
    if args.write is not None:
        args.write.mkdir(parents=True, exist_ok=True)
        for name, text in generated.items():
            (args.write / name).write_text(text, encoding="utf-8")
            print(f"wrote {args.write / name}")
        return 0
    if args.check is not None:
        stale = [
            name
            for name, text in generated.items()
            if not (args.check / name).is_file() or (args.check / name).read_text(encoding="utf-8") != text
        ]
        for name in stale:
            print(f"{args.check / name}: differs from the generated CRD", file=sys.stderr)
        if stale:
            print(f"tidescale: regenerate with `tidescale crds --write {args.check}`", file=sys.stderr)
            return 1
        print(f"{args.check}: {len(generated)} CRDs up to date")
        return 0
    print("".join(generated.values()), end="")
    return 0


def _service_model(overrides: list[str]) -> ServiceModel:
    model = ServiceModel()
    fields = {f.name: f for f in dataclasses.fields(ServiceModel)}
    changes: dict[str, object] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--service {item!r}: want KEY=VALUE with KEY one of {', '.join(fields)}")
        kind = type(getattr(model, key))
        try:
            changes[key] = kind(value)
        except ValueError:
            raise ValueError(f"--service {item!r}: {value!r} is not a {kind.__name__}") from None
    return model.with_(**changes)


def _requests(spec: str, model: ServiceModel, window_spec: str | None = None) -> Requests:
    if spec.startswith("synthetic:"):
        parts = spec.split(":")
        seed = int(parts[2]) if len(parts) > 2 else 1
        requests = synthetic(parts[1], seed, model.mean_prompt_tokens, model.mean_generated_tokens)
    else:
        requests = load_trace(Path(spec), model.mean_prompt_tokens, model.mean_generated_tokens)
    return requests if window_spec is None else window(requests, *parse_window(window_spec))


def _workload(args: argparse.Namespace) -> tuple[ServiceModel, Requests]:
    """The service model and the requests a replay command's arguments name: the trace cut to its window and
    scaled by the multiplier, the model fitted to it (`ServiceModel.for_trace`)."""
    model = _service_model(args.service)
    requests = multiply(_requests(args.trace, model, args.window), args.rate_multiplier, copies=args.copies)
    return model.for_trace(requests), requests


def _warmup(args: argparse.Namespace, requests: Requests) -> float:
    """`--warmup` in seconds; ValueError when it leaves nothing of the trace to count."""
    warmup = parse_duration(args.warmup, "--warmup")
    if warmup > 0 and warmup >= requests.duration_s:
        raise ValueError(
            f"--warmup {args.warmup}: the trace lasts {requests.duration_s:.0f} s, nothing would be counted"
        )
    return warmup


def backtest_command(args: argparse.Namespace) -> int:
    try:
        model, requests = _workload(args)
        file = read_policy_file(args.file)
        warmup = _warmup(args, requests)
        bt = _replayed(run_backtest)(
            file, requests, model, policy_name=args.policy, triggers=_triggers(), measure_from=warmup
        )
    except InvalidSpec as e:
        return _fail(str(e))
    except (NoPolicy, ValueError, KeyError) as e:
        return _fail(str(e))
    if args.json:
        print(to_json_line(bt))
    else:
        print(format_table(bt))
    return 0


def hindsight_command(args: argparse.Namespace) -> int:
    try:
        model, requests = _workload(args)
        file = read_policy_file(args.file)
        windows = [float(w) for w in args.windows.split(",") if w.strip()]
        if any(w <= 0 for w in windows):
            raise ValueError(f"--windows {args.windows!r}: every window must be > 0 s")
        warmup = _warmup(args, requests)
        bt = _replayed(run_backtest)(
            file, requests, model, policy_name=args.policy, triggers=_triggers(), measure_from=warmup
        )
    except InvalidSpec as e:
        return _fail(str(e))
    except (NoPolicy, ValueError, KeyError) as e:
        return _fail(str(e))
    refs = [hindsight.Reference(r.policy, r.gpu_hours, r.slo_violations) for r in bt.results]
    # the first goal asks for 20 % fewer GPU-hours than HPA: show what that budget buys
    refs += [
        hindsight.Reference("hpa ×0.8", 0.8 * r.gpu_hours, None) for r in bt.results if r.policy == "hpa"
    ]
    rep = hindsight.report(requests, bt.model, refs, windows, warmup)
    if args.json:
        out = {"trace": bt.trace, "policy": bt.policy, "service_model": bt.model.render(), **rep.render()}
        print(json.dumps(out, separators=(",", ":")))
    else:
        print(hindsight.format_report(rep))
    return 0


# --- frontier ---------------------------------------------------------------------------------------------

# What each worker process replays: set once per process by `_frontier_setup` (the trace is large).
_SWEEP: dict[str, Any] = {}


def _frontier_setup(
    requests: Requests,
    policy: ScalingPolicy,
    pool: NodePool,
    model: ServiceModel,
    kind: str,
    measure_from: float,
    baseline_policy: ScalingPolicy | None = None,
) -> None:
    # the replayed controller's log lines speak of simulated targets (see `_replayed`)
    logging.getLogger("autoscaler.controller").setLevel(logging.ERROR)
    _SWEEP.update(
        requests=requests,
        policy=policy,
        pool=pool,
        model=model,
        triggers=_triggers(),
        kind=kind,
        measure_from=measure_from,
        baseline_policy=baseline_policy,
    )


def _frontier_point(controller: str, value: float) -> tuple[sweep.Run, float]:
    """One point, in a worker: the run and the seconds it took."""
    start = SYSTEM_CLOCK.monotonic()
    r = sweep.replay_point(controller, value, **_SWEEP)
    return sweep.Run(controller, value, r.row(), r.description), SYSTEM_CLOCK.monotonic() - start


def _knobs(
    args: argparse.Namespace,
    policy: ScalingPolicy,
    model: ServiceModel,
    baselines: ScalingPolicy | None = None,
) -> dict[str, sweep.Knob]:
    names = [c.strip() for c in args.controllers.split(",") if c.strip()]
    unknown = [c for c in names if c not in sweep.CONTROLLERS]
    if unknown or not names:
        raise ValueError(f"--controllers {args.controllers!r}: want some of {', '.join(sweep.CONTROLLERS)}")
    source = {name: policy if name == "tidescale" or baselines is None else baselines for name in names}
    knobs = {name: sweep.knob(name, source[name], model, args.tidescale_knob) for name in names}
    for item in args.grid:
        name, sep, values = item.partition("=")
        if not sep or name not in knobs:
            raise ValueError(
                f"--grid {item!r}: want CONTROLLER=V1,V2,… with CONTROLLER one of {', '.join(knobs)}"
            )
        try:
            grid = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--grid {item!r}: the values must be numbers") from None
        knobs[name] = sweep.with_grid(knobs[name], grid)
    return knobs


def _progress(done: int, total: int, run: sweep.Run, knob: sweep.Knob, seconds: float) -> None:
    print(
        f"frontier: [{done}/{total}] {run.controller} {knob.setting} {run.value:g}: "
        f"{run.row['gpu_hours']:.2f} GPU-h, {run.row['slo_violations']:,} violations ({seconds:.0f} s)",
        file=sys.stderr,
        flush=True,
    )


def _sweep_runs(
    tasks: Sequence[tuple[str, float]], setup: tuple[Any, ...], jobs: int, knobs: dict[str, sweep.Knob]
) -> list[sweep.Run]:
    """Replay every (controller, value): on `jobs` worker processes, or here when jobs is 1."""
    runs: list[sweep.Run] = []
    if jobs <= 1:
        # here, the setup quiets this process's controller logger: as it was once the sweep is done
        quieted = logging.getLogger("autoscaler.controller")
        level = quieted.level
        try:
            _frontier_setup(*setup)
            for controller, value in tasks:
                run, seconds = _frontier_point(controller, value)
                runs.append(run)
                _progress(len(runs), len(tasks), run, knobs[controller], seconds)
        finally:
            quieted.setLevel(level)
        return runs
    # workers start from a fresh interpreter, not a fork of this one: a fork copies whatever threads this
    # process runs (a Kafka client's, in a test session) in an unknown state, and a child crashed on it
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=spawn, initializer=_frontier_setup, initargs=setup
    ) as pool:
        pending: set[Future[tuple[sweep.Run, float]]] = {pool.submit(_frontier_point, c, v) for c, v in tasks}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                run, seconds = fut.result()
                runs.append(run)
                _progress(len(runs), len(tasks), run, knobs[run.controller], seconds)
    return runs


def frontier_command(args: argparse.Namespace) -> int:
    try:
        if args.jobs < 1 or args.samples < 1:
            raise ValueError("--jobs and --samples must be at least 1")
        model, requests = _workload(args)
        file = read_policy_file(args.file)
        policy, pool = pick(file, args.policy)
        model = service_model_for(policy, pool, model)
        pool = pool or default_pool(model)
        baselines = None
        if args.baselines_from is not None:
            baselines, _ = pick(read_policy_file(args.baselines_from), args.policy)
        knobs = _knobs(args, policy, model, baselines)
        warmup = _warmup(args, requests)
    except InvalidSpec as e:
        return _fail(str(e))
    except (NoPolicy, ValueError, KeyError) as e:
        return _fail(str(e))
    # the heaviest first (tidescale's loop), then the rest, so that the pool's last tasks are short
    order = sorted(knobs, key=lambda name: name != "tidescale")
    tasks = [(name, v) for name in order for v in knobs[name].grid]
    jobs = min(args.jobs, len(tasks))
    print(
        f"frontier: {len(tasks)} replays of {requests.name} ({len(requests):,} requests) on {jobs} "
        f"process{'es' if jobs > 1 else ''}",
        file=sys.stderr,
        flush=True,
    )
    kind = knobs["tidescale"].kind if "tidescale" in knobs else ""
    runs = _sweep_runs(tasks, (requests, policy, pool, model, kind, warmup, baselines), jobs, knobs)
    rep = sweep.report(
        requests.name,
        len(requests),
        f"{policy.metadata.namespace}/{policy.metadata.name}",
        model,
        knobs,
        runs,
        [
            *requests.notes,
            *([f"the baselines configured from {args.baselines_from}"] if baselines is not None else []),
        ],
        args.samples,
        warmup,
    )
    if args.plot is not None:
        try:
            plot_frontiers(rep, args.plot)
        except ImportError:
            return _fail("--plot needs matplotlib: pip install matplotlib (the dev extra has it)")
        print(f"frontier: wrote {args.plot}", file=sys.stderr)
    if args.json:
        print(json.dumps(rep.render_json(), separators=(",", ":")))
    else:
        print(sweep.format_report(rep))
    return 0


COLOURS = {"tidescale": "#1f77b4", "hpa": "#d62728", "keda": "#2ca02c", "kpa": "#9467bd"}


def plot_frontiers(rep: sweep.Report, path: Path) -> None:
    """Every point of every controller, its lower frontier as a line, and the savings in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for name, runs in rep.runs.items():
        colour = COLOURS.get(name)
        pts = [r.point for r in runs]
        ax.scatter([p.violations for p in pts], [p.gpu_hours for p in pts], s=18, alpha=0.45, color=colour)
        front = rep.frontiers.get(name, ())
        label = name
        s = rep.savings.get(name)
        if s is not None and s.median is not None:
            label += f" (tidescale saves {s.median:+.0%}, {s.min:+.0%}…{s.max:+.0%})"
        elif s is not None:
            label += " (no violations in common with tidescale)"
        ax.plot(
            [p.violations for p in front],
            [p.gpu_hours for p in front],
            marker="o",
            lw=2.2 if name == "tidescale" else 1.4,
            color=colour,
            label=label,
        )
    ax.set_xlabel(f"SLO violations (requests, of {rep.requests:,})")
    ax.set_ylabel("GPU-hours (replicas)")
    violations = [r.point.violations for runs in rep.runs.values() for r in runs if r.point.violations > 0]
    if violations and max(violations) / min(violations) > 100:
        ax.set_xscale("log")
    counted = f", counted from {rep.measured_from_s:g} s" if rep.measured_from_s else ""
    ax.set_title(f"{rep.policy} on {rep.trace}{counted}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def controller_bench_command(args: argparse.Namespace) -> int:
    if args.e2e:
        if args.e2e_handler is None:
            return _fail("--e2e needs the local environment: run it through the `tidescale` command")
        return int(args.e2e_handler(args))
    if args.policies < 1 or args.rounds < 1 or args.runs < 1:
        return _fail("--policies, --rounds and --runs must be at least 1")
    runs = []
    for _ in range(args.runs):
        load = round(os.getloadavg()[0], 2)  # how busy the machine was as the run started
        result = bench.run(args.policies, _triggers(), args.rounds)
        runs.append(
            {
                "decisions_per_second": round(result.decisions_per_second, 1),
                "seconds": round(result.seconds, 4),
                "load_average": load,
            }
        )
    rates = [r["decisions_per_second"] for r in runs]
    out = {
        "decisions_per_second": round(statistics.median(rates), 1),
        "decisions_per_second_min": min(rates),
        "policies": result.policies,
        "decisions": result.decisions,
        "runs": runs,
        "peak_rss_mib": peak_rss_mib(),
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"{result.decisions} decisions for {result.policies} policies, {len(runs)} runs: "
            f"median {out['decisions_per_second']:,.0f} decisions/s (min {min(rates):,.0f}), "
            f"peak RSS {out['peak_rss_mib']} MiB"
        )
    return 0


def autoscaler_bench_command(args: argparse.Namespace) -> int:
    try:
        model = _service_model(args.service)
        file = read_policy_file(args.file)
        base = _requests(args.trace, model, args.window)
        multipliers = [float(m) for m in args.multipliers.split(",") if m.strip()]
    except InvalidSpec as e:
        return _fail(str(e))
    except ValueError as e:
        return _fail(str(e))
    runs = []
    triggers = _triggers()
    for m in multipliers:
        requests = multiply(base, m, copies=args.copies)
        bt = _replayed(run_backtest)(file, requests, model.for_trace(requests), triggers=triggers)
        if not args.json:
            print(f"--- rate multiplier {m:g}")
            print(format_table(bt))
        runs.append({"rate_multiplier": m, **bt.render_json()})
    if args.json:
        print(json.dumps({"benchmark": "autoscaler", "runs": runs}, separators=(",", ":")))
    return 0


def _local_endpoint(component: str) -> str | None:
    """An endpoint recorded by `tidescale local up` (read from its state file: this package may not import
    the composition root)."""
    state = Path(os.environ.get("TIDESCALE_STATE_DIR", ".tidescale/local")) / "state.json"
    try:
        return str(json.loads(state.read_text())["components"][component]["endpoint"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


def _event_source(args: argparse.Namespace) -> tuple[str, str] | None:
    """("kafka", bootstrap) or ("kubernetes", kubeconfig): flags first, then the environment, then the local
    environment's state; Kafka wins when both are found without a flag."""
    if args.kafka_bootstrap:
        return "kafka", args.kafka_bootstrap
    if args.kubeconfig:
        return "kubernetes", args.kubeconfig
    bootstrap = os.environ.get("TIDESCALE_KAFKA_BOOTSTRAP") or _local_endpoint("kafka")
    if bootstrap:
        return "kafka", bootstrap
    kubeconfig = os.environ.get("KUBECONFIG") or _local_endpoint("kubernetes")
    return ("kubernetes", kubeconfig) if kubeconfig else None


def event_line(record: dict[str, object]) -> str:
    """`14:02:07 ml/llm Deployment/llm 2 → 4 ScaleUp: GPU 140% of target 70%: 2 → 4 replicas` (UTC time)."""
    from autoscaler.controller.sinks.kube_events import reason_of

    time = str(record.get("time", ""))
    clock = time[11:19] if len(time) >= 19 else time
    replicas = record.get("replicas")
    change = f"{replicas.get('current')} → {replicas.get('desired')}" if isinstance(replicas, dict) else "?"
    reason = str(record.get("eventReason") or reason_of(record))
    count = record.get("count")
    repeat = f" (×{count})" if isinstance(count, int) and count > 1 else ""
    where = f"{record.get('policy')} {record.get('target')}"
    return f"{clock} {where} {change} {reason}: {record.get('reason')}{repeat}"


def events_watch_command(args: argparse.Namespace) -> int:
    from autoscaler.controller.sinks import kube_events
    from autoscaler.controller.sources import kafka_events
    from kernel.clock import Deadline
    from kernel.errors import TemporaryError

    if args.max_events is not None and args.max_events < 1:
        return _fail("--max-events must be at least 1")
    source = _event_source(args)
    if source is None:
        return _fail(
            "no event source: pass --kafka-bootstrap or --kubeconfig, set TIDESCALE_KAFKA_BOOTSTRAP or "
            "KUBECONFIG, or run `tidescale local up`"
        )
    kind, endpoint = source
    deadline = Deadline(args.timeout) if args.timeout is not None else None

    def stop() -> bool:
        return deadline is not None and deadline.expired()

    def ready() -> None:
        print(f"tidescale: watching scaling events from {kind} {endpoint}", file=sys.stderr, flush=True)

    def wanted(record: dict[str, object]) -> bool:
        namespace, _, name = str(record.get("policy", "")).partition("/")
        if args.namespace and namespace != args.namespace:
            return False
        if args.policy:
            return args.policy in (name, f"{namespace}/{name}")
        return True

    printed = 0
    try:
        if kind == "kafka":
            topic = args.topic or kafka_events.DEFAULT_TOPIC
            records = kafka_events.tail(
                endpoint, topic, from_beginning=args.from_beginning, on_ready=ready, should_stop=stop
            )
        else:
            from kubernetes import config

            api = config.new_client_from_config(config_file=endpoint)
            records = kube_events.watch(
                api, args.namespace, from_beginning=args.from_beginning, on_ready=ready, should_stop=stop
            )
        for record in records:
            if not wanted(record):
                continue
            text = json.dumps(record, ensure_ascii=False, separators=(",", ":")) if args.json else None
            print(text if text is not None else event_line(record), flush=True)
            printed += 1
            if args.max_events is not None and printed >= args.max_events:
                break
    except KeyboardInterrupt:
        return 0
    except TemporaryError as e:
        print(f"tidescale: {e}", file=sys.stderr)
        return 1
    if args.max_events is not None and printed < args.max_events:
        print(f"tidescale: {printed} of {args.max_events} events before the timeout", file=sys.stderr)
        return 1
    return 0
