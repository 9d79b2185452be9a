"""`celeriac` command line: each subcommand lives in the module that owns it."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

# name -> module with `register(subparsers) -> None`; the module sets `func` on its parser.
SUBCOMMANDS: dict[str, str] = {
    "crd": "celeriac.api.crd",
    "run": "celeriac.controller.command",
    "simulate": "celeriac.sim.command",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="celeriac", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in SUBCOMMANDS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A subcommand whose module is not part of this build; a missing dependency
            # inside an existing module still raises.
            if exc.name is None or not module_name.startswith(exc.name):
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
