"""Resident memory of process trees, read from /proc (Linux): what benchmarks report as peak RSS."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

from kernel.clock import SYSTEM_CLOCK, Clock

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def parents(proc: Path = Path("/proc")) -> dict[int, int]:
    """Each running process's parent, from /proc/<pid>/stat."""
    parents = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (ppid) follows the command name, which may hold spaces: split after its ')'.
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def tree(roots: Iterable[int]) -> set[int]:
    """The roots and every descendant of them that is alive now."""
    parent_of = parents()
    members = {r for r in roots if r in parent_of}
    grew = True
    while grew:
        added = {pid for pid, parent in parent_of.items() if parent in members and pid not in members}
        members |= added
        grew = bool(added)
    return members


def rss_mib(pids: Iterable[int]) -> float:
    total_kib = 0
    for pid in pids:
        try:
            total_kib += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
        except (OSError, IndexError, ValueError):
            continue
    return total_kib / 1024


class PeakSampler:
    """Samples the summed RSS of the trees under `roots` in a background thread; `peak_mib` is the max."""

    def __init__(self, roots: list[int], interval_s: float = 0.5, clock: Clock = SYSTEM_CLOCK) -> None:
        self.roots = roots
        self.interval_s = interval_s
        self.peak_mib = 0.0
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()

    def sample(self) -> float:
        current = rss_mib(tree(self.roots))
        self.peak_mib = max(self.peak_mib, current)
        return current

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)
