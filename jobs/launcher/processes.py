"""The shell of local jobs (`jobs.launcher.local`): start a job's command on this machine as a detached,
supervised process group; tell whether it still runs; stop it; read its log. Linux: processes are
identified through /proc.

`start` runs `python -m jobs.launcher.processes DIR -- COMMAND…` and reads the supervisor's pid from it:
that process forks, and the parent prints the child's pid and identity token and exits, so that the
supervisor is nobody's child (the launcher may exit; it never keeps a zombie of it). The supervisor leads
a new session (its pid is its process group's), reads /dev/null, appends its own and the command's output
to DIR/engine.log, starts the command in DIR, forwards SIGTERM, SIGINT and SIGHUP to it, and when it ends
writes DIR/exit.json (whole or not at all) and exits with the command's status (128 + N when signal N
ended it). `stop` signals the whole group, SIGTERM first and SIGKILL after a grace period, and only when
the group's leader still is the recorded process (same boot id, same start time).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType

from jobs.launcher.local import (
    EXIT_FILE,
    LOG_FILE,
    RECORD_FILE,
    Exit,
    Host,
    LocalRecord,
    LocalRun,
    Process,
    Seen,
)
from kernel.clock import SYSTEM_CLOCK, Clock, Deadline
from kernel.errors import PermanentError

PROC = Path("/proc")
START_TIMEOUT_S = 30.0
GRACE_S = 10.0
KILL_WAIT_S = 5.0
POLL_S = 0.1
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # holds `jobs`: the supervisor imports it from there
_STATE, _PGRP, _START_TIME = 0, 2, 19  # /proc/PID/stat fields 3, 5 and 22, counted after the name


class LocalJobError(PermanentError):
    """A local job's process could not be started or stopped."""


# -- this machine and its processes --------------------------------------------------------------------


