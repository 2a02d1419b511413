"""A job that runs on the machine that submitted it (a `local` target, such as a Pipeline with
`spec.target: local`): its record in the root ConfigMap, its directory, and its phase.

The launcher starts a local job's command as a detached, supervised process group
(`jobs.launcher.processes`) in the job's directory, `<jobs dir>/<namespace>/<name>`, where the jobs dir
is `$TIDESCALE_JOBS_DIR`, else `$XDG_STATE_HOME/tidescale/jobs`, else `~/.local/state/tidescale/jobs`.
There the supervisor appends the command's output to `engine.log` and, when it ends, writes its exit
status to `exit.json`; the launcher writes `process.json` (the root's uid, the pid and its identity
token), by which a directory is known to be the job's before it is removed.

The root ConfigMap records it all, so that `jobs list/get` read local jobs from the cluster like any
other (annotations, under `tidescale.io/`): `target: local`, `host`, `directory`, `log`, `command` (a JSON
list), and once the process runs `pid`, `process` (its identity token: the host's boot id and the
process's start time, so that a pid the kernel has given to another process since is never taken for the
job's) and `started`.

The phase (`local_phase`), from the record and what this machine sees of the process (`Seen`):
- Terminating: the root is being deleted;
- Pending: the record names no process yet (the launcher is starting it);
- Unknown: seen from another host, where the process cannot be seen;
- Succeeded or Failed: the supervisor left an exit status (0, or another);
- Running: the recorded process runs (same boot, same start time);
- Failed: it is gone without an exit status (killed with SIGKILL, or the host restarted).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jobs.launcher.status import FAILED, PENDING, RUNNING, SUCCEEDED, TERMINATING, UNKNOWN, JobView

LOCAL = "local"
TARGET_ANNOTATION = "tidescale.io/target"
HOST_ANNOTATION = "tidescale.io/host"
DIRECTORY_ANNOTATION = "tidescale.io/directory"
LOG_ANNOTATION = "tidescale.io/log"
COMMAND_ANNOTATION = "tidescale.io/command"
PID_ANNOTATION = "tidescale.io/pid"
PROCESS_ANNOTATION = "tidescale.io/process"
STARTED_ANNOTATION = "tidescale.io/started"
LOG_FILE = "engine.log"
EXIT_FILE = "exit.json"
RECORD_FILE = "process.json"
JOBS_DIR_ENV = "TIDESCALE_JOBS_DIR"


@dataclass(frozen=True)
class LocalRun:
    """How a job runs on this machine: `command`, started in the job's directory once `files` (name ->
    text) are written there (relative paths in the command are the directory's)."""

    command: tuple[str, ...]
    files: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Host:
    """A machine: its host name, and its boot id (a new one each time it starts)."""

    name: str
    boot: str


@dataclass(frozen=True)
class Process:
    """A process, told apart from any later one with the same pid by `token` (`<boot id>:<start time>`)."""

    pid: int
    token: str

    @property
    def boot(self) -> str:
        return self.token.rpartition(":")[0]


@dataclass(frozen=True)
class Exit:
    """How a local job's process ended: `code` (128 + N when killed by signal N), `signal` its name."""

    code: int
    signal: str = ""
    finished: str = ""

    def text(self) -> str:
        if self.signal:
            return f"killed by {self.signal} (status {self.code})"
        return f"exited with status {self.code}"

    def to_json(self) -> dict[str, Any]:
        return {"exitCode": self.code, "signal": self.signal or None, "finished": self.finished}

    @staticmethod
    def from_json(text: str) -> Exit | None:
        """None when `text` is not an exit status (a file cut short)."""
        try:
            data = json.loads(text)
            return Exit(int(data["exitCode"]), str(data.get("signal") or ""), str(data.get("finished") or ""))
        except (ValueError, TypeError, KeyError):
            return None


@dataclass(frozen=True)
class LocalRecord:
    """Where a local job runs, as its root's annotations say."""

    host: str
    directory: str
    log: str
    command: tuple[str, ...]
    process: Process | None = None
    started: str = ""

    def annotations(self) -> dict[str, str]:
        out = {
            TARGET_ANNOTATION: LOCAL,
            HOST_ANNOTATION: self.host,
            DIRECTORY_ANNOTATION: self.directory,
            LOG_ANNOTATION: self.log,
            COMMAND_ANNOTATION: json.dumps(list(self.command)),
        }
        if self.process is not None:
            out |= {PID_ANNOTATION: str(self.process.pid), PROCESS_ANNOTATION: self.process.token}
        if self.started:
            out[STARTED_ANNOTATION] = self.started
        return out

    @staticmethod
    def of(root: Mapping[str, Any]) -> LocalRecord | None:
        """The record of a root ConfigMap; None when the job is not a local one."""
        annotations = (root.get("metadata") or {}).get("annotations") or {}
        if annotations.get(TARGET_ANNOTATION) != LOCAL:
            return None
        try:
            command = tuple(str(c) for c in json.loads(annotations.get(COMMAND_ANNOTATION) or "[]"))
        except (ValueError, TypeError):
            command = ()
        pid = str(annotations.get(PID_ANNOTATION) or "")
        token = str(annotations.get(PROCESS_ANNOTATION) or "")
        return LocalRecord(
            host=str(annotations.get(HOST_ANNOTATION) or ""),
            directory=str(annotations.get(DIRECTORY_ANNOTATION) or ""),
            log=str(annotations.get(LOG_ANNOTATION) or ""),
            command=command,
            process=Process(int(pid), token) if pid.isdigit() and token else None,
            started=str(annotations.get(STARTED_ANNOTATION) or ""),
        )


@dataclass(frozen=True)
class Seen:
    """What this machine (`here`) sees of a local job's process: on the job's host, whether the recorded
    process runs and the exit status it left (elsewhere: nothing)."""

    here: Host
    alive: bool = False
    exit: Exit | None = None


def jobs_directory(env: Mapping[str, str], home: Path) -> Path:
    """Where local jobs keep their directories (see the module's docstring)."""
    if env.get(JOBS_DIR_ENV):
        return Path(env[JOBS_DIR_ENV]).expanduser()
    state = (
        Path(env["XDG_STATE_HOME"]).expanduser() if env.get("XDG_STATE_HOME") else home / ".local" / "state"
    )
    return state / "tidescale" / "jobs"


def job_directory(base: Path, namespace: str, name: str) -> Path:
    return base / namespace / name


def record_for(host: Host, directory: Path, run: LocalRun) -> LocalRecord:
    """The record of a local job about to start in `directory` on `host`."""
    return LocalRecord(host.name, str(directory), str(directory / LOG_FILE), run.command)


def local_phase(record: LocalRecord, seen: Seen, deleting: bool = False) -> tuple[str, str]:
    """The phase of a local job and a sentence saying why (see the module's docstring)."""
    if deleting:
        return TERMINATING, "the job is being deleted"
    if record.process is None:
        return PENDING, f"its process on host {record.host} has not started (yet)"
    pid = record.process.pid
    if record.host != seen.here.name:
        return UNKNOWN, f"on host {record.host}: process {pid} can be seen only there"
    if seen.exit is not None:
        return (SUCCEEDED if seen.exit.code == 0 else FAILED), f"process {pid} {seen.exit.text()}"
    if seen.alive:
        return RUNNING, f"process {pid} runs on host {record.host}"
    if record.process.boot and seen.here.boot and record.process.boot != seen.here.boot:
        return (
            FAILED,
            f"process {pid} is gone: host {record.host} restarted since, and it left no exit status",
        )
    return FAILED, f"process {pid} is gone without an exit status (killed?)"


def local_view(view: JobView, record: LocalRecord, seen: Seen) -> JobView:
    """The job's view with its phase, and its process in place of workloads (`local` in its JSON)."""
    phase, reason = local_phase(record, seen, deleting=view.phase == TERMINATING)
    phase_text = f"{UNKNOWN} (on host {record.host})" if phase == UNKNOWN else phase
    pid = record.process.pid if record.process is not None else None
    line = f"Process/{pid if pid is not None else '-'} on {record.host}: {phase_text}"
    details: dict[str, Any] = {
        "host": record.host,
        "pid": pid,
        "directory": record.directory,
        "log": record.log,
        "command": list(record.command),
        "started": record.started or None,
        "exitCode": seen.exit.code if seen.exit is not None else None,
    }
    return replace(view, phase=phase, reason=reason, workloads=(line,), local=details)
