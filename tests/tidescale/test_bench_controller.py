"""`tidescale bench controller --e2e` on a small scale: it runs the real environment and controller and
reports what the issue asks for (the numbers themselves are measured by hand; see docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_the_e2e_controller_benchmark_times_every_probe_and_reports_the_sweep(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tidescale",
            "bench",
            "controller",
            "--e2e",
            "--policies",
            "6",
            "--probes",
            "2",
            "--sync-seconds",
            "2",
            "--state-dir",
            str(tmp_path / "env"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["policies"] == 6 and result["ready_policies"] == 6
    assert result["reaction_seconds"]["samples"] == 2 and result["reaction_seconds"]["missed"] == 0
    assert (
        result["reaction_seconds"]["p50"] > 0
        and result["reaction_seconds"]["p99"] >= result["reaction_seconds"]["p50"]
    )
    assert result["sweeps"] >= 1 and result["reconcile_seconds_per_cycle"] > 0
    assert result["controller_peak_rss_mib"] > 0
