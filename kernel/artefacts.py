"""Where `make setup` put the downloaded artefacts: the cache directory, its jars and binaries.

Read-only lookups; a missing artefact is a `PermanentError` that says how to get it.
"""

from __future__ import annotations

import os
from pathlib import Path

from kernel.errors import PermanentError

# The jar sets resolved from deps/maven/<name>/pom.xml.
JAR_SETS = ("kafka", "flink", "spark")


def cache_dir() -> Path:
    """The one cache directory the Makefile names (`TIDESCALE_CACHE`, default ~/.cache/tidescale)."""
    configured = os.environ.get("TIDESCALE_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "tidescale"


def jars(name: str) -> list[Path]:
    """Every jar of one set, sorted; raises if the set was never fetched."""
    if name not in JAR_SETS:
        raise PermanentError(f"no jar set {name!r} (known: {', '.join(JAR_SETS)})")
    folder = cache_dir() / "jars" / name
    found = sorted(folder.glob("*.jar"))
    if not found:
        raise PermanentError(f"jars for {name} are missing in {folder}: run `make setup`")
    return found


def prometheus_binary() -> Path:
    """Prometheus from Debian's package, unpacked into the cache (or `TIDESCALE_PROMETHEUS`)."""
    configured = os.environ.get("TIDESCALE_PROMETHEUS")
    path = (
        Path(configured) if configured else cache_dir() / "deb" / "prometheus" / "usr" / "bin" / "prometheus"
    )
    if not path.is_file() or not os.access(path, os.X_OK):
        raise PermanentError(f"prometheus binary not found at {path}: run `make setup`")
    return path


def java_binary() -> Path:
    """`$JAVA_HOME/bin/java`, else the first `java` on PATH."""
    home = os.environ.get("JAVA_HOME")
    candidates = [Path(home) / "bin" / "java"] if home else []
    candidates += [Path(p) / "java" for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise PermanentError("java not found (set JAVA_HOME or put java 17+ on PATH)")


def cached_binary(name: str) -> Path:
    """A binary `make setup` built from a Go module into `<cache>/bin` (etcd, kube-apiserver, kwok, helm…)."""
    path = cache_dir() / "bin" / name
    if not path.is_file() or not os.access(path, os.X_OK):
        raise PermanentError(
            f"{name} not found at {path}: run `make setup` (builds it from the Go module proxy)"
        )
    return path