def _boot_id() -> str:
    try:
        return (PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return ""


def this_host() -> Host:
    return Host(socket.gethostname(), _boot_id())


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the process's name (its state first); None: no such process."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def token_of(pid: int) -> str | None:
    """The identity token of a live process (None: there is none, or only its zombie)."""
    fields = _stat(pid)
    if fields is None or fields[_STATE] in ("Z", "X"):
        return None
    return f"{_boot_id()}:{fields[_START_TIME]}"


def running(process: Process) -> bool:
    """Whether the recorded process runs (not merely a process with its pid)."""
    return token_of(process.pid) == process.token


def group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is in the process group `pgid`."""
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[_STATE] not in ("Z", "X") and fields[_PGRP] == str(pgid):
                return True
    return False


# -- a job's directory ---------------------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a reader never sees half of it."""
    part = path.with_name(path.name + ".part")
    part.write_text(text, encoding="utf-8")
    part.replace(path)


def recorded(directory: Path) -> tuple[str, Process] | None:
    """(the root's uid, the process) that `process.json` in a job's directory names; None: none."""
    try:
        data = json.loads((directory / RECORD_FILE).read_text())
        return str(data["uid"]), Process(int(data["pid"]), str(data["token"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def read_exit(directory: Path) -> Exit | None:
    try:
        return Exit.from_json((directory / EXIT_FILE).read_text())
    except OSError:
        return None


def observe(record: LocalRecord, here: Host) -> Seen:
    """What this machine sees of a local job: nothing from another host; else whether its process runs
    and the exit status it left (read after, so a process that just ended is not taken for one gone
    without a status)."""
    if record.host != here.name or record.process is None:
        return Seen(here)
    alive = running(record.process)
    return Seen(here, alive, read_exit(Path(record.directory)))


def _prepare(directory: Path) -> None:
    """An empty job directory: what a finished job of the same name left is removed; a directory that is
    not a job's, or where another job's process runs, is refused."""
    if directory.is_dir() and any(directory.iterdir()):
        found = recorded(directory)
        if found is None:
            raise LocalJobError(f"{directory} exists and is not a job's directory: remove it, or set another")
        uid, process = found
        if running(process):
            raise LocalJobError(
                f"process {process.pid} of another job of that namespace and name (root uid {uid}) runs in "
                f"{directory}: delete that job first"
            )
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)


def start(run: LocalRun, directory: Path, owner: str, timeout: float = START_TIMEOUT_S) -> Process:
    """Start `run` under a supervisor in `directory` (made anew), and record it there with `owner` (the
    root's uid). LocalJobError says why when it cannot start."""
    _prepare(directory)
    for name, text in run.files.items():
        (directory / name).write_text(text, encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SOURCE_ROOT), env.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-m", "jobs.launcher.processes", str(directory), "--", *run.command]
    try:
        done = subprocess.run(
            argv,
            cwd=directory,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LocalJobError(f"cannot start the supervisor of {shlex.join(run.command)}: {e}") from e
    try:
        data = json.loads(done.stdout.strip().splitlines()[-1])
        process = Process(int(data["pid"]), str(data["token"]))
    except (IndexError, ValueError, TypeError, KeyError):
        said = (done.stderr or done.stdout).strip()[-2000:]
        raise LocalJobError(f"the supervisor did not start (status {done.returncode}): {said}") from None
    _write(directory / RECORD_FILE, json.dumps({"uid": owner, "pid": process.pid, "token": process.token}))
    return process


def stop(process: Process, grace: float = GRACE_S, clock: Clock = SYSTEM_CLOCK) -> str | None:
    """Stop the process group the recorded process leads: SIGTERM, then SIGKILL after `grace` seconds.
    The signal that ended it; None when the process did not run (any more). LocalJobError when even
    SIGKILL leaves a process of the group."""
    if not running(process):
        return None
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return None
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, KILL_WAIT_S)):
        if sig == signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        deadline = Deadline(wait, clock)
        while group_alive(process.pid):
            if deadline.expired():
                break
            clock.sleep(POLL_S)
        else:
            return sig.name
    raise LocalJobError(f"process group {process.pid} still runs after SIGKILL")


def remove(directory: Path, owner: str) -> bool:
    """Remove a job's directory, if `process.json` says it is the job's whose root has uid `owner` (and
    its namespace's directory when that is left empty). False when it is not (or is gone)."""
    found = recorded(directory)
    if found is None or found[0] != owner:
        return False
    shutil.rmtree(directory)
    with contextlib.suppress(OSError):
        directory.parent.rmdir()
    return True


def read_log(
    path: Path,
    *,
    follow: bool = False,
    tail: int | None = None,
    alive: Callable[[], bool] = lambda: False,
    clock: Clock = SYSTEM_CLOCK,
    poll: float = 0.2,
) -> Iterator[str]:
    """The lines of a local job's log (`tail`: only the last N); `follow`: then the lines written after,
    until `alive()` says the process ended and what it wrote last is read."""
    with path.open("rb") as f:
        *lines, pending = f.read().split(b"\n")
        if tail is not None:
            lines = lines[len(lines) - tail :] if tail > 0 else []
        for line in lines:
            yield line.decode("utf-8", "replace")
        ended = not follow
        while not ended:
            chunk = f.read()
            if not chunk:
                ended = not alive()
                if ended:
                    chunk = f.read()  # what it wrote before it ended
                else:
                    clock.sleep(poll)
            if chunk:
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", "replace")
        if pending:
            yield pending.decode("utf-8", "replace")


# -- the supervisor ------------------------------------------------------------------------------------


def supervise(directory: Path, command: Sequence[str], clock: Clock = SYSTEM_CLOCK) -> int:
    """Run `command` in `directory` until it ends, forwarding the signals that ask it to stop, then write
    its exit status to exit.json. Runs in the supervisor, whose output already goes to the log."""
    print(f"# tidescale: {clock.now().isoformat()} start: {shlex.join(command)}", flush=True)
    try:
        child = subprocess.Popen(list(command), cwd=directory, stdin=subprocess.DEVNULL)
    except OSError as e:
        print(f"# tidescale: cannot start: {e}", flush=True)
        status = 127
    else:

        def forward(signum: int, frame: FrameType | None) -> None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, forward)
        status = child.wait()
    ended = (
        Exit(128 - status, signal.Signals(-status).name, clock.now().isoformat())
        if status < 0
        else Exit(status, "", clock.now().isoformat())
    )
    _write(directory / EXIT_FILE, json.dumps(ended.to_json()))
    print(f"# tidescale: {ended.finished} {ended.text()}", flush=True)
    return ended.code


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m jobs.launcher.processes DIR -- COMMAND…` (see the module's docstring)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m jobs.launcher.processes DIR -- COMMAND…", file=sys.stderr)
        return 2
    directory, command = Path(args[0]).resolve(), args[2:]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        # the parent: report the supervisor once it leads its own session and writes to the log, and go
        os.close(write_end)
        ready = os.read(read_end, 1)
        token = token_of(pid)
        if not ready or token is None:
            print(
                f"the supervisor (pid {pid}) ended before it started {shlex.join(command)}", file=sys.stderr
            )
            return 1
        print(json.dumps({"pid": pid, "token": token}), flush=True)
        return 0
    os.close(read_end)
    os.setsid()
    log = os.open(directory / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    os.write(write_end, b"1")
    os.close(write_end)
    return supervise(directory, command)


if __name__ == "__main__":
    sys.exit(main())
