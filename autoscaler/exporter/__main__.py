"""`python -m autoscaler.exporter [exporter] …`: the exporter without the rest of the `tidescale` command
(the same parser and handler as `tidescale exporter`), for tests and minimal images."""

from __future__ import annotations

import argparse
import sys

from autoscaler.exporter import cli


def main(argv: list[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] != ["exporter"]:
        args_in.insert(0, "exporter")
    parser = argparse.ArgumentParser(prog="tidescale")
    cli.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(args_in)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
