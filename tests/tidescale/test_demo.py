"""`tidescale demo` end to end, as `make demo` runs it: the whole system scales out and back in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_the_demo_scales_the_inference_service_out_and_in_through_the_scheduler(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tidescale",
            "demo",
            "--requests",
            "400",
            "--state-dir",
            str(tmp_path / "demo"),
        ],
        check=False,
        # as a user runs it: not with the flags earlier PyFlink tests left in this process's environment
        env={k: v for k, v in os.environ.items() if not k.startswith("PYFLINK_")},
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-4000:]
    assert "ScaleUp" in out and "ScaleDown" in out, out[-4000:]
    assert "slices 0:1" in out  # two replicas share one GPU on distinct slots
    assert "replicas 8  bound 8" in out  # every scaled-out replica bound by the tidescale scheduler
    assert "stopping the environment (prometheus, exporter, kafka, kubernetes)" in out
