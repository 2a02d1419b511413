"""Error kinds shared by the packages; adapters raise these `from` library exceptions.

The loops sort them once: `TemporaryError` is retried with backoff, `PermanentError` is reported
(a condition, an exit code) and waits for the input to change. `NotFound` and `Conflict` name the two API
answers a loop treats differently from the rest of their class (an object that is gone, an object that
changed under us); they subclass the class they belong to, so `except TemporaryError`/`PermanentError`
still catch them.
"""

from __future__ import annotations


class TidescaleError(Exception):
    """Base of every error tidescale raises on purpose."""


class TemporaryError(TidescaleError):
    """Worth retrying: a timeout, a broker or API server that is not ready yet."""


class PermanentError(TidescaleError):
    """Retrying will not help until the input changes: a bad spec, a missing binary."""


class NotFound(PermanentError):
    """The object is not there (HTTP 404): nothing to retry until it is created again."""


class Conflict(TemporaryError):
    """The object changed under us (HTTP 409): read it again and retry."""


class InvalidSpec(PermanentError):
    """A document failed validation. `str()` names the file, line, field and reason."""

    def __init__(self, file: str, problems: list[str]) -> None:
        self.file = file
        self.problems = problems
        super().__init__("\n".join(f"{file}:{p}" for p in problems))
