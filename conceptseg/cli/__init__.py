"""``conceptseg`` command line: one entry point, one module per sub-command.

Errors meant for users (bad images, prompts, boxes, checkpoints) print one line on stderr and
exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import ConceptSegError
from . import convert, demo, evaluate, segment, track, train

COMMANDS = (segment, track, convert, train, evaluate, demo)  # in the order `--help` lists them


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="conceptseg", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConceptSegError as e:
        print(f"conceptseg {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
