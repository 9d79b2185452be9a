"""`celeriac-dev` (or `python -m celeriac_dev`): the local control plane and the demo."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from celeriac_dev import command, demo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="celeriac-dev", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    command.register(subparsers)
    demo.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
