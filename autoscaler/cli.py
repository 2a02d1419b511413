"""The autoscaler's commands and benchmarks in the `tidescale` CLI.

`add_commands` registers `tidescale policy validate FILE…` (exit 2 on any invalid file; each problem on one
line as `file:LINE: field: reason`) and `tidescale policy backtest FILE --trace CSV [--rate-multiplier X]
[--json]` (the policy and the HPA, KEDA and KPA baselines replayed on the trace; with `--json` the last line
is one JSON object). `add_benchmarks` registers `tidescale bench controller --policies N --json` (decisions
per second of the pure decision core; `--e2e` is the controller benchmark of the controller issue) and
`tidescale bench autoscaler` (the backtest table at several rate multipliers). Handlers take the parsed
arguments and return the exit code: 0 done, 1 a run failed, 2 invalid input.

The shell of this package's pure modules: it reads the files named on the command line and prints; it
opens no network connection and starts no process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from autoscaler import bench, crd
from autoscaler.backtest import NoPolicy, format_table, run_backtest, to_json_line
from autoscaler.policy import read_policy_file
from autoscaler.service_model import ServiceModel
from autoscaler.trace import SYNTHETIC, Requests, load_trace, multiply, synthetic
from kernel.errors import InvalidSpec

DEFAULT_TRACE = Path("../shared/traces/azure-llm-2023/AzureLLMInferenceTrace_code.csv")
DEFAULT_POLICY = Path("examples/policies/llm-inference.yaml")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = sub.add_parser("policy", help="scaling policies: validate them, backtest them on a trace")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")

    v = policy_sub.add_parser("validate", help="check ScalingPolicy/NodePool files; exit 2 on any error")
    v.add_argument(
        "files", type=Path, nargs="+", metavar="FILE", help="policy files (YAML, several documents)"
    )
    v.set_defaults(func=validate_command)

    b = policy_sub.add_parser(
        "backtest", help="replay a trace through the policy and the HPA, KEDA and KPA baselines"
    )
    b.add_argument(
        "file", type=Path, metavar="FILE", help="policy file (the first ScalingPolicy, its NodePool)"
    )
    _trace_arguments(b)
    b.add_argument("--policy", default=None, help="the ScalingPolicy to replay when the file has several")
    b.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    b.set_defaults(func=backtest_command)

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


def add_benchmarks(bench_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = bench_sub.add_parser("controller", help="decisions per second of the pure decision core (in process)")
    c.add_argument("--policies", type=int, default=1000, help="number of distinct policies (default 1000)")
    c.add_argument("--rounds", type=int, default=20, help="decisions per policy (default 20)")
    c.add_argument(
        "--e2e", action="store_true", help="the end-to-end controller benchmark (the controller issue)"
    )
    c.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    c.set_defaults(func=controller_bench_command)

    a = bench_sub.add_parser("autoscaler", help="the policy backtest at several rate multipliers")
    a.add_argument(
        "--file", type=Path, default=DEFAULT_POLICY, help=f"policy file (default {DEFAULT_POLICY})"
    )
    a.add_argument("--multipliers", default="10,30", help="comma-separated rate multipliers (default 10,30)")
    _trace_arguments(a, multiplier=False)
    a.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    a.set_defaults(func=autoscaler_bench_command)


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
        "--service",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a service-model field, e.g. cold_start_s=30 (repeatable)",
    )


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


def _requests(spec: str, model: ServiceModel) -> Requests:
    if spec.startswith("synthetic:"):
        parts = spec.split(":")
        seed = int(parts[2]) if len(parts) > 2 else 1
        return synthetic(parts[1], seed, model.mean_prompt_tokens, model.mean_generated_tokens)
    return load_trace(Path(spec), model.mean_prompt_tokens, model.mean_generated_tokens)


def backtest_command(args: argparse.Namespace) -> int:
    try:
        model = _service_model(args.service)
        file = read_policy_file(args.file)
        requests = multiply(_requests(args.trace, model), args.rate_multiplier)
        bt = run_backtest(file, requests, model, policy_name=args.policy)
    except InvalidSpec as e:
        return _fail(str(e))
    except (NoPolicy, ValueError, KeyError) as e:
        return _fail(str(e))
    if args.json:
        print(to_json_line(bt))
    else:
        print(format_table(bt))
    return 0


def controller_bench_command(args: argparse.Namespace) -> int:
    if args.e2e:
        return _fail("--e2e needs the controller (issue 6)")
    if args.policies < 1 or args.rounds < 1:
        return _fail("--policies and --rounds must be at least 1")
    from autoscaler import decide as core

    result = bench.run(args.policies, args.rounds)
    out = {
        "decisions_per_second": round(result.decisions_per_second, 1),
        "policies": result.policies,
        "decisions": result.decisions,
        "seconds": round(result.seconds, 4),
        # the mypyc build of the core (activated by the `tidescale` entry point) loads from a shared library
        "compiled": not (core.__file__ or "").endswith(".py"),
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"{result.decisions} decisions for {result.policies} policies in {result.seconds:.3f} s: "
            f"{result.decisions_per_second:,.0f} decisions/s"
        )
    return 0


def autoscaler_bench_command(args: argparse.Namespace) -> int:
    try:
        model = _service_model(args.service)
        file = read_policy_file(args.file)
        base = _requests(args.trace, model)
        multipliers = [float(m) for m in args.multipliers.split(",") if m.strip()]
    except InvalidSpec as e:
        return _fail(str(e))
    except ValueError as e:
        return _fail(str(e))
    runs = []
    for m in multipliers:
        bt = run_backtest(file, multiply(base, m), model)
        if not args.json:
            print(f"--- rate multiplier {m:g}")
            print(format_table(bt))
        runs.append({"rate_multiplier": m, **bt.render_json()})
    if args.json:
        print(json.dumps({"benchmark": "autoscaler", "runs": runs}, separators=(",", ":")))
    return 0
