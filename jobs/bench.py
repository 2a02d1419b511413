"""`tidescale bench scheduler`: the FGD paper's experiment on the openb trace, timed and compared.

The shell around `jobs.simulator`: reads the node and pod lists, runs one simulation per seed
(seeds 42, 43, ... as in the paper), reads the paper's metric at the requested arrival level, times
the decisions with the system clock, reads the peak RSS, and reports the published medians beside our
figures (../shared/reference/scheduling.md §5.7-5.8). `synthetic_cluster` builds a bigger cluster from
the trace's node shapes for the scale benchmark.

`run_cycle_bench` times the live scheduler on the same experiment (`jobs.replay`: N submitted pods
pending at once, one `schedule_cycle`) and compares its placements with the simulator's.
"""

from __future__ import annotations

import math
import re
import resource
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jobs.fgd import MILLI, TypicalTasks
from jobs.openb import NodeList, read_nodes, read_pods
from jobs.replay import replay, submission
from jobs.scorers import policy_factory
from jobs.simulator import DEFAULT_TUNE, FIRST_SEED, read_level, simulate
from kernel.clock import SYSTEM_CLOCK, Clock

REFERENCE = "../shared/reference/scheduling.md §5.7-5.8 (median of seeds 42-51)"
PAPER_NAMES = {
    "random": "Random",
    "dotprod": "DotProd",
    "gpuclustering": "GpuClustering",
    "gpupacking": "GpuPacking",
    "bestfit": "BestFit",
    "fgd": "FGD",
}
_POLICIES = ("random", "dotprod", "gpuclustering", "gpupacking", "bestfit", "fgd")


def _row(*values: float) -> dict[str, float]:
    return dict(zip(_POLICIES, values, strict=True))


# Unallocated GPU %, median of 10 seeds, 100 % arrival (§5.8), and the default trace by arrival (§5.7).
PUBLISHED_AT_100: dict[str, dict[str, float]] = {
    "default": _row(13.75, 9.45, 8.42, 8.20, 7.09, 4.77),
    "gpushare40": _row(15.04, 10.66, 10.18, 10.19, 8.53, 6.05),
    "gpushare60": _row(17.22, 13.17, 13.03, 12.75, 10.91, 8.70),
    "gpushare80": _row(19.35, 15.89, 15.45, 15.28, 13.27, 10.91),
    "gpushare100": _row(21.07, 17.93, 17.70, 17.78, 15.40, 13.36),
    "cpu050": _row(11.02, 6.94, 6.52, 6.47, 6.42, 5.00),
    "cpu100": _row(12.56, 8.22, 7.46, 7.45, 6.72, 4.79),
    "cpu200": _row(17.01, 12.24, 10.25, 9.87, 7.85, 5.18),
    "multigpu20": _row(13.16, 8.19, 6.62, 6.49, 6.27, 4.47),
    "multigpu30": _row(13.43, 6.98, 5.45, 5.23, 5.47, 3.61),
}
PUBLISHED_DEFAULT: dict[int, dict[str, float]] = {
    95: _row(14.32, 9.48, 8.47, 8.23, 7.14, 5.09),
    100: PUBLISHED_AT_100["default"],
    105: _row(13.45, 9.39, 8.38, 8.15, 7.05, 4.70),
    110: _row(13.23, 9.37, 8.34, 8.12, 7.02, 4.68),
    120: _row(12.84, 9.29, 8.27, 8.05, 6.96, 4.63),
    130: _row(12.62, 9.20, 8.21, 7.94, 6.89, 4.60),
}


def variant_of(pods_path: Path) -> str:
    m = re.fullmatch(r"openb_pod_list_(\w+)\.csv", pods_path.name)
    return m.group(1) if m else pods_path.stem


def published(variant: str, level: int, policy: str) -> float | None:
    table = (
        PUBLISHED_DEFAULT
        if variant == "default"
        else ({100: PUBLISHED_AT_100[variant]} if variant in PUBLISHED_AT_100 else {})
    )
    return table.get(level, {}).get(policy)


def synthetic_cluster(nodes: NodeList, count: int) -> NodeList:
    """`count` nodes cycling through the trace's GPU node shapes (same mix, bigger cluster)."""
    gpu = np.flatnonzero(nodes.gpus > 0)
    pick = gpu[np.arange(count) % len(gpu)]
    return NodeList(
        names=tuple(f"synthetic-node-{i:05d}" for i in range(count)),
        cpu_milli=nodes.cpu_milli[pick],
        memory_mib=nodes.memory_mib[pick],
        gpus=nodes.gpus[pick],
        models=tuple(nodes.models[i] for i in pick.tolist()),
    )


def level_of(arrival: float) -> int:
    """An arrival given as a ratio (1.0) or a percentage (100) as the integer level (100)."""
    return round(arrival * 100) if arrival <= 5 else round(arrival)


