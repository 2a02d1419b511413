"""Running a long-lived process (`controller run`, `scheduler run`) until SIGTERM or SIGINT: start its parts,
say where it serves (stdout, and a ready file for whoever waits on it), stop them on the signal."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from kernel.errors import TidescaleError


class Endpoint(Protocol):
    @property
    def url(self) -> str: ...


class Service(Protocol):
    @property
    def http(self) -> Endpoint: ...

    def stop(self) -> None: ...


def serve(
    name: str, start: Callable[[], Service], identity: str, ready_file: Path | None, what: str = ""
) -> int:
    """2 when it cannot start (the reason on stderr), else 0 once stopped by a signal."""
    try:
        running = start()
    except (TidescaleError, OSError) as e:
        print(f"tidescale {name}: {e}", file=sys.stderr)
        return 2
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    if ready_file is not None:
        ready_file.write_text(json.dumps({"url": running.http.url, "identity": identity}))
    print(f"tidescale {name}: {what}serving {running.http.url} (identity {identity})", flush=True)
    done.wait()
    running.stop()
    return 0
