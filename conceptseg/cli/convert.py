"""``conceptseg convert``: rewrite a checkpoint in another layout (ours, official, hf)."""

from __future__ import annotations

import sys

from ..checkpoint.load import resolve_config
from ..checkpoint.save import convert_parts
from ..runtime import check_output_path


def register(sub) -> None:
    c = sub.add_parser("convert", help="rewrite a checkpoint in another layout")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--to", choices=["ours", "official", "hf"], required=True)
    c.add_argument("--config", help="preset name or config.json, for checkpoints whose sizes "
                                    "cannot be read off their tensor shapes")
    c.set_defaults(func=cmd_convert)


def cmd_convert(args) -> int:
    check_output_path(args.dst, "output checkpoint")
    config = resolve_config(args.config)
    parts = convert_parts(args.src, args.dst, args.to, config=config)
    what = "video checkpoint" if parts.has_tracker else "checkpoint"
    print(f"converted {what} {args.src} ({parts.layout} layout) -> {args.dst} ({args.to} layout)")
    bias = parts.config.score_bias
    if args.to != "ours" and bias:
        print(f"note: score_bias {bias:g} (calibration) is kept in the file's conceptseg "
              f"metadata; the {args.to} code ignores it", file=sys.stderr)
    return 0