@dataclass(frozen=True)
class BenchConfig:
    nodes_path: Path
    pods_path: Path
    policy: str = "tidescale"
    arrival: float = 1.0
    seeds: int = 10
    first_seed: int = FIRST_SEED
    tune: float = DEFAULT_TUNE
    report_arrivals: Sequence[float] = field(default_factory=tuple)
    synthetic_nodes: int = 0
    limit_pods: int = 0


def _stats(values: list[float], digits: int = 2) -> dict[str, float]:
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "mean": float("nan")}
    return {
        "median": round(statistics.median(clean), digits),
        "min": round(min(clean), digits),
        "max": round(max(clean), digits),
        "mean": round(statistics.fmean(clean), digits),
    }


def peak_rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / (1024 * 1024) if sys.platform == "darwin" else kib / 1024, 1)


def run_bench(cfg: BenchConfig, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """Run every seed and summarise; the returned dict is the JSON the CLI prints."""
    nodes = read_nodes(cfg.nodes_path)
    pods = read_pods(cfg.pods_path)
    nodes = _gpu_nodes(nodes)
    if cfg.synthetic_nodes:
        nodes = synthetic_cluster(nodes, cfg.synthetic_nodes)
    level = level_of(cfg.arrival)
    levels = sorted({level, *(level_of(a) for a in cfg.report_arrivals)})
    tune = max(cfg.tune, max(levels) / 100.0)
    variant = variant_of(cfg.pods_path)
    factory = policy_factory(cfg.policy)
    per_seed: list[dict[str, Any]] = []
    for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
        started = clock.monotonic()
        run = simulate(nodes, pods, factory, seed, tune=tune, limit=cfg.limit_pods or None)
        elapsed = max(clock.monotonic() - started, 1e-9)
        readings = {lv: read_level(run.events, nodes.total_gpu_milli, lv) for lv in levels}
        per_seed.append(
            {
                "seed": seed,
                "submitted_pods": run.pods,
                "failed_pods": int((~run.events.placed).sum()),
                "node_classes": run.events.classes_seen,
                "decisions_per_second": round(run.pods / elapsed, 1),
                "levels": {lv: (r.unallocated_pct, r.fragmentation_pct) for lv, r in readings.items()},
            }
        )

    def summary(lv: int) -> dict[str, Any]:
        un = [s["levels"][lv][0] for s in per_seed]
        fr = [s["levels"][lv][1] for s in per_seed]
        anchor = published(variant, lv, cfg.policy)
        fgd = published(variant, lv, "fgd")
        return {
            "unallocated_gpu_pct": _stats(un),
            "fragmentation_pct": _stats(fr),
            "published_median": anchor,
            "published_fgd_median": fgd,
        }

    main = summary(level)
    result: dict[str, Any] = {
        "benchmark": "scheduler",
        "policy": cfg.policy,
        "variant": variant,
        "nodes": len(nodes),
        "gpus": int(nodes.gpus.sum()),
        "pods": len(pods),
        "submitted_pods": _stats([float(s["submitted_pods"]) for s in per_seed], 0),
        "arrival": level / 100.0,
        "tune": tune,
        "seeds": cfg.seeds,
        "seed_list": [s["seed"] for s in per_seed],
        "unallocated_gpu_pct": main["unallocated_gpu_pct"],
        "fragmentation_pct": main["fragmentation_pct"],
        "decisions_per_second": _stats([s["decisions_per_second"] for s in per_seed], 1),
        "peak_rss_mib": peak_rss_mib(),
        "anchor": {
            "source": REFERENCE,
            "published_median": main["published_median"],
            "published_fgd_median": main["published_fgd_median"],
        },
        "by_arrival": {f"{lv / 100:g}": summary(lv) for lv in levels},
        "per_seed": [
            {k: v for k, v in s.items() if k != "levels"}
            | {"unallocated_gpu_pct": s["levels"][level][0], "fragmentation_pct": s["levels"][level][1]}
            for s in per_seed
        ],
        "trace": {"nodes": str(cfg.nodes_path), "pods": str(cfg.pods_path)},
    }
    if cfg.synthetic_nodes:
        result["synthetic_nodes"] = cfg.synthetic_nodes
    if cfg.limit_pods:
        result["limit_pods"] = cfg.limit_pods
    return result


@dataclass(frozen=True)
class CycleBenchConfig:
    nodes_path: Path
    pods_path: Path
    policy: str = "tidescale"  # fgd or tidescale
    pods: int = 2000  # submitted pods pending in the one cycle; 0: all (the workload tuned to `tune`)
    seed: int = FIRST_SEED
    tune: float = DEFAULT_TUNE
    learned: bool = False  # learn the typical tasks from the pending pods (else the simulator's)
    compare: bool = True  # also run the simulator on the same pods and compare placements


def run_cycle_bench(cfg: CycleBenchConfig, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """The live scheduler's `schedule_cycle` on the openb experiment: decisions/s for N pending pods
    and, beside the simulator's, where they went and the unallocated GPU % (at 100 % arrival: None
    unless the N pods reach it; `pods=0` submits the whole tuned workload)."""
    nodes = _gpu_nodes(read_nodes(cfg.nodes_path))
    pods = read_pods(cfg.pods_path)
    tasks = TypicalTasks.from_arrays(pods.cpu_milli, pods.gpu_milli, pods.num_gpu, pods.gpu_spec)
    sub = submission(nodes, pods, cfg.seed, cfg.tune, cfg.pods or None)
    started = clock.monotonic()
    live = replay(sub, cfg.policy, None if cfg.learned else tasks)
    elapsed = max(clock.monotonic() - started, 1e-9)
    gpu = nodes.total_gpu_milli

    def allocated(used: Any) -> float:
        return round(100.0 * float(used[-1]) / gpu, 2) if len(used) else 0.0

    result: dict[str, Any] = {
        "benchmark": "scheduler-cycle",
        "policy": cfg.policy,
        "nodes": len(nodes),
        "gpus": gpu // MILLI,
        "pending_pods": len(sub.pods),
        "seed": cfg.seed,
        "typical_tasks": "learned from the pending pods" if cfg.learned else "the simulator's (trace pods)",
        "cycle_seconds": round(elapsed, 3),
        "decisions_per_second": round(len(sub.pods) / elapsed, 1),
        "placed": int(live.events.placed.sum()),
        "allocated_gpu_pct": allocated(live.events.used_milli),
        "unallocated_gpu_pct_at_100": _number(read_level(live.events, gpu, 100).unallocated_pct),
        "snapshot_node_classes": live.events.classes_seen,
        "peak_rss_mib": peak_rss_mib(),
    }
    if cfg.compare:
        started = clock.monotonic()
        sim = simulate(nodes, pods, policy_factory(cfg.policy), cfg.seed, cfg.tune, tasks, cfg.pods or None)
        sim_elapsed = max(clock.monotonic() - started, 1e-9)
        assert sim.events.node is not None
        same = int((sim.events.node == live.node).sum())
        result["simulator"] = {
            "seconds": round(sim_elapsed, 3),
            "decisions_per_second": round(sim.pods / sim_elapsed, 1),
            "placed": int(sim.events.placed.sum()),
            "allocated_gpu_pct": allocated(sim.events.used_milli),
            "unallocated_gpu_pct_at_100": _number(read_level(sim.events, gpu, 100).unallocated_pct),
            "same_node_pct": round(100.0 * same / max(1, len(sub.pods)), 2),
        }
    return result


def _number(v: float) -> float | None:
    """A level no event reached (NaN) as None, so the result is strict JSON."""
    return None if math.isnan(v) else v


def _gpu_nodes(nodes: NodeList) -> NodeList:
    """The paper simulates GPU nodes only (CPU-only pods then land on GPU nodes)."""
    keep = np.flatnonzero(nodes.gpus > 0)
    if len(keep) == len(nodes):
        return nodes
    return NodeList(
        tuple(nodes.names[i] for i in keep.tolist()),
        nodes.cpu_milli[keep],
        nodes.memory_mib[keep],
        nodes.gpus[keep],
        tuple(nodes.models[i] for i in keep.tolist()),
    )


def _fmt(v: float | None) -> str:
    return "—" if v is None or math.isnan(v) else f"{v:.2f}"


def format_table(result: dict[str, Any]) -> str:
    name = PAPER_NAMES.get(result["policy"], result["policy"])
    lines = [
        f"scheduler benchmark: policy {name}, trace {result['variant']} ({result['nodes']} nodes,"
        f" {result['gpus']} GPUs, {result['pods']} pods), {result['seeds']} seed(s), tune {result['tune']:g}",
        "",
        f"{'arrival':>8}  {'unallocated GPU % median [min-max]':<36}{'fragmentation %':>16}"
        "  published: this / FGD",
    ]
    for lv, s in result["by_arrival"].items():
        u = s["unallocated_gpu_pct"]
        spread = f"{_fmt(u['median'])} [{_fmt(u['min'])}-{_fmt(u['max'])}]"
        frag = _fmt(s["fragmentation_pct"]["median"])
        paper = f"{_fmt(s['published_median'])} / {_fmt(s['published_fgd_median'])}"
        lines.append(f"{float(lv) * 100:>7.0f}%  {spread:<36}{frag:>16}  {paper}")
    d = result["decisions_per_second"]
    lines += [
        "",
        f"decisions/s median {d['median']:,.0f} (min {d['min']:,.0f}),"
        f" peak RSS {result['peak_rss_mib']:.0f} MiB,"
        f" submitted pods median {result['submitted_pods']['median']:,.0f}",
        f"anchor: {REFERENCE}",
    ]
    return "\n".join(lines)
