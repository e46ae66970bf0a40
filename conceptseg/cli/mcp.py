"""``conceptseg mcp``: the LLM tools (segment_concepts, refine_instance) as a Model Context
Protocol server over stdio. Add it to an MCP client's configuration, e.g.::

    {"mcpServers": {"conceptseg": {"command": "conceptseg", "args": ["mcp"]}}}
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import default_weights_path
from ..errors import InputError, NoTrackerError, require
from ..inference.image import PRECISIONS
from ..runtime import resolve_device
from ..serve.tool_engine import ToolEngine
from ..serve.tool_images import ImageLimits
from .common import load_model


def register(sub) -> None:
    s = sub.add_parser("mcp", help="serve the LLM tools over MCP (stdio)")
    s.add_argument("--checkpoint", help="sam3.pt, HF safetensors or ours; default: the small "
                                        "demo model shipped in the package")
    s.add_argument("--config", help="preset name or config JSON for checkpoints of custom size")
    s.add_argument("--device", default="cpu")
    s.add_argument("--precision", choices=PRECISIONS, default="fp32")
    s.add_argument("--timeout", type=float, default=60.0,
                   help="time budget of each tool call, seconds (default 60)")
    s.add_argument("--max-image-mb", type=float, default=20.0,
                   help="largest image file accepted, MiB (default 20)")
    s.add_argument("--max-pixels", type=int, default=40_000_000,
                   help="largest image accepted, width x height (default 40,000,000)")
    s.add_argument("--root", action="append", default=[], metavar="DIR",
                   help="only read image paths under DIR (repeatable; relative paths resolve "
                        "against the first); default: any path this user can read")
    s.set_defaults(func=cmd_mcp)


def cmd_mcp(args) -> int:
    if not args.timeout > 0:
        raise InputError(f"--timeout must be > 0 seconds, got {args.timeout:g}")
    if not args.max_image_mb > 0 or args.max_pixels < 64:
        raise InputError("--max-image-mb must be > 0 and --max-pixels at least 64")
    roots = tuple(Path(r).expanduser().resolve() for r in args.root)
    for r in roots:
        if not r.is_dir():
            raise InputError(f"--root {r} is not a directory")
    resolve_device(args.device)
    require("mcp", "mcp")
    from ..serve.mcp import (
        build_server,  # the mcp SDK is an optional dependency (extra 'mcp')
    )

    try:
        model = load_model(args, "video")  # with the tracker: refine_instance works
    except NoTrackerError:
        model = load_model(args, "image")
    shipped = args.checkpoint is None or (
        Path(args.checkpoint).resolve() == default_weights_path().resolve())
    limits = ImageLimits(int(args.max_image_mb * 2**20), args.max_pixels, roots)
    engine = ToolEngine(model, shipped=shipped, limits=limits, precision=args.precision)
    build_server(engine, timeout=args.timeout).run("stdio")
    return 0
