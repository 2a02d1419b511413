"""The one logging setup: JSON lines for log shippers, text for people, the client libraries held at
WARNING, and a dependency's outage told once when it starts and once when it ends."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from kernel import logs


@pytest.fixture
def restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in logs.QUIET}
    try:
        yield
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
        for name, lvl in quiet.items():
            logging.getLogger(name).setLevel(lvl)


def test_a_json_line_has_time_level_logger_message_and_the_extra_fields(restored: None) -> None:
    out = io.StringIO()
    logs.configure("INFO", "json", out)
    logging.getLogger("autoscaler.controller.loop").warning(
        "%s: nodePool %r names no NodePool", "ml/llm", "l40s", extra={"policy": "ml/llm", "reason": "X"}
    )
    [line] = out.getvalue().splitlines()
    got = json.loads(line)
    assert set(got) == {"time", "level", "logger", "message", "policy", "reason"}
    assert got["level"] == "WARNING" and got["logger"] == "autoscaler.controller.loop"
    assert got["message"] == "ml/llm: nodePool 'l40s' names no NodePool"
    assert (got["policy"], got["reason"]) == ("ml/llm", "X")
    assert got["time"].endswith("Z") and len(got["time"]) == len("2026-01-05T12:00:00.000Z")


def test_a_text_line_appends_the_extra_fields(restored: None) -> None:
    out = io.StringIO()
    logs.configure("INFO", "text", out)
    logging.getLogger("x").info("scaled", extra={"policy": "ml/llm"})
    logging.getLogger("x").info("plain")
    first, second = out.getvalue().splitlines()
    assert first.endswith("INFO x: scaled [policy=ml/llm]")
    assert second.endswith("INFO x: plain")


def test_client_libraries_log_warnings_only_even_at_info(restored: None) -> None:
    out = io.StringIO()
    logs.configure("INFO", "text", out)
    logging.getLogger("kafka.conn").info("connecting to broker")
    logging.getLogger("httpx").info("HTTP Request: POST /api/v1/query 200")
    logging.getLogger("kafka.conn").warning("broker gone")
    assert [line.split(": ", 1)[1] for line in out.getvalue().splitlines()] == ["broker gone"]


def test_an_unknown_format_or_level_names_the_known_ones(restored: None) -> None:
    with pytest.raises(ValueError, match="known: text, json"):
        logs.configure("INFO", "yaml")
    with pytest.raises(ValueError, match="no log level 'LOUD'"):
        logs.configure("LOUD")


def test_an_outage_is_one_warning_when_it_starts_and_one_info_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = logs.Outage(logging.getLogger("src"), "Prometheus at http://p:9090", "prometheus")
    with caplog.at_level("INFO", logger="src"):
        outage.up()
        for _ in range(3):
            outage.down("connection refused")
        for _ in range(3):
            outage.up()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "Prometheus at http://p:9090 is down: connection refused"),
        ("INFO", "Prometheus at http://p:9090 is back (it was down: connection refused)"),
    ]
