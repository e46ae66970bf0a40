"""``conceptseg`` command line: one entry point, one module per sub-command.

Errors meant for users (bad images, prompts, boxes, checkpoints) print one line on stderr and
exit with status 2; no traceback. Python warnings print as one plain line each, once per
message; a mistyped flag prints the sub-command's usage.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from .. import __version__
from ..errors import ConceptSegError
from . import concept, convert, demo, evaluate, mcp, segment, serve, tool_schema, track, train
from .common import attach_number_lists

# in the order `--help` lists them
COMMANDS = (segment, track, concept, convert, train, evaluate, demo, serve, mcp, tool_schema)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="conceptseg", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"conceptseg {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Like ``parse_args``, but an unknown flag is reported by the sub-command's parser, with
    the sub-command's usage (argparse's default reports it with the top-level usage)."""
    parser = build_parser()
    argv = attach_number_lists(sys.argv[1:] if argv is None else list(argv))
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


class _OneLineWarnings:
    """``warnings.showwarning`` for the command line: "conceptseg <cmd>: warning: <message>",
    no source line, each distinct message once."""

    def __init__(self, command: str):
        self.command = command
        self.seen: set[str] = set()

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
        if text in self.seen:
            return
        self.seen.add(text)
        print(f"conceptseg {self.command}: warning: {text}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with warnings.catch_warnings():  # restores the caller's warning hooks on the way out
        warnings.showwarning = _OneLineWarnings(args.command)
        try:
            return int(args.func(args) or 0)
        except ConceptSegError as e:
            print(f"conceptseg {args.command}: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
