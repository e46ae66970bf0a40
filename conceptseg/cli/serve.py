"""``conceptseg serve``: the HTTP API of docs/API.md (FastAPI + uvicorn) over one model.

    conceptseg serve --port 8000                     # the shipped model, http://127.0.0.1:8000
    conceptseg serve --checkpoint sam3.pt --device cuda --api-key "$KEY"

Binds to 127.0.0.1 unless ``--host`` says otherwise; CORS is off unless ``--cors ORIGIN``.
Requests never name server paths: images and clips are uploaded. Limits are flags (defaults as
in docs/API.md); a request above one is refused with a JSON error (413, 429, 504...).
"""

from __future__ import annotations

import math
import os

from .. import __version__
from ..build import build_video_model
from ..checkpoint import default_weights_path, describe, load
from ..config import PRESETS
from ..errors import InputError, NoTrackerError, require
from ..inference.prompts import MAX_PROMPT_CHARS
from ..runtime import resolve_device
from ..serve.limits import Limits

DEFAULTS = Limits()
API_KEY_ENV = "CONCEPTSEG_API_KEY"  # environment variable read when --api-key is not given
LIMIT_FLAGS = (  # flag (named after its Limits field), type, help
    ("--max-pixels", int, "largest image, width x height, read from its header (413)"),
    ("--max-sessions", int, "image sessions held (LRU) and video sessions open (429 when full)"),
    ("--session-ttl", float, "seconds an idle session is kept (404 after)"),
    ("--queue-depth", int, "inference jobs waiting before 429 + Retry-After"),
    ("--timeout", float, "seconds a request may wait for inference (504)"),
    ("--max-prompt-chars", int, f"longest text prompt, 1..{MAX_PROMPT_CHARS} (422)"),
)


def register(sub) -> None:
    s = sub.add_parser("serve", help="serve the model over HTTP (JSON API, web page, metrics)")
    s.add_argument("--checkpoint", help="model checkpoint (any layout); default: the shipped model")
    s.add_argument("--random-weights", metavar="CONFIG",
                   help="benchmarking only: a model of this preset (e.g. sam3) with random "
                        "weights instead of a checkpoint")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--api-key", default=os.environ.get(API_KEY_ENV) or None,
                   help="require 'Authorization: Bearer KEY' (or X-API-Key) on /v1/* but "
                        f"health; default: ${API_KEY_ENV} (keeps the key out of `ps`)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    s.add_argument("--max-upload-mb", type=float, default=DEFAULTS.max_upload_bytes / 2 ** 20,
                   help="largest request body in MiB (413; default %(default)g)")
    for flag, kind, text in LIMIT_FLAGS:
        s.add_argument(flag, type=kind, default=getattr(DEFAULTS, flag[2:].replace("-", "_")),
                       help=f"{text} (default %(default)s)")
    s.add_argument("--cors", action="append", default=[], metavar="ORIGIN",
                   help="allow cross-origin requests from ORIGIN (repeatable; default: off)")
    s.add_argument("--file-preprocessing", choices=["cv2", "torchcodec"], default="torchcodec",
                   help="video frame normalisation (see `conceptseg track --help`)")
    s.add_argument("--log-level", default="warning",
                   choices=["critical", "error", "warning", "info", "debug"])
    s.set_defaults(func=cmd_serve)


def limits_from_args(args) -> Limits:
    """The :class:`Limits` the flags ask for, each checked (one-line InputError)."""
    for name in ("max_upload_mb", "session_ttl", "timeout"):
        v = getattr(args, name)
        if not (math.isfinite(v) and v > 0):
            raise InputError(f"--{name.replace('_', '-')} must be > 0, got {v}")
    for name in ("max_pixels", "max_sessions", "queue_depth", "max_prompt_chars"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.max_prompt_chars > MAX_PROMPT_CHARS:
        raise InputError(f"--max-prompt-chars must be at most {MAX_PROMPT_CHARS} (the text "
                         f"encoder reads 32 tokens), got {args.max_prompt_chars}")
    if args.api_key is not None and not args.api_key.strip():
        raise InputError("--api-key is empty")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be within 0..65535, got {args.port}")
    return Limits(max_upload_bytes=int(args.max_upload_mb * 2 ** 20), max_pixels=args.max_pixels,
                  max_sessions=args.max_sessions, session_ttl=args.session_ttl,
                  queue_depth=args.queue_depth, timeout=args.timeout,
                  max_prompt_chars=args.max_prompt_chars)


def load_serving_model(path, device, random_config: str | None = None):
    """The video model (detector + tracker) when the checkpoint has a tracker, else the image
    model (or a fresh model of ``random_config``); plus GET /v1/model's description."""
    if random_config is not None:
        if random_config not in PRESETS:
            raise InputError(f"--random-weights must be one of {', '.join(PRESETS)}, got "
                             f"{random_config!r}")
        model, layout = build_video_model(random_config, seed=0).to(device), "random"
    else:
        layout = describe(path or default_weights_path())["layout"]
        try:
            model = load(path, "video", device=device)
        except NoTrackerError:
            model = load(path, "image", device=device)
    detector = getattr(model, "detector", model)
    return model, {"layout": layout, "config": detector.config.name,
                   "parameters": sum(p.numel() for p in model.parameters()),
                   "device": str(device), "has_tracker": hasattr(model, "tracker"),
                   "shipped": path is None and random_config is None,
                   "image_size": detector.config.vision.image_size}


def cmd_serve(args) -> int:
    uvicorn = require("uvicorn", "serve")
    require("fastapi", "serve")
    limits = limits_from_args(args)  # everything cheap before the model
    device = resolve_device(args.device)
    if args.random_weights and args.checkpoint:
        raise InputError("give --checkpoint or --random-weights, not both")
    model, info = load_serving_model(args.checkpoint, device, args.random_weights)
    # only here: the web framework is an optional extra, imported once the flags are checked
    from ..serve.app import create_app
    from ..serve.context import build_context

    ctx = build_context(model, limits, model_info={**info, "precision": args.precision},
                        precision=args.precision, api_key=args.api_key, cors=args.cors,
                        file_preprocessing=args.file_preprocessing)
    app = create_app(ctx)
    print(f"conceptseg {__version__} serving {info['config']} ({info['parameters']:,} "
          f"parameters, {device}) on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                access_log=False, timeout_graceful_shutdown=5)
    return 0
