"""Python functions pipelines may call by name from their expressions, on either engine.

Pure: each is a plain scalar function. They live in an importable module (not in a job's script)
because both engines ship functions to separate Python workers by reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streaming.transform import PythonFunction


def word_count(text: str | None) -> int:
    """Whitespace-separated words; 0 for a missing text."""
    return len(text.split()) if text else 0


BUILTINS: dict[str, tuple[Callable[..., Any], str]] = {
    "word_count": (word_count, "long"),
}


def builtin(name: str) -> PythonFunction:
    try:
        function, result_type = BUILTINS[name]
    except KeyError:
        raise KeyError(f"no function {name!r} (known: {', '.join(sorted(BUILTINS))})") from None
    return PythonFunction(name, function, result_type)
