"""``conceptseg convert``: rewrite a checkpoint in another layout (ours, official, hf)."""

from __future__ import annotations


def register(sub) -> None:
    c = sub.add_parser("convert", help="rewrite a checkpoint in another layout")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--to", choices=["ours", "official", "hf"], required=True)
    c.add_argument("--config", help="preset for checkpoints whose sizes match none")
    c.set_defaults(func=cmd_convert)


def cmd_convert(args) -> int:
    from ..checkpoint import _read_raw, convert
    from ..config import get_config

    config = get_config(args.config) if args.config else None
    raw, _ = _read_raw(args.src)
    if any(k.startswith(("tracker.", "tracker_model.")) for k in raw) and args.to != "hf":
        # A video checkpoint (detector + tracker): keep the tracker in the output.
        from ..build import load_video_model, save_video_checkpoint

        del raw
        save_video_checkpoint(load_video_model(args.src, config=config), args.dst, layout=args.to)
        print(f"converted video checkpoint {args.src} -> {args.dst} ({args.to} layout)")
        return 0
    del raw
    detected = convert(args.src, args.dst, args.to, config=config)
    note = " (image model only: the tracker has no HF image layout)" if args.to == "hf" else ""
    print(f"converted {args.src} ({detected} layout) -> {args.dst} ({args.to} layout){note}")
    return 0
