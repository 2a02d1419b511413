import dataclasses
import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from autoscaler import bench
from autoscaler.decide import PolicyState, decide
from autoscaler.triggers import Observations
from tidescale import compiled

ROOT = Path(__file__).resolve().parents[2]


def decisions(n: int, rounds: int) -> list[dict[str, Any]]:
    """The controller benchmark's loop (`autoscaler.bench.run`), recording each decision instead of timing."""
    ps = bench.policies(n)
    states: list[PolicyState | None] = [None] * n
    replicas = [max(1, p.spec.min_replicas) for p in ps]
    out = []
    for k in range(rounds):
        now = bench.EPOCH + timedelta(seconds=2 * k)
        for i, p in enumerate(ps):
            readings = bench._readings(p, k, i, now.timestamp())
            d = decide(p, Observations(replicas[i], replicas[i], readings), states[i], now)
            states[i] = d.state
            replicas[i] = d.desired
            out.append(
                {
                    "desired": d.desired,
                    "rule": d.rule,
                    "reason": d.reason,
                    "node_pools": [dataclasses.asdict(c) for c in d.node_pools],
                }
            )
    as_json: list[dict[str, Any]] = json.loads(json.dumps(out))  # as the subprocess's output reads
    return as_json


def _python(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter in the repository root (activation changes import state, so never in this one)."""
    environment = {k: v for k, v in os.environ.items() if k != compiled.ENV} | env
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _copy_sources(to: Path) -> None:
    for package in compiled.SOURCE_PACKAGES:
        shutil.copytree(ROOT / package, to / package, ignore=shutil.ignore_patterns("__pycache__", "*.so"))


def test_the_key_is_the_same_for_a_copy_of_the_same_sources(tmp_path: Path) -> None:
    _copy_sources(tmp_path)
    assert compiled.key(tmp_path) == compiled.key(ROOT)


@pytest.mark.parametrize(
    ("changed", "changes_key"),
    [
        ("autoscaler/cron.py", True),  # a compiled module
        ("autoscaler/policy.py", True),  # a module the compiled ones import: mypyc compiled against its types
        ("jobs/snapshot.py", True),  # imported by autoscaler.decide
        ("autoscaler/__init__.py", True),  # the package mypy reads first
        ("autoscaler/exporter/simulator.py", False),  # nothing the core imports
    ],
    ids=["compiled-module", "imported-model", "imported-other-package", "package-init", "unrelated-module"],
)
def test_the_key_changes_exactly_when_a_source_mypyc_reads_changes(
    tmp_path: Path, changed: str, changes_key: bool
) -> None:
    _copy_sources(tmp_path)
    before = compiled.key(tmp_path)
    with (tmp_path / changed).open("a", encoding="utf-8") as f:
        f.write("\n# changed\n")
    assert (compiled.key(tmp_path) != before) is changes_key


def test_the_sources_of_the_key_are_the_compiled_modules_and_what_they_import() -> None:
    names = set(compiled.sources())
    assert set(compiled.MODULES) <= names
    assert {
        "autoscaler",
        "autoscaler.policy",
        "autoscaler.nodepool",
        "jobs.snapshot",
        "kernel.errors",
    } <= names
    assert not any(n.startswith(("tidescale", "streaming", "autoscaler.controller")) for n in names)


def test_activation_is_refused_when_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(compiled.ENV, "0")
    activation = compiled.activate()
    assert activation == compiled.Activation(False, f"{compiled.ENV}=0")


def test_activation_is_refused_once_a_core_module_was_imported_as_python() -> None:
    # this module imported autoscaler.decide (pure Python) above
    activation = compiled.activate()
    assert not activation.compiled
    assert "autoscaler.decide" in activation.reason
    assert not any("/compiled/" in p for p in sys.path)


@pytest.mark.integration
def test_activation_is_refused_when_the_sources_have_no_build(tmp_path: Path) -> None:
    done = _python(
        "import json, sys\n"
        "from tidescale import compiled\n"
        "a = compiled.activate()\n"
        "import autoscaler.decide\n"
        "print(json.dumps({'compiled': a.compiled, 'reason': a.reason, 'path': a.path,"
        " 'file': autoscaler.decide.__file__}))\n",
        TIDESCALE_CACHE=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["compiled"] is False
    assert "make setup" in out["reason"]
    assert out["path"] is None
    assert out["file"].endswith("decide.py")


@pytest.mark.integration
def test_the_compiled_core_decides_exactly_as_the_python_core() -> None:
    folder = compiled.build()  # after `make setup`, found in the cache
    done = _python(
        "import json, sys\n"
        "from tidescale import compiled\n"
        "a = compiled.activate()\n"
        "assert a.compiled, a.reason\n"
        "from tests.tidescale.test_compiled import decisions\n"
        "import autoscaler.decide\n"
        "files = {m: sys.modules[m].__file__ for m in compiled.MODULES}\n"
        "print(json.dumps({'path': a.path, 'files': files,"
        " 'decide': type(autoscaler.decide.decide).__name__, 'decisions': decisions(300, 20)}))\n"
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    # it ran compiled code: every module from the build's shared objects, `decide` a C function
    assert out["path"] == str(folder)
    assert sorted(out["files"]) == sorted(compiled.MODULES)
    for name, file in out["files"].items():
        assert file.startswith(str(folder)) and file.endswith(".so"), (name, file)
    assert out["decide"] == "builtin_function_or_method"
    assert type(decide).__name__ == "function"  # and this process the Python one
    expected = decisions(300, 20)
    assert len(out["decisions"]) == len(expected) == 6000
    assert out["decisions"] == expected


@pytest.mark.integration
def test_the_core_unit_tests_pass_against_the_compiled_build() -> None:
    compiled.build()
    done = _python(
        "import sys\n"
        "from tidescale import compiled\n"
        "a = compiled.activate()\n"
        "assert a.compiled, a.reason\n"
        "import pytest\n"
        "code = pytest.main(['tests/autoscaler/test_decide.py', 'tests/autoscaler/test_behavior.py',"
        " 'tests/autoscaler/test_triggers.py', 'tests/autoscaler/test_forecast.py', '-q'])\n"
        "files = [sys.modules[m].__file__ or '' for m in compiled.MODULES]\n"
        "assert all(f.endswith('.so') for f in files), files\n"
        "sys.exit(int(code))\n"
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert " passed" in done.stdout
