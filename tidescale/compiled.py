"""The mypyc-compiled build of the autoscaler's pure decision core, and its activation at start-up.

`build()` compiles `MODULES` with mypyc into `<cache>/compiled/<key>/` once; `activate()` puts that build in
front of the pure-Python modules for this process. The key hashes the interpreter (cache tag, platform), the
mypy version, and the source of every module mypyc reads to compile `MODULES` — the modules themselves and
every repository module they import, transitively — so a build made from other sources is never found, and
the pure-Python modules run instead (with a reason that says to run `make setup`).

`python -m tidescale.compiled build` builds (or finds) the build and prints its folder; `make setup` runs it.

Activation only changes import state (`sys.path`, `autoscaler.__path__`); it must run before anything imports
one of `MODULES`, and it never builds (a build takes ~40 s of two cores).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kernel.artefacts import cache_dir
from kernel.errors import PermanentError

# The modules mypyc compiles: the decision core and the pure functions it calls per decision.
MODULES = (
    "autoscaler.decide",
    "autoscaler.triggers",
    "autoscaler.behavior",
    "autoscaler.forecast",
    "autoscaler.cron",
)

# The package that holds every compiled module (activation extends its `__path__`).
PACKAGE = "autoscaler"

# The repository's packages mypyc may read while compiling `MODULES` (the core's layers: no tidescale).
SOURCE_PACKAGES = ("autoscaler", "jobs", "kernel")

ROOT = Path(__file__).resolve().parent.parent

ENV = "TIDESCALE_COMPILED"

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Activation:
    """Whether this process runs the compiled core, and why (or why not)."""

    compiled: bool
    reason: str
    path: str | None = None


def _module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


# Import statements, found by a line scan: parsing every source would cost ~10 ms a file at each start-up.
# A match inside a string only adds a file to the key, which is harmless.
_IMPORT = re.compile(r"^[ \t]*import[ \t]+([^\n#;]+)", re.M)
_FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]+)", re.M)


def _imported(text: str, module: str, is_package: bool) -> Iterable[str]:
    """Every module name an import statement in `text` may load (a `from` import's names too)."""
    for m in _IMPORT.finditer(text):
        yield from (alias.split()[0] for alias in m.group(1).split(",") if alias.strip())
    for m in _FROM_IMPORT.finditer(text):
        source = m.group(1)
        level = len(source) - len(source.lstrip("."))
        if level:
            parts = module.split(".")
            keep = len(parts) - level + (1 if is_package else 0)
            base = ".".join(parts[:keep] + ([source[level:]] if source[level:] else []))
        else:
            base = source
        yield base
        names = m.group(2).strip("()").replace("\\", " ")
        yield from (f"{base}.{alias.split()[0]}" for alias in names.split(",") if alias.split())


def _read(root: Path, modules: Sequence[str]) -> dict[str, tuple[Path, bytes]]:
    """The repository modules mypyc reads to compile `modules` (them, their packages, what they import),
    with their bytes as read once: the key and the build use the same bytes even while files change."""
    found: dict[str, tuple[Path, bytes]] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in found or name.split(".")[0] not in SOURCE_PACKAGES:
            continue
        path = _module_file(root, name)
        if path is None:
            if name in modules:
                raise PermanentError(f"compiled module {name} has no source under {root}")
            continue  # a name imported from a module, not a module
        data = path.read_bytes()
        found[name] = (path, data)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += _imported(data.decode("utf-8"), name, path.name == "__init__.py")
    return dict(sorted(found.items()))


def sources(root: Path = ROOT, modules: Sequence[str] = MODULES) -> dict[str, Path]:
    """The repository modules mypyc reads to compile `modules`: them, their packages, what they import."""
    return {name: path for name, (path, _) in _read(root, modules).items()}


def _mypy_version() -> str:
    try:
        return importlib.metadata.version("mypy")
    except importlib.metadata.PackageNotFoundError as e:
        raise PermanentError("mypy is not installed (it compiles the core): run `make setup`") from e


def _key(read: dict[str, tuple[Path, bytes]]) -> str:
    h = hashlib.sha256()
    for part in (sys.implementation.cache_tag, sysconfig.get_platform(), _mypy_version(), *MODULES):
        h.update(f"{part}\0".encode())
    for name, (_, data) in read.items():
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def key(root: Path = ROOT) -> str:
    """The build's identity: interpreter, platform, mypy version, and the name and bytes of every source."""
    return _key(_read(root, MODULES))


def _builds(cache: Path | None) -> Path:
    return (cache if cache is not None else cache_dir()) / "compiled"


def build(cache: Path | None = None, root: Path = ROOT) -> Path:
    """The build folder for the current sources: found when built before, else compiled now (~40 s)."""
    if not (root / "pyproject.toml").is_file():
        raise PermanentError(
            f"building the compiled core needs a source checkout (no pyproject.toml in {root})"
        )
    read = _read(root, MODULES)
    k = _key(read)
    builds = _builds(cache)
    target = builds / k
    if (target / MANIFEST).is_file():
        return target
    builds.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mypyc-") as work_dir:
        work = Path(work_dir)
        # 1. the sources mypyc reads, and the repository's mypy configuration
        for path, data in read.values():
            copy = work / path.relative_to(root)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(data)
        shutil.copyfile(root / "pyproject.toml", work / "pyproject.toml")
        # 2. compile in place
        files = [str(Path(*m.split(".")).with_suffix(".py")) for m in MODULES]
        done = subprocess.run(
            [sys.executable, "-m", "mypyc", *files],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
            raise PermanentError(
                f"mypyc failed to compile {', '.join(MODULES)} (exit {done.returncode}):\n{tail}"
            )
        # 3. the shared library and the per-module shims, with a manifest, renamed into place at once
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=builds))
        try:
            staging.chmod(0o755)  # mkdtemp makes it private; the build is as readable as the cache
            libraries = sorted(work.glob("*.so")) + sorted((work / PACKAGE).glob("*.so"))
            shims = {p.name.split(".")[0] for p in (work / PACKAGE).glob("*.so")}
            missing = [m for m in MODULES if m.split(".")[-1] not in shims]
            if missing:
                raise PermanentError(f"mypyc built no extension for {', '.join(missing)} in {work}")
            for lib in libraries:
                copy = staging / lib.relative_to(work)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(lib, copy)
            manifest = {
                "key": k,
                "modules": list(MODULES),
                "sources": list(read),
                "python": sys.version,
                "cache_tag": sys.implementation.cache_tag,
                "platform": sysconfig.get_platform(),
                "mypy": _mypy_version(),
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            try:
                staging.rename(target)
            except OSError:
                # another build of the same key won the race: keep that one
                if not (target / MANIFEST).is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def activate(cache: Path | None = None) -> Activation:
    """Load `MODULES` from the build for the current sources, if there is one; otherwise say why not."""
    if os.environ.get(ENV) == "0":
        return Activation(False, f"{ENV}=0")
    loaded = [m for m in MODULES if m in sys.modules]
    if loaded:
        return Activation(False, f"already imported as Python: {', '.join(loaded)}")
    try:
        k = key()
    except (PermanentError, OSError, SyntaxError) as e:
        return Activation(False, f"cannot compute the build key: {e}")
    folder = _builds(cache) / k
    if not (folder / MANIFEST).is_file():
        return Activation(
            False, f"no compiled build for the current sources in {folder.parent}: run `make setup`"
        )
    import autoscaler

    if Path(autoscaler.__file__ or "").resolve().parent != ROOT / PACKAGE:
        return Activation(False, f"{PACKAGE} is imported from {autoscaler.__file__}, not from {ROOT}")
    # The shims import the shared library by its top-level name; appended, it shadows nothing.
    sys.path.append(str(folder))
    autoscaler.__path__.insert(0, str(folder / PACKAGE))
    return Activation(True, f"compiled build {k[:12]}", str(folder))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["build"]:
        try:
            print(build())
        except PermanentError as e:
            print(f"tidescale.compiled: {e}", file=sys.stderr)
            return 1
        return 0
    if args == ["key"]:
        print(key())
        return 0
    print("usage: python -m tidescale.compiled build|key", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
