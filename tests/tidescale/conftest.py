"""Fixtures of the composition root's tests: the helm binary the set-up built (the chart's tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel import artefacts
from kernel.errors import PermanentError


@pytest.fixture(scope="module")
def helm() -> Path:
    try:
        return artefacts.cached_binary("helm")
    except PermanentError as exc:
        pytest.skip(str(exc))
