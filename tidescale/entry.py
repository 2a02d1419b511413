"""The `tidescale` console script: activate the compiled decision core, then run the command.

Activation has to come before anything imports the core, so this module imports nothing from the products
at module level; `tidescale.cli` (which imports every package) is imported only after it.
`TIDESCALE_COMPILED=0` runs the pure-Python core; `TIDESCALE_COMPILED=1` insists on the compiled one (exit
2 with the reason when it cannot be used); unset, the compiled core is used when built for these sources.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from tidescale import compiled


def main(argv: Sequence[str] | None = None) -> int:
    activation = compiled.activate()
    if not activation.compiled and os.environ.get(compiled.ENV) == "1":
        print(
            f"tidescale: {compiled.ENV}=1 but the compiled core is not used: {activation.reason}",
            file=sys.stderr,
        )
        return 2

    from tidescale import cli

    return cli.main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
