"""Background processes the harness starts: spawn with a log file, wait until ready, stop cleanly.

Every wait has a deadline; a process that exits or never becomes ready raises `ComponentError`
naming the component, the reason and the log file (with its last lines).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kernel.clock import SYSTEM_CLOCK, Clock, Deadline
from kernel.errors import TidescaleError

LOG_TAIL_LINES = 15


class ComponentError(TidescaleError):
    """A component could not start or stop: `<component>: <reason> (log: <file>)`."""

    def __init__(self, component: str, reason: str, log_file: Path | None = None) -> None:
        self.component = component
        self.reason = reason
        self.log_file = log_file
        message = f"{component}: {reason}"
        if log_file is not None:
            message += f" (log: {log_file})"
            tail = log_tail(log_file)
            if tail:
                message += "\n  last lines of the log:\n" + "\n".join(f"    {line}" for line in tail)
        super().__init__(message)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ensure_port_free(component: str, port: int, host: str = "127.0.0.1", why: str = "") -> None:
    """Fail fast, with the port (and the process holding it, when this user can see it) in the message,
    instead of letting a server die on bind. `why` follows the message: the port's story, what to do."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers bind (Go, the JVM and Python's HTTP server all set SO_REUSEADDR): a port whose last
        # server just died still has connections in TIME_WAIT, which do not stop them listening again.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            holder = port_holder(port)
            by = f" by {holder}" if holder else ""
            raise ComponentError(
                component, f"port {host}:{port} is already in use{by} ({exc.strerror}){why}"
            ) from exc


def port_holder(port: int, proc: Path = Path("/proc")) -> str | None:
    """`pid 1234 (prometheus)`: the process listening on TCP `port`, from /proc (Linux, processes this user
    may inspect); None when unknown."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (proc / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                # local_address is HEX_IP:HEX_PORT; state 0A is LISTEN; the inode is the tenth field.
                if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in targets:
                        name = (entry / "comm").read_text().strip()
                        return f"pid {entry.name} ({name})"
    return None


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """Whether `pid` still runs. A process that has exited but is not reaped yet (a zombie: ours until we
    wait for it, or another's whose parent has not) still answers kill(0), so its state is read from
    /proc; ours is reaped on the way."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    # A killed multi-threaded process (Prometheus, the JVM) shows its leader as a zombie while its other
    # threads still exit and hold its files, its listening sockets among them: it runs until every thread
    # is done.
    return any(process_state(pid, thread) not in {"Z", "X", None} for thread in threads(pid))


def threads(pid: int) -> list[int]:
    """The thread ids of `pid` (the leader's own id among them), [pid] where /proc lists none."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")] or [pid]
    except OSError:
        return [pid]


def process_state(pid: int, thread: int | None = None) -> str | None:
    """The one-letter state of `pid` (or of its `thread`) from /proc (R, S, D, Z, …), None when it is gone."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    try:
        stat = Path(path).read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses: the state follows
    # the last closing one.
    return stat[stat.rfind(")") + 2 :][:1] or None


@dataclass
class Spawned:
    """A started process: its pid (also its process-group id) and where it logs."""

    component: str
    pid: int
    log_file: Path
    popen: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return pid_alive(self.pid)

    def exit_code(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None


SpawnHook = Callable[["Spawned"], None]


def spawn(
    component: str,
    argv: Sequence[str],
    log_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    on_spawn: SpawnHook | None = None,
) -> Spawned:
    """Start `argv` in its own session (so `stop` can signal the whole group), output to `log_file`.
    `on_spawn` hears of the process at once, before anyone waits for it to be ready (so that a caller can
    record it where `local down` finds it even if this process is killed during the wait)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        with log_file.open("ab") as log:
            popen = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
    except OSError as exc:
        raise ComponentError(component, f"cannot execute {argv[0]}: {exc.strerror}", log_file) from exc
    spawned = Spawned(component, popen.pid, log_file, popen)
    if on_spawn is not None:
        on_spawn(spawned)
    return spawned


def wait_until(
    process: Spawned,
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    clock: Clock = SYSTEM_CLOCK,
    poll: float = 0.2,
) -> None:
    """Poll `ready()` until it is true; raise if the process dies or the deadline passes."""
    deadline = Deadline(timeout, clock)
    while True:
        if not process.alive():
            code = process.exit_code()
            status = f" with code {code}" if code is not None else ""
            raise ComponentError(process.component, f"exited{status} before {what}", process.log_file)
        with contextlib.suppress(Exception):
            if ready():
                return
        if deadline.expired():
            stop(process.pid, process.component, timeout=5)
            raise ComponentError(process.component, f"not {what} after {timeout:.0f} s", process.log_file)
        clock.sleep(poll)


def stop(pid: int, component: str, timeout: float = 15, clock: Clock = SYSTEM_CLOCK) -> bool:
    """SIGTERM the process group, then SIGKILL after `timeout`. True if it was running."""
    if not pid_alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = Deadline(timeout, clock)
    while pid_alive(pid):
        if deadline.expired():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            kill_deadline = Deadline(5, clock)
            while pid_alive(pid) and not kill_deadline.expired():
                clock.sleep(0.05)
            break
        clock.sleep(0.05)
    return True
