"""The one logging setup of every long-running command (`controller run`, `scheduler run`, `exporter`): a
level, a format (`text` for people, `json` for log shippers: one object per line), and the third-party
client loggers (Kafka, HTTP, Kubernetes) held at WARNING so that a healthy process does not print a line per
request.

A JSON line carries `time`, `level`, `logger` and `message`, the fields given with `extra=` (`policy`,
`reason`, `source` …) and `exception` when there is a traceback. The text format appends the extra fields as
`key=value`.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# client libraries that log a line per request, per connection or per metadata refresh at INFO or DEBUG
QUIET = ("kafka", "httpx", "httpcore", "kubernetes", "urllib3", "confluent_kafka", "asyncio")

# the attributes every LogRecord has; anything else was given with `extra=`
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a log call gave with `extra=`, in the order given."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339, UTC, ms), level, logger, message, the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        # the record's own creation time, not a clock read: this module formats what was logged
        at = datetime.fromtimestamp(record.created, tz=UTC)
        out: dict[str, Any] = {
            "time": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for k, v in extra_fields(record).items():
            out.setdefault(k, v)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, with the extra fields appended as `key=value`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = extra_fields(record)
        if not fields:
            return line
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        head, sep, rest = line.partition("\n")  # keep a traceback below the line
        return f"{head} [{tail}]{sep}{rest}"


class Outage:
    """A dependency's reachability as log lines: one WARNING when it goes down, one INFO when it is back, and
    nothing while it stays as it is (a source read every second must not log every second)."""

    def __init__(self, logger: logging.Logger, what: str, source: str) -> None:
        self._log = logger
        self.what = what  # "Prometheus at http://…"
        self.source = source  # the `source` field of the lines: prometheus, kafka
        self.why: str | None = None  # why it is down; None while it is up
        self._lock = threading.Lock()

    def down(self, why: str) -> None:
        with self._lock:
            if self.why is not None:
                return
            self.why = why
        fields = {"source": self.source, "reason": "SourceDown"}
        self._log.warning("%s is down: %s", self.what, why, extra=fields)

    def up(self) -> None:
        with self._lock:
            if self.why is None:
                return
            was, self.why = self.why, None
        fields = {"source": self.source, "reason": "SourceUp"}
        self._log.info("%s is back (it was down: %s)", self.what, was, extra=fields)


class Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure` installs: on `stream`, or on whatever `sys.stderr` is when a line is written
    (as logging's last-resort handler does), so that a stderr replaced or closed since (a test capturing it)
    never breaks logging."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._fixed = stream

    @property
    def stream(self) -> TextIO:
        return self._fixed if self._fixed is not None else sys.stderr

    @stream.setter
    def stream(self, value: TextIO | None) -> None:
        self._fixed = value


def installed() -> list[logging.Handler]:
    """The handlers `configure` put on the root logger."""
    return [h for h in logging.getLogger().handlers if isinstance(h, Handler)]


def configure(level: str | int = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Set the root logger's level and one handler in `fmt` ("text" or "json") on `stream` (stderr), and
    the client libraries' loggers to WARNING (or the level asked, when it is higher). Replaces the handler an
    earlier call installed (and no other), so it may be called again."""
    if fmt not in FORMATS:
        raise ValueError(f"no log format {fmt!r} (known: {', '.join(FORMATS)})")
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"no log level {level!r} (known: DEBUG, INFO, WARNING, ERROR)")
    handler = Handler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in installed():
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, numeric))


def add_arguments(parser: Any) -> None:
    """`--log-level` and `--log-format` on a command's parser."""
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument(
        "--log-format", default="text", choices=FORMATS, help="text, or json: one object per line"
    )
