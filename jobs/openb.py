"""The openb trace format (Alibaba cluster-trace-gpu-v2023): node and pod lists as column arrays.

`parse_nodes` / `parse_pods` are pure (text in, arrays out); `read_nodes` / `read_pods` are the thin
file-reading shell around them. Nothing here schedules; the simulator and the benchmark consume the
arrays. Units follow the trace: CPU in thousandths of a core, memory in MiB, GPU share in thousandths
of one GPU (per requested GPU; values above 1000 are clamped, as the paper's converter does).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from kernel.errors import InvalidSpec

MILLI = 1000

NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")


@dataclass(frozen=True)
class NodeList:
    """One row per node, in file order."""

    names: tuple[str, ...]
    cpu_milli: NDArray[np.int64]
    memory_mib: NDArray[np.int64]
    gpus: NDArray[np.int64]
    models: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def total_gpu_milli(self) -> int:
        return int(self.gpus.sum()) * MILLI


@dataclass(frozen=True)
class PodList:
    """One row per pod, in file order. `gpu_milli` is per requested GPU; 0 for CPU-only pods."""

    names: tuple[str, ...]
    cpu_milli: NDArray[np.int64]
    memory_mib: NDArray[np.int64]
    num_gpu: NDArray[np.int64]
    gpu_milli: NDArray[np.int64]
    gpu_spec: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def total_gpu_milli(self) -> int:
        return int((self.num_gpu * self.gpu_milli).sum())

    def take(self, index: NDArray[np.int64]) -> PodList:
        """The pods at `index`, in that order (rows may repeat)."""
        idx = [int(i) for i in index]
        return PodList(
            names=tuple(self.names[i] for i in idx),
            cpu_milli=self.cpu_milli[index],
            memory_mib=self.memory_mib[index],
            num_gpu=self.num_gpu[index],
            gpu_milli=self.gpu_milli[index],
            gpu_spec=tuple(self.gpu_spec[i] for i in idx),
        )


def _rows(text: str, source: str, required: tuple[str, ...]) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    header = tuple(reader.fieldnames or ())
    missing = [c for c in required if c not in header]
    if missing:
        raise InvalidSpec(
            source, [f"1: header: missing column(s) {', '.join(missing)} (have {', '.join(header)})"]
        )
    return list(reader)


def _int(row: dict[str, str], column: str, source: str, line: int) -> int:
    value = (row.get(column) or "").strip()
    try:
        return int(value)
    except ValueError:
        raise InvalidSpec(source, [f"{line}: {column}: not an integer: {value!r}"]) from None


def parse_nodes(text: str, source: str = "<nodes>") -> NodeList:
    rows = _rows(text, source, NODE_COLUMNS)
    names: list[str] = []
    cpu: list[int] = []
    mem: list[int] = []
    gpus: list[int] = []
    models: list[str] = []
    for line, row in enumerate(rows, start=2):
        names.append(row["sn"])
        cpu.append(_int(row, "cpu_milli", source, line))
        mem.append(_int(row, "memory_mib", source, line))
        gpus.append(_int(row, "gpu", source, line))
        models.append((row.get("model") or "").strip())
    return NodeList(
        names=tuple(names),
        cpu_milli=np.asarray(cpu, dtype=np.int64),
        memory_mib=np.asarray(mem, dtype=np.int64),
        gpus=np.asarray(gpus, dtype=np.int64),
        models=tuple(models),
    )


def parse_pods(text: str, source: str = "<pods>") -> PodList:
    rows = _rows(text, source, POD_COLUMNS)
    names: list[str] = []
    cpu: list[int] = []
    mem: list[int] = []
    num: list[int] = []
    milli: list[int] = []
    spec: list[str] = []
    for line, row in enumerate(rows, start=2):
        n = _int(row, "num_gpu", source, line)
        m = _int(row, "gpu_milli", source, line)
        if n < 0 or m < 0:
            raise InvalidSpec(source, [f"{line}: num_gpu/gpu_milli: must not be negative"])
        names.append(row["name"])
        cpu.append(_int(row, "cpu_milli", source, line))
        mem.append(_int(row, "memory_mib", source, line))
        num.append(n)
        # The paper's converter clamps per-GPU shares above one GPU, and a pod without GPUs has none.
        milli.append(min(m, MILLI) if n > 0 else 0)
        spec.append((row.get("gpu_spec") or "").strip())
    return PodList(
        names=tuple(names),
        cpu_milli=np.asarray(cpu, dtype=np.int64),
        memory_mib=np.asarray(mem, dtype=np.int64),
        num_gpu=np.asarray(num, dtype=np.int64),
        gpu_milli=np.asarray(milli, dtype=np.int64),
        gpu_spec=tuple(spec),
    )


def _read(path: Path) -> str:
    if not path.is_file():
        raise InvalidSpec(
            str(path), ["0: file not found (traces are read from ../shared/traces; see --help)"]
        )
    return path.read_text(encoding="utf-8")


def read_nodes(path: Path) -> NodeList:
    return parse_nodes(_read(path), str(path))


def read_pods(path: Path) -> PodList:
    return parse_pods(_read(path), str(path))
