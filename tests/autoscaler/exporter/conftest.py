"""Stopgap so `.venv/bin/pytest` imports the real `autoscaler.exporter`, not this test folder.

pytest (prepend import mode) puts `tests/` on sys.path for the root conftest; `tests/autoscaler/exporter`
is then a namespace-package portion named `autoscaler.exporter`, found before the editable install's
finder is asked. A regular package anywhere on sys.path wins over namespace portions, so adding the
repository root is enough. Remove this file once pyproject sets `pythonpath = ["."]` for pytest.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)
