"""The chart's tests share these: where the chart lives and every document `helm template` renders (the
`helm` fixture is in conftest.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "tidescale"


def render_all(helm: Path, *options: str) -> list[dict[str, Any]]:
    """Every document of `helm template demo CHART --namespace ops OPTIONS…`."""
    result = subprocess.run(
        [str(helm), "template", "demo", str(CHART), "--namespace", "ops", *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]
